"""Model-level facts: the rewritten layers compute PyTorch's functions from
the same parameters (so checkpoints and interop are untouched)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from glcic_jax import conv_layers, interop, models, sharding, subpixel_conv
from tests import torch_reference as ref


def _weighted_sum(y):
  """A loss whose gradient differs at every output element (a plain sum
  would hide permuted or misplaced outputs)."""
  w = jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size
  return jnp.sum(y * w)


def _value_and_grads(module, kernel, x):
  def loss(k, x):
    y = module.apply({"params": {"kernel": k}}, x)
    return _weighted_sum(y), y

  (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
    kernel, x
  )
  return y, grads


# Input sides of dec3 (H/4: odd or even) and dec5 (H/2) for generator inputs
# whose sides are multiples of 4, plus one channel count that is not a
# multiple of anything convenient.
@pytest.mark.parametrize("matmul", [True, False])
@pytest.mark.parametrize("size", [(5, 7), (8, 8), (6, 10), (1, 3)])
def test_transposed_conv_equals_conv_transpose_and_pytorch(matmul, size):
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
  y, g = _value_and_grads(
    subpixel_conv.SubPixelConvTranspose(5, matmul=matmul), kernel, x
  )
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


def test_subpixel_patch_kernel_places_every_tap_once():
  """Each of the 16 kernel taps lands in exactly one (window tap, phase)
  block, so the matmul does no spurious work and misses none."""
  kernel = jnp.arange(16.0).reshape(4, 4, 1, 1) + 1
  k = np.asarray(subpixel_conv.subpixel_patch_kernel(kernel))
  assert k.shape == (4, 4)
  assert sorted(k.ravel().tolist()) == list(range(1, 17))


@pytest.mark.parametrize("matmul", [True, False])
@pytest.mark.parametrize(
  "make",
  [
    lambda m: subpixel_conv.SubPixelConvTranspose(4, True, jnp.bfloat16, m),
    lambda m: conv_layers.Conv(4, 3, 1, 1, True, jnp.bfloat16, m),
    lambda m: conv_layers.Conv(4, 5, 2, 1, True, jnp.bfloat16, m),
    lambda m: conv_layers.Conv(4, 3, 1, 2, True, jnp.bfloat16, m),
  ],
)
def test_conv_layers_in_bf16_keep_float32_parameters(make, matmul):
  x = jnp.ones((1, 4, 4, 8))
  module = make(matmul)
  variables = module.init(jax.random.PRNGKey(0), x)
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32
  assert module.apply(variables, x).dtype == jnp.bfloat16


def test_generator_with_odd_quarter_size_matches_pytorch():
  """20x28 inputs put 5x7 maps into dec3: the odd case, whole network, in
  training mode, with weights moved by interop as mmagic's would be."""
  torch.manual_seed(0)
  tg = ref.GLEncoderDecoder(8)
  ref.randomize_(tg, seed=3)
  g = models.Generator(channels=8)
  template = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 20, 28, 4)), False)
  )
  variables = interop.state_dict_to_variables(
    tg.state_dict(), template, "", channel_order="rgb"
  )
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 20, 28, 4)).astype(np.float32)
  got, _ = g.apply(variables, x, train=True, mutable=["batch_stats"])
  tg.train()
  with torch.no_grad():
    want = tg(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-4)


def test_generator_parameters_unchanged():
  g = models.Generator()
  shapes = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 4)), False)
  )
  dec3 = shapes["params"]["decoder"]["dec3"]["conv"]["kernel"]
  assert dec3.shape == (4, 4, 128, 256)
  dec5 = shapes["params"]["decoder"]["dec5"]["conv"]["kernel"]
  assert dec5.shape == (4, 4, 64, 128)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert n == 6_069_155


