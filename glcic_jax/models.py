"""Global&Local networks (Iizuka et al. 2017) as mmagic builds them, in Linen.

NHWC throughout. The module tree mirrors mmagic's module names
(`encoder/enc1/conv`, `dilation_neck/dilation_convs_0/bn`, `global_disc/fc`,
...) so `interop.py` can map each Flax variable to its PyTorch state_dict key
by name alone. Widths, conv counts and fc sizes are constructor fields: the
defaults are the paper/mmagic numbers, and tiny test models run the same code.
The convolution layers are fields too (as flax's ResNet takes `conv`):
`build_models` picks them once for the backend (`layers.conv_layers`).

No losses live here (see `train_steps.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from glcic_jax import layers
from glcic_jax.layers import BatchNorm, ModuleDef, output_dtype

Dtype = Any

# mmagic's GLDiscs init: every Linear normal(0, 0.02), bias 0.
linear_kernel_init = nn.initializers.normal(stddev=0.02)


def network_input(image: jax.Array, mask: jax.Array) -> jax.Array:
  """The generator's input, [B, H, W, 4]: the image in [-1, 1] with the
  hole set to 0 (mmagic's GetMaskedImage fills grey 127.5) and the mask
  (1 = hole) as a fourth channel. Training, evaluation and completion all
  build it here."""
  return jnp.concatenate([image * (1.0 - mask), mask], axis=-1)


class ConvModule(nn.Module):
  """mmcv's ConvModule: conv -> BatchNorm -> ReLU, no conv bias under a norm.

  `conv` and `conv_transpose` are the layer classes (`layers.conv_layers`);
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
  conv: ModuleDef = layers.Conv
  conv_transpose: ModuleDef = layers.ConvTranspose

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    if self.transpose:
      if (k, self.stride) != (4, 2):
        raise ValueError("only PyTorch's ConvTranspose2d(k=4, s=2, p=1)")
      x = self.conv_transpose(
        self.features, use_bias=not self.norm, dtype=self.dtype, name="conv"
      )(x)
    else:
      x = self.conv(
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
  conv: ModuleDef = layers.Conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = self.channels
    specs = [(c, 5, 1), (2 * c, 3, 2), (2 * c, 3, 1)]
    specs += [(4 * c, 3, 2), (4 * c, 3, 1), (4 * c, 3, 1)]
    for i, (features, k, stride) in enumerate(specs):
      layer = ConvModule(
        features,
        k,
        stride,
        dtype=self.dtype,
        conv=self.conv,
        name=f"enc{i + 1}",
      )
      x = layer(x, train)
    return x


class GLDilationNeck(nn.Module):
  """Four k3 convs with dilation 2, 4, 8, 16 (mmagic's `dilation_convs.i`)."""

  channels: int = 256
  dtype: Dtype = jnp.float32
  conv: ModuleDef = layers.Conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i, d in enumerate((2, 4, 8, 16)):
      layer = ConvModule(
        self.channels,
        3,
        dilation=d,
        dtype=self.dtype,
        conv=self.conv,
        name=f"dilation_convs_{i}",
      )
      x = layer(x, train)
    return x


class GLDecoder(nn.Module):
  """dec1..dec7 with two 4x4 stride-2 transposed convs back to H; dec7 is a
  plain conv with bias to 3 channels, no norm, no activation."""

  channels: int = 64
  dtype: Dtype = jnp.float32
  conv: ModuleDef = layers.Conv
  conv_transpose: ModuleDef = layers.ConvTranspose

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = self.channels
    layer = functools.partial(
      ConvModule,
      dtype=self.dtype,
      conv=self.conv,
      conv_transpose=self.conv_transpose,
    )
    x = layer(4 * c, 3, name="dec1")(x, train)
    x = layer(4 * c, 3, name="dec2")(x, train)
    x = layer(2 * c, 4, 2, transpose=True, name="dec3")(x, train)
    x = layer(2 * c, 3, name="dec4")(x, train)
    x = layer(c, 4, 2, transpose=True, name="dec5")(x, train)
    x = layer(c // 2, 3, name="dec6")(x, train)
    return layer(3, 3, norm=False, act=None, name="dec7")(x, train)


class Generator(nn.Module):
  """GLEncoderDecoder: encoder -> dilation neck -> decoder, fully conv.

  Input: [B, H, W, 4] = masked image in [-1, 1] (hole pixels 0) and the mask
  (1 = hole), as `network_input` builds it; H and W divisible by 4. Output:
  [B, H, W, 3] float32, hard-clipped to [-1, 1] (mmagic's out_act='clip',
  not tanh). `channels` is the width of the first layer (64 in the paper);
  every other width scales with it.
  """

  channels: int = 64
  dtype: Dtype = jnp.float32
  conv: ModuleDef = layers.Conv
  conv_transpose: ModuleDef = layers.ConvTranspose

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c, dt, conv = self.channels, self.dtype, self.conv
    x = x.astype(dt)
    x = GLEncoder(c, dt, conv, name="encoder")(x, train)
    x = GLDilationNeck(4 * c, dt, conv, name="dilation_neck")(x, train)
    x = GLDecoder(c, dt, conv, self.conv_transpose, name="decoder")(x, train)
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
  conv: ModuleDef = layers.Conv

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
        conv=self.conv,
        name=f"conv{i + 1}",
      )(x, train)
    x = x.reshape(x.shape[0], -1)
    x = layers.Dense(
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
  conv: ModuleDef = layers.Conv

  @nn.compact
  def __call__(
    self, image: jax.Array, local: jax.Array, train: bool
  ) -> jax.Array:
    kw = dict(
      base_channels=self.base_channels,
      max_channels=self.max_channels,
      fc_features=self.fc_features,
      dtype=self.dtype,
      conv=self.conv,
    )
    g = MultiLayerDiscriminator(self.global_num_convs, name="global_disc", **kw)
    l_ = MultiLayerDiscriminator(self.local_num_convs, name="local_disc", **kw)
    x = jnp.concatenate([g(image, train), l_(local, train)], axis=-1)
    x = layers.Dense(
      1, kernel_init=linear_kernel_init, dtype=self.dtype, name="fc"
    )(x)
    return x.astype(output_dtype(self.dtype))


def build_models(
  model_config: Any,
  dtype: Dtype = jnp.float32,
  *,
  conv_forms: str = "auto",
  batch_per_device: int | None = None,
) -> tuple[Generator, GLDiscs]:
  """Builds (generator, discriminators) from a config's `model` section.

  The convolution layers come from `layers.conv_layers(conv_forms,
  batch_per_device)`: XLA's native convolutions on GPUs and TPUs (and with
  `conv_forms='native'`), the matmul forms on the CPU. Every form holds the
  same parameters, so checkpoints do not depend on it.
  """
  conv, conv_transpose = layers.conv_layers(conv_forms, batch_per_device)
  generator = Generator(
    channels=model_config.generator_channels,
    dtype=dtype,
    conv=conv,
    conv_transpose=conv_transpose,
  )
  discs = GLDiscs(
    global_num_convs=model_config.global_num_convs,
    local_num_convs=model_config.local_num_convs,
    base_channels=model_config.disc_base_channels,
    max_channels=model_config.disc_max_channels,
    fc_features=model_config.disc_fc_features,
    dtype=dtype,
    conv=conv,
  )
  return generator, discs


def init_variables(
  generator: Generator,
  discs: GLDiscs,
  rng: jax.Array,
  image_size: tuple[int, int],
  local_size: tuple[int, int],
) -> tuple[dict, dict]:
  """Initialises both networks for the given input sizes (batch of 1).

  Jitted: XLA drops the forward pass that `init` traces (only the
  variables are returned), where eager `init` would run it op by op and
  compile every op.

  The draws use the classic, non-partitionable threefry: every parameter is
  drawn whole and replicated, so partitioning buys nothing, and the
  partitionable form's per-element counters take several times longer to
  compile (scripts/benchmark_compile.py measures both).
  """
  g_rng, d_rng = jax.random.split(rng)
  h, w = image_size

  @jax.jit
  def init(g_rng, d_rng):
    with jax.threefry_partitionable(False):
      g_vars = generator.init(g_rng, jnp.zeros((1, h, w, 4)), train=False)
      d_vars = discs.init(
        d_rng,
        jnp.zeros((1, h, w, 3)),
        jnp.zeros((1, *local_size, 3)),
        train=False,
      )
    return dict(g_vars), dict(d_vars)

  return init(g_rng, d_rng)
