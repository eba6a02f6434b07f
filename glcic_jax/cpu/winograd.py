"""3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3).

Why: on the CPU backend the generator's training step is bound by the
multiply-adds of its 3x3 convolutions (the 256-channel ones at H/4 carry
about 70% of them), and XLA already runs its matmuls near the machine's
peak, so the only way to a faster step is fewer multiplies. F(4x4, 3x3)
(Lavin and Gray, 2016) computes each 4x4 output tile from a 6x6 input tile
with 36 products per channel pair instead of 144: 4x fewer multiply-adds,
as 36 independent [tiles, in] @ [in, out] matmuls. The input and output
transforms are linear combinations of strided slices with constant
coefficients, which XLA fuses into a few loops; the kernel's is one small
matmul.

The backward pass is written out (`jax.custom_vjp`), not differentiated:
autodiff would scatter gradients back through the overlapping input tiles,
which on the CPU costs more than the whole forward pass. It runs the forward
algorithm transposed: the output gradient's tiles (A dy A^T) feed both the
kernel gradient (36 matmuls with the saved input tiles, transformed back by
G^T) and the input gradient (36 matmuls with the saved kernel tiles, then
B's transpose as an overlap-add of the 6x6 tiles). That needs no second
kernel transform and one tile transform less than a Winograd correlation
of dy with the flipped kernel, which was slower per layer
(docs/performance.md).

Accuracy: the transforms cost a little precision; with the interpolation
points below, float32 outputs and both gradients agree with a direct
convolution to a few 1e-6 of their largest value. Used in float32 only.
Dilated convolutions run on the d x d sub-grids of the map (a dilated 3x3
conv with padding d is an ordinary padding-1 conv on each sub-grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Toom-Cook matrices for the interpolation points 0, 3/4, -3/4, 3/2, -3/2
# and infinity (1-D: y = A^T [(G g) * (B^T d)] for a 6-tap d and 3-tap g).
# Lavin's points 0, +-1, +-2 give float32 outputs several times less
# accurate (tests/cpu/test_winograd.py); these were the best of the 5-point
# sets of small dyadic-times-3 fractions tried, at the same number of
# nonzero coefficients. Every entry of B^T and A^T is exact in float32.
_BT = np.array(
  [
    [81 / 64, 0, -45 / 16, 0, 1, 0],
    [0, -27 / 16, -9 / 4, 3 / 4, 1, 0],
    [0, 27 / 16, -9 / 4, -3 / 4, 1, 0],
    [0, -27 / 32, -9 / 16, 3 / 2, 1, 0],
    [0, 27 / 32, -9 / 16, -3 / 2, 1, 0],
    [0, 81 / 64, 0, -45 / 16, 0, 1],
  ],
  np.float64,
)
_G = np.array(
  [
    [64 / 81, 0, 0],
    [-128 / 243, -32 / 81, -8 / 27],
    [-128 / 243, 32 / 81, -8 / 27],
    [32 / 243, 16 / 81, 8 / 27],
    [32 / 243, -16 / 81, 8 / 27],
    [0, 0, 1],
  ],
  np.float64,
)
_AT = np.array(
  [
    [1, 1, 1, 1, 1, 0],
    [0, 3 / 4, -3 / 4, 3 / 2, -3 / 2, 0],
    [0, 9 / 16, 9 / 16, 9 / 4, 9 / 4, 0],
    [0, 27 / 64, -27 / 64, 27 / 8, -27 / 8, 1],
  ],
  np.float64,
)
TILE = 4  # output tile side; input tiles are TILE + 2


def _combine(coefs: Sequence[float], terms: Sequence[jax.Array]) -> jax.Array:
  """sum(c * t) with the zero terms left out and +-1 as adds/subtracts."""
  out = None
  for c, t in zip(coefs, terms):
    if c == 0:
      continue
    v = t if c == 1 else -t if c == -1 else float(c) * t
    out = v if out is None else out + v
  return out


def _input_tiles(x: jax.Array) -> jax.Array:
  """[B, 4T, 4S, C] -> B^T d B of every 6x6 tile of the 1-padded input,
  as [36, B*T*S, C] (tile offsets 4 apart, so neighbours share 2 rows).

  Rows, then columns, each stage one stack of six combinations of strided
  slices (one loop each on the CPU; 36 separate combinations would be 36
  ops, each re-reading the rows).
  """
  b, h, w, c = x.shape
  t, s = h // TILE, w // TILE
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = [xp[:, i : i + TILE * (t - 1) + 1 : TILE] for i in range(6)]
  r = jnp.stack([_combine(_BT[u], rows) for u in range(6)])
  cols = [r[:, :, :, j : j + TILE * (s - 1) + 1 : TILE] for j in range(6)]
  u = jnp.stack([_combine(_BT[v], cols) for v in range(6)], axis=1)
  return u.reshape(36, b * t * s, c)


def _overlap_add(parts: Sequence[jax.Array], axis: int) -> jax.Array:
  """The transpose of taking 6-wide windows 4 apart along `axis`: six
  [..., S, ...] arrays (window offset j) -> [..., 4S + 4, ...] with
  position 4s + j the sum of parts[j][s] over the windows covering it.

  Offsets 0-3 of window s and 4-5 of window s - 1 land on the same 4
  positions, so the sum is two stacks, padded by one window at opposite
  ends, added: one loop, no scatter."""
  own = jnp.stack(parts[:4], axis=axis + 1)  # [..., S, 4, ...]
  spill = jnp.stack(parts[4:], axis=axis + 1)  # [..., S, 2, ...]
  pad_own = [(0, 0)] * own.ndim
  pad_spill = [(0, 0)] * own.ndim
  pad_own[axis] = (0, 1)
  pad_spill[axis], pad_spill[axis + 1] = (1, 0), (0, 2)
  y = jnp.pad(own, pad_own) + jnp.pad(spill, pad_spill)  # [..., S+1, 4, ...]
  return y.reshape(*y.shape[:axis], -1, *y.shape[axis + 2 :])


def _input_tiles_transposed(du: jax.Array, b: int, t: int, s: int) -> jax.Array:
  """The transpose of `_input_tiles`: [36, B*T*S, C] -> [B, 4T, 4S, C].

  Columns, then rows (the forward stages in reverse), each stage one
  stack of six combinations and an overlap-add of the tiles; the padding
  ring of the forward's input is cut off, not summed."""
  c = du.shape[-1]
  du = du.reshape(6, 6, b, t, s, c)
  cols = [_combine(_BT[:, j], [du[:, v] for v in range(6)]) for j in range(6)]
  r = _overlap_add(cols, 3)[:, :, :, 1 : TILE * s + 1]  # [6, B, T, 4S, C]
  rows = [_combine(_BT[:, i], list(r)) for i in range(6)]  # each [B, T, 4S, C]
  return _overlap_add(rows, 1)[:, 1 : TILE * t + 1]


