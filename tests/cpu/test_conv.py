"""The CPU forms of the convolutions compute XLA's convolution with
PyTorch's padding, forward and both gradients, and each layer takes the
form its shapes and per-device batch call for; their rounding error
against float64 stays near native float32's."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glcic_jax import layers
from glcic_jax.cpu import conv as cpu_conv
from tests.test_layers import weighted_sum

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
      return weighted_sum(y), y

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  (_, y_ref), g_ref = run(reference)
  for conv_class in (cpu_conv.Conv, layers.Conv):
    conv = conv_class(7, k, stride, dilation, use_bias)
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
    conv = cpu_conv.Conv(
      n_out,
      k,
      stride,
      dilation,
      dtype=dtype or jnp.float32,
      batch_per_device=-(-batch // devices),
    )
    x = jnp.zeros((batch, side, side, n_in))
    variables = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)
    hlo = jax.jit(conv.apply).lower(variables, x).as_text()
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
  assert cpu_conv._live_taps(2, 5, 2, 1, 2) == ([2, 3], 0, 0, 1)
  assert cpu_conv._live_taps(8, 5, 2, 1, 2) == ([0, 1, 2, 3, 4], 2, 1, 4)
  conv = cpu_conv.Conv(64, 5, 2)
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
      lambda x, k: weighted_sum(conv(x, k)), argnums=(0, 1)
    )(x, kernel)

  got = run(lambda x, k: cpu_conv._row_conv(x, k, dilation, dilation))
  want = run(lambda x, k: layers.conv2d(x, k, 1, dilation))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=2e-4)


# Per layer, Winograd F(4x4, 3x3) in float32 is 1.7-3.1x less accurate than
# XLA's native float32 convolution (docs/performance.md, "Accuracy of the
# CPU forms"): its tile-domain matmuls' rounding, amplified by the output
# transform. Lavin's points would be about 5x; every other form is at most
# native's error times 2.
WINOGRAD_LAYER_BOUND = 3.5


def test_cpu_forms_as_accurate_as_native_float32(tmp_path):
  """`scripts/conv_form_fidelity.py`: each form per layer, and the demo
  generator's weight gradients (median over 9 draws), against float64."""
  out = tmp_path / "fidelity.json"
  proc = subprocess.run(
    [sys.executable, "scripts/conv_form_fidelity.py", f"--json={out}"],
    cwd=pathlib.Path(__file__).resolve().parents[2],
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  result = json.loads(out.read_text())
  for row in result["layers"]:
    bound = 2.0
    if row["layer"].startswith("winograd"):
      bound = WINOGRAD_LAYER_BOUND
    for what in ("y", "dx", "dk"):
      ratio = row[f"form_{what}"] / row[f"native_{what}"]
      assert ratio <= bound, (row["layer"], what, ratio)
  generator = result["generator"]
  assert generator["winograd_in_cpu_forms"]
  assert generator["median"]["cpu"] <= 2.0 * generator["median"]["native"]