# (kernel, stride, dilation, input HxW): the discriminators' 5x5 stride 2
# down to 2x2 maps, the encoder's 3x3 stride 2 on odd sizes, the 5x5 and
# 3x3 stride-1 convs (row form), dilations whose padding is small (row form)
# or at least a quarter of the map: im2col form, or the small sub-grid form
# where the sub-grids are 2 wide and the batch makes 128 sub-grid rows
# (dilation 8 on 16x16 and 13x9) or 1 pixel (dilation 16, a 1-pixel map).
CONV_CASES = [
  (5, 2, 1, (8, 8)),
  (5, 2, 1, (5, 7)),
  (5, 2, 1, (2, 2)),
  (3, 2, 1, (7, 9)),
  (3, 2, 1, (8, 6)),
  (5, 2, 1, (1, 3)),
  (5, 1, 1, (9, 6)),
  (3, 1, 1, (6, 10)),
  (3, 1, 2, (12, 10)),
  (3, 1, 4, (16, 16)),
  (3, 1, 8, (16, 16)),
  (3, 1, 8, (13, 9)),
  (3, 1, 16, (16, 16)),
  (3, 1, 1, (1, 1)),
]


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize(("k", "stride", "dilation", "size"), CONV_CASES)
def test_matmul_conv_equals_xla_conv(k, stride, dilation, size, use_bias):
  """Forward and both gradients of the matmul formulations equal XLA's
  convolution with PyTorch's padding, from the same parameters."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, *size, 6)).astype(np.float32)
  params = {"kernel": rng.standard_normal((k, k, 6, 7)).astype(np.float32)}
  assert x.shape[-1] > 4  # 4 or fewer channels stay native
  if use_bias:
    params["bias"] = rng.standard_normal(7).astype(np.float32)
  pad = dilation * (k - 1) // 2
  reference = nn.Conv(
    7,
    (k, k),
    strides=stride,
    padding=((pad, pad), (pad, pad)),
    kernel_dilation=dilation,
    use_bias=use_bias,
  )

  def run(module):
    def loss(p, x):
      y = module.apply({"params": p}, x)
      return _weighted_sum(y), y

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  (_, y_ref), g_ref = run(reference)
  for matmul in (True, False):
    conv = conv_layers.Conv(7, k, stride, dilation, use_bias, matmul=matmul)
    (_, y), g = run(conv)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
      np.testing.assert_allclose(a, b, atol=2e-4)


def test_matmul_conv_picks_its_form():
  """Winograd for float32 3x3 stride-1 convs of at least 32 channels and
  5e7 multiply-adds per device whose dilation sub-grids hold a 4x4 tile
  (36 batched matmuls); otherwise the row form where padding is small
  (one matmul with k*out columns), one dense matmul per sub-grid where
  sub-grids are 1 pixel, or 2 wide with 128 of them per device; im2col
  elsewhere, native convs on images and for narrow 5x5 stride-2 convs."""

  def dot_shapes(
    stride,
    dilation,
    side,
    n_in=128,
    n_out=128,
    dtype=None,
    k=3,
    batch=1,
    devices=1,
  ):
    conv = conv_layers.Conv(
      n_out, k, stride, dilation, dtype=dtype or jnp.float32, matmul=True
    )
    x = jnp.zeros((batch, side, side, n_in))
    variables = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)
    mesh = sharding.create_mesh(jax.devices()[:devices])
    apply = sharding.traced_on_mesh(conv.apply, mesh)
    hlo = jax.jit(apply).lower(variables, x).as_text()
    return "\n".join(line for line in hlo.splitlines() if "dot_general" in line)

  # 32x32x128 to 128: 1.5e8 multiply-adds; 64 tiles or 16 4x4 grids of 4.
  assert "-> tensor<36x64x128xf32>" in dot_shapes(1, 1, 32)
  assert "-> tensor<36x64x128xf32>" in dot_shapes(1, 4, 32)
  assert "-> tensor<288x384xf32>" in dot_shapes(1, 1, 16)  # 3.8e7: rows
  # 7.5e7 on one device; on two devices sharing the batch, 3.8e7 each.
  assert "-> tensor<36x32x128xf32>" in dot_shapes(1, 1, 16, batch=2)
  assert "-> tensor<576x384xf32>" in dot_shapes(1, 1, 16, batch=2, devices=2)
  narrow = dot_shapes(1, 1, 256, n_in=16, n_out=32)  # 3e8, 16 channels in
  assert "-> tensor<66048x96xf32>" in narrow  # rows of the padded map
  bf16 = dot_shapes(1, 1, 32, dtype=jnp.bfloat16)
  assert "-> tensor<1088x384xbf16>" in bf16  # rows
  # Dilation 16 on 32x32: 256 sub-grids of 2x2, [256, 4*in] @ [4*in, 4*out].
  assert "(tensor<256x512xf32>, tensor<512x512xf32>)" in dot_shapes(1, 16, 32)
  # Dilation 8 on 16x16: 64 sub-grids of 2x2, too few: im2col of 9 taps.
  assert "(tensor<256x1152xf32>, tensor<1152x128xf32>)" in dot_shapes(1, 8, 16)
  # With batch 2: 128 sub-grids on one device; on two devices, 64 each.
  assert "(tensor<128x512xf32>, tensor<512x512xf32>)" in dot_shapes(
    1, 8, 16, batch=2
  )
  assert "(tensor<512x1152xf32>, tensor<1152x128xf32>)" in dot_shapes(
    1, 8, 16, batch=2, devices=2
  )
  # Dilation 16 on 16x16: 1-pixel sub-grids, the centre tap alone.
  assert "(tensor<256x128xf32>, tensor<128x128xf32>)" in dot_shapes(1, 16, 16)
  assert "-> tensor<256x128xf32>" in dot_shapes(2, 1, 32)
  assert not dot_shapes(1, 1, 32, n_in=3)  # images: native conv
  # 5x5 stride 2: native on maps of 16 or more reading 64 channels or
  # fewer, im2col (over the space-to-depth view) otherwise.
  assert not dot_shapes(2, 1, 16, n_in=64, k=5)
  assert "(tensor<64x3200xf32>, tensor<3200x128xf32>)" in dot_shapes(
    2, 1, 16, k=5
  )
  assert "(tensor<16x1600xf32>, tensor<1600x128xf32>)" in dot_shapes(
    2, 1, 8, n_in=64, k=5
  )


def test_im2col_leaves_out_taps_that_read_only_padding():
  """A 5x5 stride-2 conv on a 2x2 map (the discriminators' last convs at
  64px) reads the map through 2 of 5 taps per axis: its matmul contracts
  over 4 taps, not 25 (the values are in test_matmul_conv_equals_xla_conv)."""
  assert conv_layers._live_taps(2, 5, 2, 1, 2) == ([2, 3], 0, 0, 1)
  assert conv_layers._live_taps(8, 5, 2, 1, 2) == ([0, 1, 2, 3, 4], 2, 1, 4)
  conv = conv_layers.Conv(64, 5, 2, matmul=True)
  x = jnp.zeros((3, 2, 2, 128))
  variables = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)
  hlo = jax.jit(conv.apply).lower(variables, x).as_text()
  assert "(tensor<3x512xf32>, tensor<512x64xf32>)" in hlo


@pytest.mark.parametrize(("dilation", "size"), [(1, (6, 10)), (2, (12, 10))])
def test_row_conv_equals_xla_conv(dilation, size):
  """The row form (bf16 on the CPU) in float32, forward and gradients."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, *size, 6)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 6, 7)).astype(np.float32)

  def run(conv):
    return jax.value_and_grad(
      lambda x, k: _weighted_sum(conv(x, k)), argnums=(0, 1)
    )(x, kernel)

  got = run(lambda x, k: conv_layers._row_conv(x, k, dilation, dilation))
  want = run(lambda x, k: conv_layers._native_conv(x, k, 1, dilation, dilation))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_conv_rejects_even_kernels():
  conv = conv_layers.Conv(4, 4)
  with pytest.raises(ValueError, match="odd kernel"):
    conv.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def test_discriminators_keep_their_parameters():
  assert conv_layers.matmul_convs_default()  # tests run on the CPU backend
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
