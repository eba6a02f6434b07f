"""The CPU backend's forms of `layers.Conv`: the same parameters and the
same function, computed as matmuls where XLA's CPU convolutions are slow.

On the CPU XLA's matmuls run near the machine's peak while its
convolutions do not: the 5x5 stride-2 convs on small maps and, on some
CPUs, the 3x3 convs reach a fraction of the matmul speed (per layer in
docs/performance.md). So, per layer and by its shapes:

- float32 3x3 stride-1 convs large enough to pay run as Winograd F(4x4,
  3x3) (`winograd`: 4x fewer multiplies, which the generator step is
  bound by);
- other stride-1 convs run as one matmul over horizontal patches
  (`_row_conv`), unless the padding is at least a quarter of the map (the
  wide dilations on small maps, where most row products would land in the
  padding); of those, the ones whose dilation sub-grids are at most (k+1)/2
  wide run as one dense matmul per sub-grid (`_small_subgrid_conv`);
- strided ones and the rest run as im2col (`_im2col_conv`);
- convs reading the 3-4 channel images and the discriminators' narrow 5x5
  stride-2 convs on maps of 16 or more stay native: there the contraction
  is too short for a matmul, and XLA's convolution wins.

The thresholds below were measured (docs/performance.md, "CPU conv
forms"). `layers.conv_layers` is the only importer of this package.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from glcic_jax import layers
from glcic_jax.cpu.winograd import winograd_conv3x3

# Where Winograd pays, counted per device (the share of the batch one
# device runs): narrower layers run faster as rows (the transforms outweigh
# the saved multiplies), and smaller calls save less a step than their
# extra compilation costs a short run.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_MACS = 5 * 10**7
# Narrow 5x5 stride-2 convs on maps of 16 or more stay native (`_narrow`).
NARROW_STRIDED_MAX_CHANNELS = 64
# Where a dilated conv's 2x2 sub-grids pay as one dense matmul: with fewer
# sub-grid rows per device, building and differentiating its (g*g)^2-block
# kernel costs more than im2col's padding.
SUBGRID_MIN_ROWS = 128


def channel_concat(taps: list[jax.Array]) -> jax.Array:
  """`jnp.concatenate(taps, axis=-1)`, built as stack-and-reshape.

  XLA's CPU backend leaves a concatenate along the minor dimension unfused:
  each tap is first copied out as a slice, then the concatenate itself
  runs several times slower than a copy of the same bytes. Stacked on a new
  second-to-last axis the same bytes come from one loop fusion.
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

  XLA's CPU backend builds patches from stride-2 slices slowly and their
  gradient from interior-padded pads; from the blocked view the patches
  and their gradient are dense slices and pads."""
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
  # concatenate into one dot per piece.
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


class Conv(layers.Conv):
  """`layers.Conv` computed in the form that runs fastest on the CPU
  (module docstring), chosen per layer from its shapes and
  `batch_per_device` (None: the traced batch, on one device)."""

  batch_per_device: int | None = None

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    kernel = kernel.astype(x.dtype)
    s, d = self.stride, self.dilation
    pad = d * (self.kernel_size - 1) // 2
    if x.shape[-1] <= 4 or self._narrow(x):
      return layers.conv2d(x, kernel, s, d)
    if self._winograd(x):
      return winograd_conv3x3(x, kernel, d)
    if s == 1 and 4 * pad < min(x.shape[1:3]):
      return _row_conv(x, kernel, d, pad)
    if s == 1 and self._small_subgrids(x):
      return _small_subgrid_conv(x, kernel, d)
    return _im2col_conv(x, kernel, s, d, pad)

  def _per_device(self, x: jax.Array) -> int:
    return (
      x.shape[0] if self.batch_per_device is None else self.batch_per_device
    )

  def _small_subgrids(self, x: jax.Array) -> bool:
    """Stride-1 convs whose dilation sub-grids are 1 pixel, or at most
    (k+1)/2 wide and numerous enough that the sub-grid matmul has
    `SUBGRID_MIN_ROWS` rows on each device."""
    g = -(-max(x.shape[1:3]) // self.dilation)
    rows = self._per_device(x) * self.dilation**2
    return g == 1 or (
      g <= (self.kernel_size + 1) // 2 and rows >= SUBGRID_MIN_ROWS
    )

  def _narrow(self, x: jax.Array) -> bool:
    """5x5 stride-2 convs reading at most `NARROW_STRIDED_MAX_CHANNELS` on
    maps of 16 or more: XLA's native conv beats the patches there, not on
    smaller maps or wider inputs."""
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
    macs = self._per_device(x) * math.prod(x.shape[1:3]) * n_in * 9
    return (
      (self.kernel_size, self.stride) == (3, 1)
      and jnp.dtype(self.dtype) == jnp.float32
      and min(n_in, self.features) >= WINOGRAD_MIN_CHANNELS
      and macs * self.features >= WINOGRAD_MIN_MACS
      and min(x.shape[1:3]) >= 4 * self.dilation
    )
