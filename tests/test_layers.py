"""The layers and the layer factory: every conv form computes PyTorch's
function from the same parameters, and the form is chosen once, by
`layers.conv_layers`, never by the layers themselves."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from glcic_jax import config as config_lib
from glcic_jax import layers, models
from glcic_jax.cpu import conv as cpu_conv
from glcic_jax.cpu import subpixel


def weighted_sum(y):
  """A loss whose gradient differs at every output element (a plain sum
  would hide permuted or misplaced outputs)."""
  w = jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size
  return jnp.sum(y * w)


def _value_and_grads(module, kernel, x):
  def loss(k, x):
    y = module.apply({"params": {"kernel": k}}, x)
    return weighted_sum(y), y

  (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
    kernel, x
  )
  return y, grads


# Input sides of dec3 (H/4: odd or even) and dec5 (H/2) for generator inputs
# whose sides are multiples of 4, plus one channel count that is not a
# multiple of anything convenient.
@pytest.mark.parametrize("forms", ["native", "cpu"])
@pytest.mark.parametrize("size", [(5, 7), (8, 8), (6, 10), (1, 3)])
def test_transposed_conv_equals_conv_transpose_and_pytorch(forms, size):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, *size, 6)).astype(np.float32)
  kernel = rng.standard_normal((4, 4, 5, 6)).astype(np.float32)  # [k,k,o,i]
  reference = nn.ConvTranspose(
    5,
    (4, 4),
    strides=(2, 2),
    padding=((2, 2), (2, 2)),
    use_bias=False,
    transpose_kernel=True,
  )
  y_ref, g_ref = _value_and_grads(reference, kernel, x)
  conv_transpose = layers.conv_layers(forms)[1]
  y, g = _value_and_grads(conv_transpose(5), kernel, x)
  assert y.shape == (2, 2 * size[0], 2 * size[1], 5)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4)

  # PyTorch's ConvTranspose2d with the mmagic-layout weight [in, out, k, k]
  # (interop's mapping: a transpose, no flip), forward and both gradients.
  t = torch.nn.ConvTranspose2d(6, 5, 4, 2, padding=1, bias=False)
  with torch.no_grad():
    t.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  yt = t(xt)
  w = torch.from_numpy(
    (np.arange(y.size, dtype=np.float32).reshape(y.shape) / y.size)
    .transpose(0, 3, 1, 2)
    .copy()
  )
  (yt * w).sum().backward()
  np.testing.assert_allclose(
    y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5
  )
  np.testing.assert_allclose(
    g[0], t.weight.grad.numpy().transpose(2, 3, 1, 0), atol=1e-4
  )
  np.testing.assert_allclose(
    g[1], xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-4
  )


@pytest.mark.parametrize("forms", ["native", "cpu"])
@pytest.mark.parametrize(
  "make",
  [
    lambda conv, tconv: tconv(4, True, jnp.bfloat16),
    lambda conv, tconv: conv(4, 3, 1, 1, True, jnp.bfloat16),
    lambda conv, tconv: conv(4, 5, 2, 1, True, jnp.bfloat16),
    lambda conv, tconv: conv(4, 3, 1, 2, True, jnp.bfloat16),
  ],
)
def test_conv_layers_in_bf16_keep_float32_parameters(make, forms):
  x = jnp.ones((1, 4, 4, 8))
  module = make(*layers.conv_layers(forms))
  variables = module.init(jax.random.PRNGKey(0), x)
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32
  assert module.apply(variables, x).dtype == jnp.bfloat16


def test_conv_rejects_even_kernels():
  conv = layers.Conv(4, 4)
  with pytest.raises(ValueError, match="odd kernel"):
    conv.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def test_factory_picks_the_forms_once():
  """'auto' is the CPU forms on the CPU backend (the tests' backend);
  'native' is XLA's convolutions; equal arguments give the same classes,
  so networks built twice compare equal (jit and caches key on them)."""
  conv, tconv = layers.conv_layers("native")
  assert (conv, tconv) == (layers.Conv, layers.ConvTranspose)
  conv, tconv = layers.conv_layers("auto", 8)
  assert conv.func is cpu_conv.Conv and conv.keywords == {"batch_per_device": 8}
  assert tconv is subpixel.ConvTranspose
  assert layers.conv_layers("cpu", 8) == (conv, tconv)
  model = config_lib.get_model_config()
  assert models.build_models(model, batch_per_device=8) == models.build_models(
    model, batch_per_device=8
  )
  with pytest.raises(ValueError, match="conv_forms"):
    layers.conv_layers("gpu")


def _hlo(generator) -> str:
  x = jnp.zeros((1, 16, 16, 4))
  variables = jax.eval_shape(
    lambda x: generator.init(jax.random.PRNGKey(0), x, False), x
  )
  apply = jax.jit(lambda v, x: generator.apply(v, x, train=False))
  return apply.lower(variables, x).as_text()


def test_native_forms_are_xla_convolutions_only():
  """What GPUs and TPUs run: with the native forms the generator is XLA
  convolutions and no matmuls; the CPU forms replace most of them by
  matmuls (and leave the 4-channel input conv native)."""
  model = config_lib.get_model_config()
  model.generator_channels = 8
  native = _hlo(models.build_models(model, conv_forms="native")[0])
  assert native.count("stablehlo.convolution") == 17  # 6 + 4 + 7 layers
  assert "stablehlo.dot_general" not in native
  cpu = _hlo(models.build_models(model, conv_forms="cpu")[0])
  assert "stablehlo.dot_general" in cpu
  assert cpu.count("stablehlo.convolution") < 17
