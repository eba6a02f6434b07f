"""Losses and the three pure train steps of mmagic's GLInpaintor schedule.

Each step is `(state, batch) -> (state, metrics)` with the networks and loss
weights bound by keyword (`functools.partial`) before `jax.jit`. They
reproduce `GLInpaintor.train_step` (mmagic) operation by operation:

- one generator forward in training mode per step, which updates the
  generator's BatchNorm statistics in every phase;
- the discriminator sees the detached fake batch and the real batch in two
  separate training-mode forwards (fake first), each normalised with its own
  batch statistics, and both update the running statistics; one Adam step on
  the sum of the two losses;
- in the joint phase the generator's GAN term goes through the discriminator
  *after* its update (a third training-mode forward, which updates its
  running statistics again), and the generator's gradient flows through it.

Batches are dicts: `image` [B,H,W,3] in [-1, 1], `mask` [B,H,W,1] (1 =
hole), `local_bbox` [B,4] int32 (top, left, h, w of the local patch).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from glcic_jax import layers, models
from glcic_jax.train_state import GANState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

PHASE_G = "generator"  # cur_iter <= iter_tc: L1 only
PHASE_D = "discriminator"  # D only (the generator forward still runs)
PHASE_JOINT = "joint"  # D, then G with L1 + GAN
PHASES = (PHASE_G, PHASE_D, PHASE_JOINT)


def phase_for_step(step: int, schedule: Any) -> str:
  """mmagic's rule: cur_iter = start_iter + step (0-based step counter).

  cur_iter <= iter_tc: generator step. Otherwise a discriminator step; the
  generator is also updated when cur_iter > iter_td and the discriminator
  step count (since the first discriminator step of this run, as mmagic's
  `disc_step_count` counts it) is a multiple of `disc_step`.
  """
  cur_iter = schedule.start_iter + step
  if cur_iter <= schedule.iter_tc:
    return PHASE_G
  if cur_iter <= schedule.iter_td:
    return PHASE_D
  first_d_iter = max(schedule.start_iter, schedule.iter_tc + 1)
  n_disc_steps = cur_iter - first_d_iter + 1
  if n_disc_steps % schedule.disc_step:
    return PHASE_D
  return PHASE_JOINT


def l1_hole_loss(fake_res: jax.Array, gt: jax.Array, mask: jax.Array):
  """Mean |fake - gt| over hole elements (mmagic L1Loss, weight=mask)."""
  weight = jnp.broadcast_to(mask, fake_res.shape)
  diff = jnp.abs(fake_res.astype(layers.output_dtype(gt.dtype)) - gt) * weight
  return jnp.sum(diff) / (jnp.sum(weight) + 1e-12)


def bce_with_logits(logits: jax.Array, target_is_real: bool) -> jax.Array:
  """mmagic's vanilla GANLoss: BCE with logits, mean over the batch."""
  labels = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def crop_local(images: jax.Array, local_bbox: jax.Array, size: int):
  """Cuts each example's `size` x `size` patch at (top, left) of its box."""

  def one(img, box):
    return jax.lax.dynamic_slice(
      img,
      (box[0], box[1], jnp.zeros((), box.dtype)),
      (size, size, img.shape[-1]),
    )

  return jax.vmap(one)(images, local_bbox)


def _generator_forward(state: GANState, g_params, batch: Batch, generator):
  fake_res, updates = generator.apply(
    {"params": g_params, "batch_stats": state.g_batch_stats},
    models.network_input(batch["image"], batch["mask"]),
    train=True,
    mutable=["batch_stats"],
  )
  return fake_res, updates["batch_stats"]


def _composite(fake_res, batch: Batch, local_size: int):
  image, mask = batch["image"], batch["mask"]
  fake_img = image * (1.0 - mask) + fake_res * mask
  return fake_img, crop_local(fake_img, batch["local_bbox"], local_size)


def _disc_update(
  state: GANState, fake_img, fake_local, batch: Batch, discs, local_size: int
) -> tuple[GANState, Metrics]:
  """One discriminator Adam step on BCE(D(fake), 0) + BCE(D(real), 1)."""
  real_img = batch["image"]
  real_local = crop_local(real_img, batch["local_bbox"], local_size)
  fake_img = jax.lax.stop_gradient(fake_img)
  fake_local = jax.lax.stop_gradient(fake_local)

  def loss_fn(d_params):
    stats = state.d_batch_stats
    outs = []
    for img, local in ((fake_img, fake_local), (real_img, real_local)):
      logits, upd = discs.apply(
        {"params": d_params, "batch_stats": stats},
        img,
        local,
        train=True,
        mutable=["batch_stats"],
      )
      stats = upd["batch_stats"]
      outs.append(logits)
    fake_loss = bce_with_logits(outs[0], False)
    real_loss = bce_with_logits(outs[1], True)
    return fake_loss + real_loss, (stats, fake_loss, real_loss, *outs)

  grads, (stats, fake_loss, real_loss, fake_logits, real_logits) = jax.grad(
    loss_fn, has_aux=True
  )(state.d_params)
  updates, opt_state = state.d_tx.update(
    grads, state.d_opt_state, state.d_params
  )
  state = state.replace(
    d_params=optax.apply_updates(state.d_params, updates),
    d_batch_stats=stats,
    d_opt_state=opt_state,
  )
  metrics = {
    "fake_loss": fake_loss,
    "real_loss": real_loss,
    "d_fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits)),
    "d_real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
    "d_grad_norm": optax.tree.norm(grads),
  }
  return state, metrics


