"""Global&Local networks (Iizuka et al. 2017) as mmagic builds them, in Linen.

NHWC throughout. The module tree mirrors mmagic's module names
(`encoder/enc1/conv`, `dilation_neck/dilation_convs_0/bn`, `global_disc/fc`,
...) so `interop.py` can map each Flax variable to its PyTorch state_dict key
by name alone. Widths, conv counts and fc sizes are constructor fields: the
defaults are the paper/mmagic numbers, and tiny test models run the same code.

No losses live here (see `train.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from glcic_jax.conv_layers import Conv
from glcic_jax.subpixel_conv import SubPixelConvTranspose

Dtype = Any


def output_dtype(dtype: Dtype) -> Dtype:
  """float32 for bfloat16/float32 activations; float64 stays float64 (tests)."""
  return jnp.promote_types(dtype, jnp.float32)


# mmagic's GLDiscs init: every Linear normal(0, 0.02), bias 0.
linear_kernel_init = nn.initializers.normal(stddev=0.02)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch's semantics, so running statistics match mmagic.

  Differences from `flax.linen.BatchNorm` that matter for parity: the running
  variance is updated with the *unbiased* batch variance (normalisation uses
  the biased one), `momentum` is PyTorch's (weight of the new batch), and a
  `num_batches_tracked` counter is kept so the PyTorch state_dict round-trips.
  Statistics are taken over every axis but the last; under `jax.jit` with a
  batch sharded over devices that is the global batch (SyncBN semantics).
  Statistics and the affine transform are computed in float32 whatever the
  activation dtype.
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable(
      "batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)
    )
    ra_var = self.variable(
      "batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)
    )
    count = self.variable(
      "batch_stats", "num_batches_tracked", lambda: jnp.zeros((), jnp.int32)
    )
    xf = x.astype(output_dtype(x.dtype))
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
        ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        count.value = count.value + 1
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    y = xf * mul + (bias - mean * mul)
    return y.astype(self.dtype or x.dtype)


class ConvModule(nn.Module):
  """mmcv's ConvModule: conv -> BatchNorm -> ReLU, no conv bias under a norm.

  Padding is explicit and symmetric (`dilation * (k - 1) // 2` per side) as in
  PyTorch; XLA's 'SAME' would pad stride-2 convolutions asymmetrically.
  `transpose=True` builds PyTorch's ConvTranspose2d(k=4, s=2, p=1), which
  doubles the spatial size.
  """

  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  transpose: bool = False
  norm: bool = True
  act: Callable[[jax.Array], jax.Array] | None = nn.relu
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    if self.transpose:
      if (k, self.stride) != (4, 2):
        raise ValueError("only PyTorch's ConvTranspose2d(k=4, s=2, p=1)")
      x = SubPixelConvTranspose(
        self.features, use_bias=not self.norm, dtype=self.dtype, name="conv"
      )(x)
    else:
      x = Conv(
        self.features,
        k,
        self.stride,
        self.dilation,
        use_bias=not self.norm,
        dtype=self.dtype,
        name="conv",
      )(x)
    if self.norm:
      x = BatchNorm(dtype=self.dtype, name="bn")(x, train)
    if self.act is not None:
      x = self.act(x)
    return x


class GLEncoder(nn.Module):
  """enc1..enc6: k5 s1, then k3 with two stride-2 downsamplings (H/4)."""

  channels: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = self.channels
    specs = [(c, 5, 1), (2 * c, 3, 2), (2 * c, 3, 1)]
    specs += [(4 * c, 3, 2), (4 * c, 3, 1), (4 * c, 3, 1)]
    for i, (features, k, stride) in enumerate(specs):
      layer = ConvModule(
        features, k, stride, dtype=self.dtype, name=f"enc{i + 1}"
      )
      x = layer(x, train)
    return x


class GLDilationNeck(nn.Module):
  """Four k3 convs with dilation 2, 4, 8, 16 (mmagic's `dilation_convs.i`)."""

  channels: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i, d in enumerate((2, 4, 8, 16)):
      layer = ConvModule(
        self.channels,
        3,
        dilation=d,
        dtype=self.dtype,
        name=f"dilation_convs_{i}",
      )
      x = layer(x, train)
    return x


class GLDecoder(nn.Module):
  """dec1..dec7 with two 4x4 stride-2 transposed convs back to H; dec7 is a
  plain conv with bias to 3 channels, no norm, no activation."""

  channels: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c, dt = self.channels, self.dtype
    x = ConvModule(4 * c, 3, dtype=dt, name="dec1")(x, train)
    x = ConvModule(4 * c, 3, dtype=dt, name="dec2")(x, train)
    x = ConvModule(2 * c, 4, 2, transpose=True, dtype=dt, name="dec3")(x, train)
    x = ConvModule(2 * c, 3, dtype=dt, name="dec4")(x, train)
    x = ConvModule(c, 4, 2, transpose=True, dtype=dt, name="dec5")(x, train)
    x = ConvModule(c // 2, 3, dtype=dt, name="dec6")(x, train)
    return ConvModule(3, 3, norm=False, act=None, dtype=dt, name="dec7")(
      x, train
    )


class Generator(nn.Module):
  """GLEncoderDecoder: encoder -> dilation neck -> decoder, fully conv.

  Input: [B, H, W, 4] = masked image in [-1, 1] (hole pixels 0) and the mask
  (1 = hole); H and W divisible by 4. Output: [B, H, W, 3] float32,
  hard-clipped to [-1, 1] (mmagic's out_act='clip', not tanh). `channels` is
  the width of the first layer (64 in the paper); every other width scales
  with it.
  """

  channels: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c, dt = self.channels, self.dtype
    x = x.astype(dt)
    x = GLEncoder(c, dt, name="encoder")(x, train)
    x = GLDilationNeck(4 * c, dt, name="dilation_neck")(x, train)
    x = GLDecoder(c, dt, name="decoder")(x, train)
    return jnp.clip(x.astype(output_dtype(dt)), -1.0, 1.0)


class MultiLayerDiscriminator(nn.Module):
  """`num_convs` x (conv k5 s2 -> BN -> ReLU), flatten, fc -> ReLU.

  Channels are min(base * 2**i, max_channels), as mmagic's
  MultiLayerDiscriminator builds them. The fc input size follows from the
  input size (H / 2**num_convs squared times the last width). The flatten is
  NHWC order; interop permutes PyTorch's CHW-ordered fc rows.
  """

  num_convs: int
  base_channels: int = 64
  max_channels: int = 512
  fc_features: int = 1024
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    for i in range(self.num_convs):
      width = min(self.base_channels * 2**i, self.max_channels)
      x = ConvModule(
        width,
        5,
        2,
        dtype=self.dtype,
        name=f"conv{i + 1}",
      )(x, train)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(
      self.fc_features,
      kernel_init=linear_kernel_init,
      dtype=self.dtype,
      name="fc",
    )(x)
    return nn.relu(x)


class GLDiscs(nn.Module):
  """Global (whole image) and local (patch around the hole) discriminators.

  Returns one logit per example, [B, 1], from fc(concat[global, local]).
  """

  global_num_convs: int = 6
  local_num_convs: int = 5
  base_channels: int = 64
  max_channels: int = 512
  fc_features: int = 1024
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, image: jax.Array, local: jax.Array, train: bool
  ) -> jax.Array:
    kw = dict(
      base_channels=self.base_channels,
      max_channels=self.max_channels,
      fc_features=self.fc_features,
      dtype=self.dtype,
    )
    g = MultiLayerDiscriminator(self.global_num_convs, name="global_disc", **kw)
    l_ = MultiLayerDiscriminator(self.local_num_convs, name="local_disc", **kw)
    x = jnp.concatenate([g(image, train), l_(local, train)], axis=-1)
    x = nn.Dense(
      1, kernel_init=linear_kernel_init, dtype=self.dtype, name="fc"
    )(x)
    return x.astype(output_dtype(self.dtype))


def build_models(model_config: Any, dtype: Dtype = jnp.float32):
  """Builds (generator, discriminators) from a config's `model` section."""
  generator = Generator(channels=model_config.generator_channels, dtype=dtype)
  discs = GLDiscs(
    global_num_convs=model_config.global_num_convs,
    local_num_convs=model_config.local_num_convs,
    base_channels=model_config.disc_base_channels,
    max_channels=model_config.disc_max_channels,
    fc_features=model_config.disc_fc_features,
    dtype=dtype,
  )
  return generator, discs


def init_variables(
  generator: Generator,
  discs: GLDiscs,
  rng: jax.Array,
  image_size: tuple[int, int],
  local_size: tuple[int, int],
  partitionable_draws: bool = False,
) -> tuple[dict, dict]:
  """Initialises both networks for the given input sizes (batch of 1).

  Jitted: XLA drops the forward pass that `init` traces (only the
  variables are returned), where eager `init` would run it op by op (a
  256px generator forward, seconds on a CPU) and compile every op.

  The draws use the classic, non-partitionable threefry. Every parameter
  is drawn whole and replicated, so partitioning buys nothing, and the
  partitionable form's per-element counters are costly to compile: the
  init program took 11.8 s to compile for the tiny config and 7.5 s for
  the paper's (CPU), against 3.1 and 3.6 s this way. A training run, and
  every process of a multi-process one, compiles it once.
  `partitionable_draws=True` gives JAX's default draws (the baseline of
  scripts/benchmark_compile.py).
  """
  g_rng, d_rng = jax.random.split(rng)
  h, w = image_size

  @jax.jit
  def init(g_rng, d_rng):
    with jax.threefry_partitionable(partitionable_draws):
      g_vars = generator.init(g_rng, jnp.zeros((1, h, w, 4)), train=False)
      d_vars = discs.init(
        d_rng,
        jnp.zeros((1, h, w, 3)),
        jnp.zeros((1, *local_size, 3)),
        train=False,
      )
    return dict(g_vars), dict(d_vars)

  return init(g_rng, d_rng)