def _output_tiles(m: jax.Array, b: int, t: int, s: int) -> jax.Array:
  """[36, B*T*S, O] -> A^T m A per tile, laid out as [B, 4T, 4S, O].

  Rows, then columns, each stage one stack of four combinations, then one
  transpose into the map's layout. Combining each of the 16 output
  positions separately made one loop per position, each re-reading its
  inputs: slower to run and to compile."""
  n_out = m.shape[-1]
  m = m.reshape(6, 6, b, t, s, n_out)
  rows = jnp.stack([_combine(_AT[p], list(m)) for p in range(TILE)])
  cols = [rows[:, v] for v in range(6)]  # each [4 (row in tile), B, T, S, O]
  y = jnp.stack([_combine(_AT[q], cols) for q in range(TILE)], axis=1)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, TILE * t, TILE * s, n_out)


def _output_tiles_transposed(dy: jax.Array) -> jax.Array:
  """The transpose of `_output_tiles`: [B, 4T, 4S, O] -> A dy A^T per
  (non-overlapping) 4x4 tile, as [36, B*T*S, O], in two stacked stages
  like the forward transforms."""
  b, h, w, n_out = dy.shape
  t, s = h // TILE, w // TILE
  d = dy.reshape(b, t, TILE, s, TILE, n_out)
  rows = [d[:, :, p] for p in range(TILE)]  # each [B, T, S, 4, O]
  r = jnp.stack([_combine(_AT[:, u], rows) for u in range(6)])
  cols = [r[..., q, :] for q in range(TILE)]  # each [6, B, T, S, O]
  out = jnp.stack([_combine(_AT[:, v], cols) for v in range(6)], axis=1)
  return out.reshape(36, b * t * s, n_out)


# G (x) G: row (u, v) of the 6x6 kernel tile from tap (i, j) of the 3x3.
_G2 = np.kron(_G, _G).astype(np.float32)


