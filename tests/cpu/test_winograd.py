"""Winograd F(4x4, 3x3) convolutions equal XLA's convolution (forward and
both gradients) at any map size and dilation, to float32 precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glcic_jax import layers
from glcic_jax.cpu import winograd as winograd_conv


def test_transform_matrices_compute_a_correlation_exactly():
  """In exact arithmetic A^T [(G g) * (B^T d)] is the 4-output correlation
  of a 6-tap d with a 3-tap g: sum_j A^T[i,j] G[j,k] B^T[j,l] = [l == i+k]."""
  bt, g, at = winograd_conv._BT, winograd_conv._G, winograd_conv._AT
  got = np.einsum("ij,jk,jl->ikl", at, g, bt)
  want = np.zeros((4, 3, 6))
  for i in range(4):
    for k in range(3):
      want[i, k, i + k] = 1
  np.testing.assert_allclose(got, want, atol=1e-12)
  # B^T and A^T, which touch every activation, are exact in float32.
  for m in (bt, at):
    assert np.array_equal(m.astype(np.float32).astype(np.float64), m)


def _value_and_grads(conv, x, kernel, weights):
  """Jitted: one compilation instead of one per op of the transforms."""
  return jax.jit(
    jax.value_and_grad(lambda x, k, w: jnp.sum(conv(x, k) * w), argnums=(0, 1))
  )(x, kernel, weights)


# (H, W, dilation): whole tiles, ragged tiles, a 1-pixel map, dilations with
# and without whole sub-grids, a dilation wider than the map.
CASES = [
  (8, 8, 1),
  (5, 7, 1),
  (1, 1, 1),
  (12, 10, 2),
  (16, 16, 4),
  (9, 13, 3),
  (3, 2, 2),
  (8, 8, 16),
]


@pytest.mark.parametrize(("h", "w", "dilation"), CASES)
def test_winograd_conv_equals_xla_conv(h, w, dilation):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, h, w, 6)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 6, 7)).astype(np.float32)
  weights = rng.standard_normal((2, h, w, 7)).astype(np.float32)
  y = winograd_conv.winograd_conv3x3(x, kernel, dilation)
  y_ref = layers.conv2d(x, kernel, 1, dilation)
  assert y.shape == y_ref.shape
  scale = float(jnp.max(jnp.abs(y_ref)))
  np.testing.assert_allclose(y, y_ref, atol=1e-5 * scale)
  _, grads = _value_and_grads(
    lambda x, k: winograd_conv.winograd_conv3x3(x, k, dilation),
    x,
    kernel,
    weights,
  )
  _, grads_ref = _value_and_grads(
    lambda x, k: layers.conv2d(x, k, 1, dilation),
    x,
    kernel,
    weights,
  )
  for a, b in zip(grads, grads_ref):
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_winograd_conv_is_accurate_at_the_models_widths():
  """256 input channels, as in the generator's middle: within 5e-6 of the
  largest output (Lavin's points 0, +-1, +-2 give about 2e-5 here)."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((1, 16, 16, 256)).astype(np.float32)
  kernel = (rng.standard_normal((3, 3, 256, 32)) / 48).astype(np.float32)
  y = winograd_conv.winograd_conv3x3(x, kernel)
  y_ref = layers.conv2d(x, kernel)
  err = float(jnp.max(jnp.abs(y - y_ref)) / jnp.max(jnp.abs(y_ref)))
  assert err < 5e-6, err


def test_input_tile_transpose_is_the_adjoint_of_the_input_tiles():
  """The backward pass overlap-adds gradient tiles through B by hand; it
  must equal autodiff's transpose of `_input_tiles` (2x3 tiles: interior
  overlaps in both directions and the cut padding ring)."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 8, 12, 5)).astype(np.float32)
  tiles, vjp = jax.vjp(winograd_conv._input_tiles, x)
  assert tiles.shape == (36, 2 * 2 * 3, 5)
  du = rng.standard_normal(tiles.shape).astype(np.float32)
  got = winograd_conv._input_tiles_transposed(du, 2, 2, 3)
  want = vjp(du)[0]
  assert got.shape == x.shape
  np.testing.assert_allclose(
    got, want, atol=2e-6 * float(jnp.max(jnp.abs(want)))
  )


def test_winograd_rejects_other_kernels():
  x, k5 = jnp.zeros((1, 8, 8, 2)), jnp.zeros((5, 5, 2, 2))
  with pytest.raises(ValueError, match="3x3 kernel"):
    winograd_conv.winograd_conv3x3(x, k5)
