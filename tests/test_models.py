"""Model-level facts: the sub-pixel transposed conv is PyTorch's."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch

from glcic_jax import models


@pytest.mark.parametrize("size", [(8, 8), (6, 10), (16, 12)])
def test_subpixel_transposed_conv_equals_conv_transpose(size):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, *size, 6)).astype(np.float32)
  kernel = rng.standard_normal((4, 4, 5, 6)).astype(np.float32)
  reference = nn.ConvTranspose(
    5,
    (4, 4),
    strides=(2, 2),
    padding=((2, 2), (2, 2)),
    use_bias=False,
    transpose_kernel=True,
  )
  ours = models.SubPixelConvTranspose(5)
  params = {"params": {"kernel": kernel}}

  def loss(module, k, x):
    y = module.apply({"params": {"kernel": k}}, x)
    return (y * np.arange(y.size).reshape(y.shape) / y.size).sum(), y

  (l_ref, y_ref), g_ref = jax.value_and_grad(
    lambda k, x: loss(reference, k, x), argnums=(0, 1), has_aux=True
  )(kernel, x)
  (l_new, y_new), g_new = jax.value_and_grad(
    lambda k, x: loss(ours, k, x), argnums=(0, 1), has_aux=True
  )(kernel, x)
  assert y_new.shape == (2, 2 * size[0], 2 * size[1], 5)
  np.testing.assert_allclose(y_new, y_ref, atol=1e-5)
  for a, b in zip(g_new, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4)
  # ...and PyTorch's ConvTranspose2d with the mmagic-layout weight.
  t = torch.nn.ConvTranspose2d(6, 5, 4, 2, padding=1, bias=False)
  with torch.no_grad():
    t.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    want = t(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(
    ours.apply(params, x), want.transpose(0, 2, 3, 1), atol=1e-5
  )


def test_generator_parameters_unchanged():
  g = models.Generator()
  shapes = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 4)), False)
  )
  dec3 = shapes["params"]["decoder"]["dec3"]["conv"]["kernel"]
  assert dec3.shape == (4, 4, 128, 256)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert n == 6_069_155


@pytest.mark.parametrize("shape", [(8, 8, 6), (5, 7, 4), (2, 2, 3)])
def test_patch_conv_equals_strided_conv(shape):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, *shape)).astype(np.float32)
  kernel = rng.standard_normal((5, 5, shape[-1], 7)).astype(np.float32)
  reference = nn.Conv(
    7, (5, 5), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False
  )
  ours = models.PatchConv(7, 5, 2, 2)

  def run(module):
    def loss(k, x):
      y = module.apply({"params": {"kernel": k}}, x)
      return (y * np.arange(y.size).reshape(y.shape) / y.size).sum(), y

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(kernel, x)

  (_, y_ref), g_ref = run(reference)
  (_, y_new), g_new = run(ours)
  np.testing.assert_allclose(y_new, y_ref, atol=1e-5)
  for a, b in zip(g_new, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_discriminators_use_patch_convs_on_cpu_with_the_same_parameters():
  assert models.patch_convs_default()  # tests run on the CPU backend
  d = models.GLDiscs()
  shapes = jax.eval_shape(
    lambda: d.init(
      jax.random.PRNGKey(0),
      np.zeros((1, 256, 256, 3)),
      np.zeros((1, 128, 128, 3)),
      False,
    )
  )
  kernel = shapes["params"]["global_disc"]["conv4"]["conv"]["kernel"]
  assert kernel.shape == (5, 5, 256, 512)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert n == 45_060_225
