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

Dtype = Any


def output_dtype(dtype: Dtype) -> Dtype:
  """float32 for bfloat16/float32 activations; float64 stays float64 (tests)."""
  return jnp.promote_types(dtype, jnp.float32)


# mmcv's kaiming_init(mode='fan_out', nonlinearity='relu', distribution=
# 'normal'): std = sqrt(2 / fan_out), untruncated, with fan_out = k*k*dim0 of
# the PyTorch weight. For a Conv ([out, in, k, k] in PyTorch, HWIO here) that
# is k*k*out, Flax's last axis. For a ConvTranspose PyTorch's dim 0 is the
# *input* channel count; the Flax kernel of `ConvTranspose(transpose_kernel=
# True)` is [k, k, out, in], so its last axis is again PyTorch's dim 0.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
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


# Sub-pixel taps of ConvTranspose2d(k=4, s=2, p=1): output row 2m+a reads
# input rows m-1+a and m+a through kernel rows _PHASE_ROWS[a]:
#   a=0: y[2m] = x[m-1] W[3] + x[m] W[1];  a=1: y[2m+1] = x[m] W[2] + x[m+1] W[0]
# With the input padded by 1 (xp[i] = x[i-1]), phase a at output m reads the
# 2x2 window of xp starting at row m+a; window row t uses kernel row
# _PHASE_ROWS[a][t]. Columns likewise.
_PHASE_ROWS = ((3, 1), (2, 0))


def subpixel_patch_kernel(kernel: jax.Array) -> jax.Array:
  """[4, 4, out, in] transposed-conv kernel -> [(ty, tx, in), (a, b, out)].

  Row (ty, tx, i) multiplies input channel i at window offset (ty, tx) of
  the padded input; column (a, b, o) is output channel o of phase (a, b).
  Static slices only (no gather/scatter in the kernel's gradient).
  """
  _, _, n_out, n_in = kernel.shape
  taps = [
    jnp.stack(
      [
        kernel[_PHASE_ROWS[a][ty], _PHASE_ROWS[b][tx]]
        for a in (0, 1)
        for b in (0, 1)
      ]
    )  # [phase, out, in]
    for ty in (0, 1)
    for tx in (0, 1)
  ]
  k = jnp.stack(taps)  # [tap, phase, out, in]
  return k.transpose(0, 3, 1, 2).reshape(4 * n_in, 4 * n_out)


def _subpixel_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """ConvTranspose2d(k=4, s=2, p=1) as one matmul over 2x2 patches.

  z = patches(pad(x)) @ K gives, at each of the (H+1) x (W+1) windows, the
  four phases' outputs; phase (a, b) at output (m, n) is window (m+a, n+b).
  That is (H+1)(W+1)/(HW) times the useful multiply-adds: 13% extra at
  16x16, 3% at 64x64 (the sub-pixel 3x3 form this replaced did 2.25x).
  """
  b, h, w, n_in = x.shape
  n_out = kernel.shape[2]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate(
    [xp[:, ty : ty + h + 1, tx : tx + w + 1] for ty in (0, 1) for tx in (0, 1)],
    axis=-1,
  )
  # A 2-D matmul: XLA's CPU backend turns a batched-spatial dot_general's
  # gradient into transposing copies that cost as much as the matmul.
  z = patches.reshape(-1, 4 * n_in) @ subpixel_patch_kernel(kernel)
  z = z.reshape(b, h + 1, w + 1, 2, 2, n_out)
  rows = [
    jnp.stack([z[:, a : a + h, c : c + w, a, c] for c in (0, 1)], axis=3)
    for a in (0, 1)
  ]  # each [B, H, W, 2 (column phase), out]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, n_out)


