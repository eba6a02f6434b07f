"""Convolution layers holding mmagic's parameters, computed the way the
backend runs fastest.

The parameters are always those of `nn.Conv` ([k, k, in, out] `kernel`,
optional `bias`), so checkpoints and `interop` never depend on the
formulation (the transposed convs, likewise: `subpixel_conv`). On GPUs
and TPUs the layers are XLA's native convolutions (what cuDNN and PyTorch
run). On the CPU backend float32 3x3 stride-1 convs large
enough to pay for it run as Winograd F(4x4, 3x3) (`winograd_conv`: 4x fewer
multiplies, which the generator step is bound by), and the others as
matmuls over patches:
there XLA's input-dilated (transposed) convolution is 20-80x slower than a
matmul, its 5x5 stride-2 convs on small maps up to 20x, and on one of the
two CPUs measured its 3x3 convolutions reached 25-35% of its own matmul
speed (per layer in docs/performance.md; on the other, native 3x3 convs
and the matmul forms gave the same step time).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from glcic_jax.winograd_conv import winograd_conv3x3

Dtype = Any

# Where Winograd pays on the CPU, counted per device (the share of the
# batch one device runs). Narrower layers run faster as rows (the
# transforms outweigh the saved multiplies: 64x64 maps, 16 to 16 channels,
# 3.1 ms against 2.4 fwd+bwd; 32 to 32, 1.4 against 1.7). Smaller calls save
# little a step but add 0.3-0.6 s of compilation per layer, which a short
# run never earns back. The demo's 3x3 convs of 32-64 channels (7.5e7 on
# one device, batch 8) fwd+bwd: 16x16x64 4.2 ms against 7.4 as rows,
# 32x32x32 4.8 against 6.9 (its generator step 1.17x faster); the test
# suite's demo run (1 image on each of 8 devices) stays on rows. The
# reference configs' 3x3 convs all do 1.2e9 or more (256px, batch 1).
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_MACS = 5 * 10**7
NARROW_STRIDED_MAX_CHANNELS = 64  # see Conv._narrow_strided

# Where a dilated conv's 2x2 sub-grids pay as one dense matmul
# (`_small_subgrid_conv`): 16x16x256 maps with dilation 8, fwd+bwd, 18.8 ms
# against 29.4 as im2col at 256 sub-grid rows (batch 4), 11.4 against 13.3
# at 128, but 8.5 against 6.3 at 64 (8x8 maps, dilation 4, batch 4).
SUBGRID_MIN_ROWS = 128

# mmcv's kaiming_init(mode='fan_out', nonlinearity='relu', distribution=
# 'normal'): std = sqrt(2 / fan_out), untruncated, with fan_out = k*k*dim0 of
# the PyTorch weight. For a Conv ([out, in, k, k] in PyTorch, HWIO here) that
# is k*k*out, Flax's last axis. For a ConvTranspose PyTorch's dim 0 is the
# *input* channel count; the Flax kernel of `ConvTranspose(transpose_kernel=
# True)` is [k, k, out, in], so its last axis is again PyTorch's dim 0.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


_native_everywhere = False


def matmul_convs_default() -> bool:
  """Convs as matmuls on the CPU backend only (GPUs and TPUs have good
  convolutions and no memory to spare for patches)."""
  return jax.default_backend() == "cpu" and not _native_everywhere


@contextlib.contextmanager
def native_convs() -> Iterator[None]:
  """Trace with XLA's native convolutions on every backend.

  For counting the model's arithmetic: the CPU forms do less of it
  (Winograd) or more (row padding), and cost analysis counts what a program
  executes. Layers built with an explicit `matmul=` keep it. Only fresh
  traces see it: `jax.jit` keys its trace cache on the function and its
  arguments, so a function already traced outside would be reused as is.
  """
  global _native_everywhere
  before, _native_everywhere = _native_everywhere, True
  try:
    yield
  finally:
    _native_everywhere = before


def devices_sharing_batch() -> int:
  """How many devices split the batch being traced: the size of JAX's
  abstract mesh (`sharding.traced_on_mesh` sets it around the jitted
  steps), 1 outside one."""
  get_abstract_mesh = getattr(jax.sharding, "get_abstract_mesh", None)
  return (get_abstract_mesh().size if get_abstract_mesh else 0) or 1


def _batch_per_device(x: jax.Array) -> int:
  """The share of `x`'s (traced, global) batch that one device runs: what
  the CPU form rules weigh, since each device runs its share alone."""
  return -(-x.shape[0] // devices_sharing_batch())


def _native_conv(x, kernel, stride: int, dilation: int, pad: int):
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    rhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


def channel_concat(taps: list[jax.Array]) -> jax.Array:
  """`jnp.concatenate(taps, axis=-1)`, built as stack-and-reshape.

  XLA's CPU backend leaves a concatenate along the minor dimension unfused:
  each tap is first copied out as a slice, then the concatenate itself
  runs 8x slower than a copy of the same bytes. Stacked on a new
  second-to-last axis the same bytes come from one loop fusion (25.6 MB of
  row patches: 4.4 ms as a concatenate, 0.5 ms as a stack).
  """
  stacked = jnp.stack(taps, axis=-2)
  return stacked.reshape(*stacked.shape[:-2], -1)


def _live_taps(size: int, k: int, stride: int, dilation: int, pad: int):
  """Along one axis: the kernel offsets from the first to the last that
  reads the map at least once (the others read only padding: the 5x5
  stride-2 convs on a 2x2 map use 2 of 5), the padding before and after
  that those taps still need, and the output size."""
  out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
  first = [dilation * t - pad for t in range(k)]  # first input row read
  live = [
    t
    for t in range(k)
    if any(0 <= first[t] + stride * m < size for m in range(out))
  ]
  live = list(range(live[0], live[-1] + 1))
  before = max(0, -first[live[0]])
  after = max(0, first[live[-1]] + stride * (out - 1) - size + 1)
  return live, before, after, out


def _stride2_taps(x, pads, row_starts, col_starts, ho: int, wo: int):
  """The taps of a stride-2 conv as plain slices of the padded map's
  space-to-depth view [B, H/2, 2, W/2, 2, C] (a reshape, no copy): the
  rows 2m + r are block rows m + r // 2 of phase r % 2.

  XLA's CPU backend builds patches from stride-2 slices at about 2 GB/s
  and their gradient from interior-padded pads; from the blocked view the
  patches and their gradient are dense slices and pads (enc2 at 64px,
  batch 4, forward+backward 19.6 to 14.1 ms)."""
  top, bottom, left, right = pads
  b, h, w, c = x.shape
  # Pad the bottom and right further, to whole blocks covering every tap.
  hp = max(h + top + bottom, 2 * max(r // 2 + ho for r in row_starts))
  wp = max(w + left + right, 2 * max(q // 2 + wo for q in col_starts))
  hp, wp = hp + hp % 2, wp + wp % 2
  x = jnp.pad(x, ((0, 0), (top, hp - h - top), (left, wp - w - left), (0, 0)))
  blocks = x.reshape(b, hp // 2, 2, wp // 2, 2, c)
  return [
    blocks[:, r // 2 : r // 2 + ho, r % 2, q // 2 : q // 2 + wo, q % 2]
    for r in row_starts
    for q in col_starts
  ]


def _im2col_conv(x, kernel, stride: int, dilation: int, pad: int):
  """patches @ kernel with the k*k taps in the contraction, less those
  that read only padding."""
  k, _, n_in, n_out = kernel.shape
  b, h, w, _ = x.shape
  rows, top, bottom, ho = _live_taps(h, k, stride, dilation, pad)
  cols, left, right, wo = _live_taps(w, k, stride, dilation, pad)
  # Where each live tap's first read lands in the (less) padded input.
  row_starts = [dilation * t - pad + top for t in rows]
  col_starts = [dilation * t - pad + left for t in cols]
  if stride == 2:
    taps = _stride2_taps(
      x, (top, bottom, left, right), row_starts, col_starts, ho, wo
    )
  else:
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    taps = [
      x[
        :,
        r : r + stride * (ho - 1) + 1 : stride,
        c : c + stride * (wo - 1) + 1 : stride,
      ]
      for r in row_starts
      for c in col_starts
    ]
  # A slice, not a stack of taps: XLA splits a dot whose operand is a
  # concatenate into one dot per piece (the 64px discriminator step took
  # 1.4 s instead of 0.3).
  kernel = kernel[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
  # A 2-D matmul: XLA's CPU backend turns a batched-spatial dot_general's
  # gradient into transposing copies that cost as much as the matmul.
  patches = channel_concat(taps).reshape(-1, len(rows) * len(cols) * n_in)
  y = patches @ kernel.reshape(-1, n_out)
  return y.reshape(b, ho, wo, n_out)


def _row_conv(x, kernel, dilation: int, pad: int):
  """A stride-1 conv as one matmul over horizontal patches.

  Only the k column taps go into the contraction; the matmul returns every
  kernel row's contribution at every padded input row ([.., k, out]), and
  the output sums k row-shifted slices of it. Patches are k (not k*k) times
  the input, and both gradients stay dense matmuls plus shifted adds.
  Costs (H + 2*pad) / H of the useful multiply-adds.
  """
  k, _, n_in, n_out = kernel.shape
  b, h, w, _ = x.shape
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = channel_concat(
    [x[:, :, dilation * j : dilation * j + w] for j in range(k)]
  )  # [B, H + 2 pad, W, (col tap, in)]
  kmat = kernel.transpose(1, 2, 0, 3).reshape(k * n_in, k * n_out)
  z = (rows.reshape(-1, k * n_in) @ kmat).reshape(b, h + 2 * pad, w, k, n_out)
  return sum(z[:, dilation * i : dilation * i + h, :, i] for i in range(k))


def _small_subgrid_conv(x, kernel, dilation: int):
  """A stride-1 conv whose dilation sub-grids are at most (k+1)/2 wide,
  as one dense matmul per sub-grid.

  A conv with dilation d and padding d*(k-1)/2 is a padding-(k-1)/2 conv
  on each of the d x d sub-grids (every d-th pixel). When a sub-grid is
  g x g with g <= (k+1)/2, every input position reaches every output
  position through some tap, so the conv is a [g*g*in, g*g*out] matrix of
  kernel taps and no padding: g*g multiply-adds per output per channel
  pair, against k*k for im2col (the neck's dilation 16 on a 16x16 map:
  g = 1, the centre tap alone; dilation 8: g = 2, 4 taps of 9).
  """
  k, _, n_in, n_out = kernel.shape
  b, h, w, _ = x.shape
  d, c = dilation, (k - 1) // 2
  gh, gw = -(-h // d), -(-w // d)
  if max(gh, gw) > c + 1:
    raise ValueError(f"sub-grids of {gh}x{gw} need taps a {k}x{k} kernel lacks")
  x = jnp.pad(x, ((0, 0), (0, gh * d - h), (0, gw * d - w), (0, 0)))
  x = x.reshape(b, gh, d, gw, d, n_in).transpose(0, 2, 4, 1, 3, 5)
  positions = [(i, j) for i in range(gh) for j in range(gw)]
  # Block (input p, output q) is the tap reaching q from p: p - q + c.
  blocks = jnp.stack(
    [
      jnp.stack([kernel[p[0] - q[0] + c, p[1] - q[1] + c] for q in positions])
      for p in positions
    ]
  )  # [p, q, in, out]
  kmat = blocks.transpose(0, 2, 1, 3).reshape(gh * gw * n_in, gh * gw * n_out)
  y = x.reshape(b * d * d, gh * gw * n_in) @ kmat
  y = y.reshape(b, d, d, gh, gw, n_out).transpose(0, 3, 1, 4, 2, 5)
  return y.reshape(b, gh * d, gw * d, n_out)[:, :h, :w]


class Conv(nn.Module):
  """`nn.Conv` with PyTorch's symmetric padding `dilation * (k - 1) // 2`
  (XLA's 'SAME' pads stride-2 convs asymmetrically) and a formulation
  chosen per backend: `matmul=None` means matmuls on the CPU backend only.

  As matmuls, float32 3x3 stride-1 convs use Winograd where it pays
  (`_winograd`); other stride-1 convs use `_row_conv` unless the padding
  is at least a quarter of the map (the wide dilations on small maps, where
  most row products would land in the padding); of those, the ones whose
  dilation sub-grids are at most (k+1)/2 wide use `_small_subgrid_conv`
  (only the taps that reach the map); strided ones and the rest use
  `_im2col_conv`.
  Convs reading the 3-4 channel images stay native: their contraction is
  too short for a matmul (enc1 at 256px: 82 ms as rows, 44 ms native);
  so do the discriminators' 5x5 stride-2 convs of 64 channels or fewer
  on maps of 16 or more (`_narrow_strided`).
  """

  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  matmul: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, d = self.kernel_size, self.stride, self.dilation
    if k % 2 != 1:
      raise ValueError(f"Conv needs an odd kernel size, got {k}")
    kernel = self.param(
      "kernel",
      conv_kernel_init,
      (k, k, x.shape[-1], self.features),
      jnp.float32,
    )
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    pad = d * (k - 1) // 2
    matmul = matmul_convs_default() if self.matmul is None else self.matmul
    if not matmul or x.shape[-1] <= 4 or self._narrow_strided(x):
      y = _native_conv(x, kernel, s, d, pad)
    elif self._winograd(x):
      y = winograd_conv3x3(x, kernel, d)
    elif s == 1 and 4 * pad < min(x.shape[1:3]):
      y = _row_conv(x, kernel, d, pad)
    elif s == 1 and self._small_subgrids(x):
      y = _small_subgrid_conv(x, kernel, d)
    else:
      y = _im2col_conv(x, kernel, s, d, pad)
    if self.use_bias:
      bias = self.param(
        "bias", nn.initializers.zeros, (self.features,), jnp.float32
      )
      y = y + bias.astype(self.dtype)
    return y

  def _small_subgrids(self, x: jax.Array) -> bool:
    """Stride-1 convs whose dilation sub-grids are 1 pixel, or at most
    (k+1)/2 wide and numerous enough that the sub-grid matmul has
    `SUBGRID_MIN_ROWS` rows on each device (with fewer, building and
    differentiating its (g*g)^2-block kernel costs more than im2col's
    padding)."""
    g = -(-max(x.shape[1:3]) // self.dilation)
    rows = _batch_per_device(x) * self.dilation**2
    return g == 1 or (
      g <= (self.kernel_size + 1) // 2 and rows >= SUBGRID_MIN_ROWS
    )

  def _narrow_strided(self, x: jax.Array) -> bool:
    """5x5 stride-2 convs reading at most 64 channels on maps of 16 or
    more: XLA's native conv beats the patches there (forward+backward,
    the 256px global conv2, 128²x64: 48.5 ms against 76.9, and faster on
    both earlier machines; the demo's 32²x16: 2.8 against 4.2), not on
    smaller maps (8²x64, batch 8: 6.6 against 1.5) or wider inputs
    (64²x128: 39.6 against 37.0)."""
    return (
      (self.kernel_size, self.stride) == (5, 2)
      and x.shape[-1] <= NARROW_STRIDED_MAX_CHANNELS
      and min(x.shape[1:3]) >= 16
    )

  def _winograd(self, x: jax.Array) -> bool:
    """3x3 stride-1 float32 convs of at least `WINOGRAD_MIN_CHANNELS` in
    and out and `WINOGRAD_MIN_MACS` multiply-adds per call and device,
    whose dilation sub-grids hold a whole 4x4 tile."""
    n_in = x.shape[-1]
    macs = (
      _batch_per_device(x) * math.prod(x.shape[1:3]) * n_in * self.features * 9
    )
    return (
      (self.kernel_size, self.stride) == (3, 1)
      and jnp.dtype(self.dtype) == jnp.float32
      and min(n_in, self.features) >= WINOGRAD_MIN_CHANNELS
      and macs >= WINOGRAD_MIN_MACS
      and min(x.shape[1:3]) >= 4 * self.dilation
    )