def _apply_generator_grads(state: GANState, grads, g_stats) -> GANState:
  updates, opt_state = state.g_tx.update(
    grads, state.g_opt_state, state.g_params
  )
  return state.replace(
    g_params=optax.apply_updates(state.g_params, updates),
    g_batch_stats=g_stats,
    g_opt_state=opt_state,
  )


def generator_step(
  state: GANState,
  batch: Batch,
  *,
  generator: models.Generator,
  l1_hole_weight: float = 1.0,
) -> tuple[GANState, Metrics]:
  """Phase 1: the generator alone, L1 loss on the hole."""

  def loss_fn(g_params):
    fake_res, stats = _generator_forward(state, g_params, batch, generator)
    l1 = l1_hole_loss(fake_res, batch["image"], batch["mask"])
    return l1_hole_weight * l1, (stats, l1)

  grads, (stats, l1) = jax.grad(loss_fn, has_aux=True)(state.g_params)
  state = _apply_generator_grads(state, grads, stats)
  metrics = {"loss_l1_hole": l1, "g_grad_norm": optax.tree.norm(grads)}
  return state.replace(step=state.step + 1), metrics


def discriminator_step(
  state: GANState,
  batch: Batch,
  *,
  generator: models.Generator,
  discs: models.GLDiscs,
  local_size: int,
) -> tuple[GANState, Metrics]:
  """Phase 2: the discriminators alone; the generator forward still runs in
  training mode and updates its BatchNorm statistics, as in mmagic."""
  fake_res, g_stats = _generator_forward(
    state, state.g_params, batch, generator
  )
  fake_img, fake_local = _composite(fake_res, batch, local_size)
  state = state.replace(g_batch_stats=g_stats)
  state, metrics = _disc_update(
    state, fake_img, fake_local, batch, discs, local_size
  )
  return state.replace(step=state.step + 1), metrics


def joint_step(
  state: GANState,
  batch: Batch,
  *,
  generator: models.Generator,
  discs: models.GLDiscs,
  local_size: int,
  l1_hole_weight: float = 1.0,
  gan_weight: float = 0.001,
) -> tuple[GANState, Metrics]:
  """Phase 3: a discriminator step, then a generator step on L1 + GAN.

  The generator runs forward once; its VJP is kept, the discriminator is
  updated on the detached fake, and the generator loss is then taken through
  the *updated* discriminator, as mmagic orders it.
  """

  def forward(g_params):
    return _generator_forward(state, g_params, batch, generator)

  fake_res, g_vjp, g_stats = jax.vjp(forward, state.g_params, has_aux=True)
  fake_img, fake_local = _composite(fake_res, batch, local_size)
  state, metrics = _disc_update(
    state, fake_img, fake_local, batch, discs, local_size
  )

  def g_loss_fn(fake_res):
    fake_img, fake_local = _composite(fake_res, batch, local_size)
    logits, upd = discs.apply(
      {"params": state.d_params, "batch_stats": state.d_batch_stats},
      fake_img,
      fake_local,
      train=True,
      mutable=["batch_stats"],
    )
    gan = gan_weight * bce_with_logits(logits, True)
    l1 = l1_hole_loss(fake_res, batch["image"], batch["mask"])
    return l1_hole_weight * l1 + gan, (upd["batch_stats"], l1, gan)

  d_fake_res, (d_stats, l1, gan) = jax.grad(g_loss_fn, has_aux=True)(fake_res)
  (grads,) = g_vjp(d_fake_res)
  state = _apply_generator_grads(state, grads, g_stats)
  state = state.replace(d_batch_stats=d_stats, step=state.step + 1)
  metrics.update(
    loss_l1_hole=l1, loss_g_fake=gan, g_grad_norm=optax.tree.norm(grads)
  )
  return state, metrics


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """The activations' and convolutions' dtype (`config.compute_dtype`)."""
  return jnp.dtype(config.compute_dtype)


def make_steps(
  config: ml_collections.ConfigDict, conv_forms: str = "auto"
) -> dict[str, Any]:
  """The three phase steps with networks and loss weights bound; each
  device runs `config.per_device_batch_size` examples of every call."""
  generator, discs = models.build_models(
    config.model,
    compute_dtype(config),
    conv_forms=conv_forms,
    batch_per_device=config.per_device_batch_size,
  )
  common = dict(generator=generator)
  d_kw = dict(discs=discs, local_size=config.local_size)
  return {
    PHASE_G: functools.partial(
      generator_step, **common, l1_hole_weight=config.loss.l1_hole_weight
    ),
    PHASE_D: functools.partial(discriminator_step, **common, **d_kw),
    PHASE_JOINT: functools.partial(
      joint_step,
      **common,
      **d_kw,
      l1_hole_weight=config.loss.l1_hole_weight,
      gan_weight=config.loss.gan_weight,
    ),
  }