def _native_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """What `nn.ConvTranspose(transpose_kernel=True)` computes (cuDNN's and
  PyTorch's algorithm on GPUs: an input-dilated convolution)."""
  return jax.lax.conv_transpose(
    x,
    kernel,
    strides=(2, 2),
    padding=((2, 2), (2, 2)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    transpose_kernel=True,
  )


class SubPixelConvTranspose(nn.Module):
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) from the [4, 4, out, in]
  kernel that `nn.ConvTranspose(transpose_kernel=True)` holds, so
  checkpoints and `interop` do not depend on how it is computed.

  On the CPU backend (`matmul=None` there) it runs as one matmul over 2x2
  patches: every output phase of this layer reads a 2x2 input window, and
  XLA's CPU backend differentiates the input-dilated convolution 20-80x
  more slowly than this matmul (docs/performance.md). Elsewhere it is the native
  transposed convolution, the algorithm cuDNN and PyTorch use.
  """

  features: int
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  matmul: bool | None = None  # None: on the CPU backend only

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = x.shape[-1]
    kernel = self.param(
      "kernel", conv_kernel_init, (4, 4, self.features, n_in), jnp.float32
    )
    matmul = patch_convs_default() if self.matmul is None else self.matmul
    fn = _subpixel_matmul if matmul else _native_conv_transpose
    y = fn(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param(
        "bias", nn.initializers.zeros, (self.features,), jnp.float32
      )
      y = y + bias.astype(self.dtype)
    return y


class PatchConv(nn.Module):
  """A strided convolution as patches @ kernel (im2col), no bias.

  XLA's CPU backend is pathologically slow on the discriminators' 5x5
  stride-2 convolutions once maps are small and channels wide (256->512 at
  8x8: 0.53 s forward+backward against 0.0075 s as a matmul; see
  docs/performance.md). Same [k, k, in, out] parameter as `nn.Conv`.
  """

  features: int
  kernel_size: int
  stride: int
  padding: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, n_in = self.kernel_size, self.stride, x.shape[-1]
    kernel = self.param(
      "kernel", conv_kernel_init, (k, k, n_in, self.features), jnp.float32
    )
    p = self.padding
    x = jnp.pad(x.astype(self.dtype), ((0, 0), (p, p), (p, p), (0, 0)))
    ho = (x.shape[1] - k) // s + 1
    wo = (x.shape[2] - k) // s + 1
    taps = [
      x[:, dy : dy + s * (ho - 1) + 1 : s, dx : dx + s * (wo - 1) + 1 : s]
      for dy in range(k)
      for dx in range(k)
    ]
    patches = jnp.stack(taps, axis=3).reshape(x.shape[0], ho, wo, -1)
    return patches @ kernel.reshape(k * k * n_in, -1).astype(self.dtype)


def patch_convs_default() -> bool:
  """Discriminator and transposed convs as matmuls on the CPU backend only
  (GPUs and TPUs have good convolutions and no memory to spare for
  patches)."""
  return jax.default_backend() == "cpu"


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
  patches: bool = False  # compute as im2col + matmul (same parameter)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    if self.patches:
      if not self.norm or self.dilation != 1:
        raise ValueError("patches=True is for undilated convs under a norm")
      x = PatchConv(
        self.features, k, self.stride, (k - 1) // 2, self.dtype, name="conv"
      )(x)
    elif self.transpose:
      if (k, self.stride) != (4, 2):
        raise ValueError("only PyTorch's ConvTranspose2d(k=4, s=2, p=1)")
      x = SubPixelConvTranspose(
        self.features, use_bias=not self.norm, dtype=self.dtype, name="conv"
      )(x)
    else:
      pad = self.dilation * (k - 1) // 2
      x = nn.Conv(
        self.features,
        (k, k),
        strides=(self.stride, self.stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(self.dilation, self.dilation),
        use_bias=not self.norm,
        kernel_init=conv_kernel_init,
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
        patches=patch_convs_default(),
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
) -> tuple[dict, dict]:
  """Initialises both networks for the given input sizes (batch of 1)."""
  g_rng, d_rng = jax.random.split(rng)
  h, w = image_size
  g_vars = generator.init(g_rng, jnp.zeros((1, h, w, 4)), train=False)
  d_vars = discs.init(
    d_rng,
    jnp.zeros((1, h, w, 3)),
    jnp.zeros((1, *local_size, 3)),
    train=False,
  )
  return dict(g_vars), dict(d_vars)
