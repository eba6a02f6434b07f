"""One GAN training state: both networks, both optimisers, step and RNG.

A `flax.struct` dataclass, so the whole thing is one pytree that `jax.jit`
shards, donates and returns, and orbax saves and restores in one piece. The
optimisers are static fields (not saved; rebuilt from the config).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from glcic_jax import models, sharding

PyTree = Any


@struct.dataclass
class GANState:
  """Everything a training run needs to continue exactly where it stopped.

  `step` counts completed training steps (mmagic's cur_iter = start_iter +
  step); it is also the input pipeline's position, one global batch a step.
  """

  step: jax.Array
  g_params: PyTree
  g_batch_stats: PyTree
  d_params: PyTree
  d_batch_stats: PyTree
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  rng: jax.Array
  g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def generator_variables(self) -> dict:
    return {"params": self.g_params, "batch_stats": self.g_batch_stats}

  def disc_variables(self) -> dict:
    return {"params": self.d_params, "batch_stats": self.d_batch_stats}


def parameter_count(tree: PyTree) -> int:
  """How many numbers a pytree of arrays holds (a network's parameters)."""
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def make_optimizer(optimizer_config: Any) -> optax.GradientTransformation:
  """Adam as PyTorch's torch.optim.Adam (no weight decay, no schedule).

  The optimiser is a static field of `GANState`, part of the pytree's
  metadata: equal settings must give the *same* object, or two states built
  from one config (say, restored and freshly initialised) would count as
  different pytree types to `jax.jit`.
  """
  return _adam(
    float(optimizer_config.learning_rate),
    float(optimizer_config.b1),
    float(optimizer_config.b2),
    float(optimizer_config.eps),
  )


@functools.cache
def _adam(lr: float, b1: float, b2: float, eps: float):
  return optax.adam(learning_rate=lr, b1=b1, b2=b2, eps=eps)


def create_state(
  g_vars: dict, d_vars: dict, rng: jax.Array, config: Any
) -> GANState:
  """A fresh state at step 0 around given network variables."""
  g_tx = make_optimizer(config.optimizer)
  d_tx = make_optimizer(config.optimizer)
  return GANState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_vars["params"],
    g_batch_stats=g_vars["batch_stats"],
    d_params=d_vars["params"],
    d_batch_stats=d_vars["batch_stats"],
    g_opt_state=g_tx.init(g_vars["params"]),
    d_opt_state=d_tx.init(d_vars["params"]),
    rng=rng,
    g_tx=g_tx,
    d_tx=d_tx,
  )


def init_state(config: Any, rng: jax.Array) -> GANState:
  """Initialises networks (mmagic's init) and optimisers from a config.

  The parameters are the same whatever convolution forms the networks run
  with; the native ones trace fastest, and the forward pass is dropped.
  """
  init_rng, state_rng = jax.random.split(rng)
  generator, discs = models.build_models(config.model, conv_forms="native")
  size = (config.image_size, config.image_size)
  local = (config.local_size, config.local_size)
  g_vars, d_vars = models.init_variables(
    generator, discs, init_rng, size, local
  )
  return create_state(g_vars, d_vars, state_rng, config)


def abstract_state(config: Any, mesh: Mesh | None = None) -> GANState:
  """Shapes, dtypes and shardings of the `GANState` that `config` trains.

  Costs no computation (`jax.eval_shape`). With a mesh, every leaf is
  replicated over it, as training keeps the state; without one, leaves go
  on the default device (for export, eval and inpaint on one host).
  """
  abstract = jax.eval_shape(
    lambda rng: init_state(config, rng),
    jax.ShapeDtypeStruct((2,), jnp.uint32),  # a raw PRNGKey
  )
  target = (
    sharding.single_device() if mesh is None else sharding.replicated(mesh)
  )
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=target),
    abstract,
  )
