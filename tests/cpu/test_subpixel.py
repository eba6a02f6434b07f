"""The sub-pixel form of the transposed conv (its values against PyTorch
are in tests/test_layers.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from glcic_jax.cpu import subpixel


def test_subpixel_patch_kernel_places_every_tap_once():
  """Each of the 16 kernel taps lands in exactly one (window tap, phase)
  block, so the matmul does no spurious work and misses none."""
  kernel = jnp.arange(16.0).reshape(4, 4, 1, 1) + 1
  k = np.asarray(subpixel.subpixel_patch_kernel(kernel))
  assert k.shape == (4, 4)
  assert sorted(k.ravel().tolist()) == list(range(1, 17))
