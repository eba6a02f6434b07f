"""PyTorch's ConvTranspose2d(k=4, s=2, p=1), the generator's two
upsampling layers, in the sub-pixel form for the CPU backend.

XLA's CPU backend runs the transposed (input-dilated) convolution many
times slower than a matmul of the same arithmetic (docs/performance.md),
so there every output phase's 2x2 window goes into one matmul over 2x2
patches. The parameters are those of `layers.ConvTranspose`, so
checkpoints and `interop` never depend on the form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glcic_jax import layers
from glcic_jax.cpu.conv import channel_concat

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
  16x16, 3% at 64x64 (a sub-pixel 3x3 conv would do 2.25x).
  """
  b, h, w, n_in = x.shape
  n_out = kernel.shape[2]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = channel_concat(
    [xp[:, ty : ty + h + 1, tx : tx + w + 1] for ty in (0, 1) for tx in (0, 1)]
  )
  z = patches.reshape(-1, 4 * n_in) @ subpixel_patch_kernel(kernel)
  z = z.reshape(b, h + 1, w + 1, 2, 2, n_out)
  rows = [
    jnp.stack([z[:, a : a + h, c : c + w, a, c] for c in (0, 1)], axis=3)
    for a in (0, 1)
  ]  # each [B, H, W, 2 (column phase), out]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, n_out)


class ConvTranspose(layers.ConvTranspose):
  """`layers.ConvTranspose` as one matmul over 2x2 patches: every output
  phase of this layer reads a 2x2 input window, so one matmul computes
  all four phases."""

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    kernel = kernel.astype(x.dtype)
    return _subpixel_matmul(x, kernel)