def _kernel_tiles(kernel: jax.Array) -> jax.Array:
  """[3, 3, C, O] -> G g G^T as [36, C, O]: one [36, 9] @ [9, C*O] matmul,
  faster than two stages of strided-slice combinations (like the input
  tiles) would be."""
  n_in, n_out = kernel.shape[2:]
  return jnp.dot(_G2, kernel.reshape(9, n_in * n_out)).reshape(36, n_in, n_out)


def _kernel_tiles_transposed(dv: jax.Array) -> jax.Array:
  """The transpose of `_kernel_tiles`: [36, C, O] -> G^T dv G, [3, 3, C, O]."""
  n_in, n_out = dv.shape[1:]
  return jnp.dot(_G2.T, dv.reshape(36, n_in * n_out)).reshape(3, 3, n_in, n_out)


def _tilewise_matmul(a: jax.Array, b: jax.Array, ca: int, cb: int):
  """36 matmuls, batched over the leading tile-position axis."""
  return jax.lax.dot_general(a, b, (((ca,), (cb,)), ((0,), (0,))))


def _forward(x: jax.Array, kernel: jax.Array):
  """Output tiles of x, and the input and kernel tiles (the residuals)."""
  b, h, w, _ = x.shape
  u, v = _input_tiles(x), _kernel_tiles(kernel)
  m = _tilewise_matmul(u, v, 2, 1)
  return _output_tiles(m, b, h // TILE, w // TILE), (u, v)


@jax.custom_vjp
def _conv_tiled(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Padding-1 3x3 conv of a map whose sides are multiples of 4."""
  return _forward(x, kernel)[0]


def _conv_tiled_fwd(x, kernel):
  return _forward(x, kernel)  # (y, residuals (u, v))


def _conv_tiled_bwd(residuals, dy):
  """dm = A dy A^T per tile, then dx: [36, P, O] @ [36, C, O]^T (the
  kernel tiles read transposed), overlap-added back through B; dkernel:
  [36, O, P] @ [36, P, C] (both operands as stored: a contraction over
  the middle axis of both would be a slower form that XLA's CPU runtime
  hands to another thread pool, where it competes with the input
  gradient's ops for the cores), back through G."""
  u, v = residuals
  b, h, w, _ = dy.shape
  dm = _output_tiles_transposed(dy)  # [36, P, O]
  du = _tilewise_matmul(dm, v, 2, 2)  # [36, P, C]
  dx = _input_tiles_transposed(du, b, h // TILE, w // TILE)
  dv_t = _tilewise_matmul(jnp.swapaxes(dm, 1, 2), u, 2, 1)  # [36, O, C]
  return dx, _kernel_tiles_transposed(jnp.swapaxes(dv_t, 1, 2))


_conv_tiled.defvjp(_conv_tiled_fwd, _conv_tiled_bwd)


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def winograd_conv3x3(
  x: jax.Array, kernel: jax.Array, dilation: int = 1
) -> jax.Array:
  """PyTorch's Conv2d(k=3, stride=1, padding=dilation, dilation=dilation)
  on NHWC `x` with an HWIO `kernel`, any map size.

  The map is zero-padded at the bottom and right up to whole sub-grids and
  tiles (that matches the convolution's own zero padding) and the output
  cropped back.
  """
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f"winograd_conv3x3 needs a 3x3 kernel, got {kernel.shape}")
  b, h, w, c = x.shape
  d = dilation
  gh, gw = math.ceil(h / d), math.ceil(w / d)  # sub-grid sides
  th, tw = _round_up(gh, TILE), _round_up(gw, TILE)
  x = jnp.pad(x, ((0, 0), (0, d * gh - h), (0, d * gw - w), (0, 0)))
  if d > 1:  # space to batch: [d*d*B, gh, gw, C]
    x = x.reshape(b, gh, d, gw, d, c).transpose(2, 4, 0, 1, 3, 5)
    x = x.reshape(d * d * b, gh, gw, c)
  x = jnp.pad(x, ((0, 0), (0, th - gh), (0, tw - gw), (0, 0)))
  y = _conv_tiled(x, kernel)[:, :gh, :gw]
  n_out = y.shape[-1]
  if d > 1:
    y = y.reshape(d, d, b, gh, gw, n_out).transpose(2, 3, 0, 4, 1, 5)
    y = y.reshape(b, d * gh, d * gw, n_out)
  return y[:, :h, :w]
