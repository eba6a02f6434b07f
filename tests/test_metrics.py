"""glcic_jax.metrics and the float64 reference formulas it is held to
(tests/reference_metrics.py): hand-computed values and independent oracles.

The oracles are written here, not imported from the code under test:
scikit-image's Gaussian SSIM (same MATLAB recipe, different code) and a
float32 OpenCV pipeline that follows mmagic's own steps.
"""

import cv2
import jax
import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.metrics import structural_similarity

from glcic_jax import metrics
from tests import reference_metrics


def _photo(height: int, width: int, top: int = 0, left: int = 0) -> np.ndarray:
  return data.astronaut()[top : top + height, left : left + width].astype(
    np.float64
  )


def _box_mask(height: int, width: int, box: tuple[int, int, int, int]):
  mask = np.zeros((height, width, 1))
  top, left, h, w = box
  mask[top : top + h, left : left + w] = 1.0
  return mask


def _noisy(gt: np.ndarray, seed: int, std: float = 12.0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return np.clip(gt + rng.normal(0.0, std, gt.shape), 0.0, 255.0)


def test_to_pixels_clamps_without_rounding():
  x = np.array([-3.0, -1.0, 0.0, 0.5, 0.001, 1.0, 2.0])
  expected = [0.0, 0.0, 127.5, 191.25, 127.6275, 255.0, 255.0]
  np.testing.assert_allclose(metrics.to_pixels(x), expected, rtol=1e-12)
  in_jit = jax.jit(metrics.to_pixels)(x.astype(np.float32))
  np.testing.assert_allclose(in_jit, expected, rtol=1e-6)


def test_gaussian_window_matches_opencv():
  np.testing.assert_allclose(
    metrics.gaussian_window_1d(),
    cv2.getGaussianKernel(11, 1.5).ravel(),
    atol=1e-15,
  )


def test_identical_images():
  gt = _photo(40, 50).astype(np.uint8)
  mask = _box_mask(40, 50, (5, 5, 10, 10))
  assert reference_metrics.l1_error(gt, gt, mask) == 0.0
  assert reference_metrics.psnr(gt, gt) == float(
    "inf"
  )  # mmagic returns inf too
  assert reference_metrics.ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
  batch = jax.jit(metrics.batch_metrics)(gt[None], gt[None], mask[None])
  assert float(batch["l1_error"][0]) == 0.0
  assert float(batch["psnr"][0]) == float("inf")
  assert float(batch["ssim"][0]) == pytest.approx(1.0, abs=1e-6)


def test_constant_offset_hand_computed():
  offset = 7.0
  gt = np.clip(_photo(32, 48), offset, 255.0)
  pred = gt - offset
  mask = _box_mask(32, 48, (3, 4, 10, 20))
  assert reference_metrics.psnr(gt, pred) == pytest.approx(
    20 * np.log10(255 / offset)
  )
  # Every hole value is off by `offset` grey levels: 7/255 of the range.
  assert reference_metrics.l1_error(gt, pred, mask) == pytest.approx(
    100 * offset / 255
  )


def test_hole_only_difference():
  height, width, offset = 30, 40, 10.0
  gt = np.clip(_photo(height, width), 0.0, 200.0)
  mask = _box_mask(height, width, (5, 6, 12, 15))
  pred = gt + offset * mask
  hole_fraction = (12 * 15) / (height * width)
  # l1 counts hole pixels only, so it is the full offset...
  assert reference_metrics.l1_error(gt, pred, mask) == pytest.approx(
    100 * offset / 255
  )
  # ...while PSNR averages the squared error over the whole image.
  mse = offset**2 * hole_fraction
  assert reference_metrics.psnr(gt, pred) == pytest.approx(
    20 * np.log10(255 / np.sqrt(mse))
  )
  # An error outside the hole does not count for l1.
  outside = gt + offset * (1 - mask)
  assert reference_metrics.l1_error(gt, outside, mask) == 0.0
  assert reference_metrics.psnr(gt, outside) < 40.0


def test_mask_forms_are_equivalent():
  gt = _photo(20, 24)
  pred = _noisy(gt, seed=1)
  mask = _box_mask(20, 24, (2, 3, 9, 7))
  expected = reference_metrics.l1_error(gt, pred, mask)
  assert reference_metrics.l1_error(gt, pred, mask[..., 0]) == expected
  assert (
    reference_metrics.l1_error(gt, pred, (mask * 255).astype(np.uint8))
    == expected
  )
  # Independent hand formula: mean |diff| over hole entries, in percent.
  hole = np.broadcast_to(mask, gt.shape) > 0
  manual = np.abs(gt - pred)[hole].mean() / 255 * 100
  assert expected == pytest.approx(manual, rel=1e-12)


@pytest.mark.parametrize("shape", [(64, 64), (37, 53)])
def test_ssim_matches_scikit_image(shape):
  gt = _photo(*shape, top=120, left=180)
  pred = _noisy(gt, seed=2)
  oracle = structural_similarity(
    gt,
    pred,
    gaussian_weights=True,
    sigma=1.5,
    use_sample_covariance=False,
    data_range=255,
    channel_axis=-1,
  )
  assert reference_metrics.ssim(gt, pred) == pytest.approx(oracle, abs=1e-10)


def _mmagic_style_ssim_float32(gt: np.ndarray, pred: np.ndarray) -> float:
  """mmagic's steps: float32 images, cv2.filter2D, crop 5 pixels per side."""
  window = np.outer(
    cv2.getGaussianKernel(11, 1.5), cv2.getGaussianKernel(11, 1.5)
  )
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  values = []
  for c in range(gt.shape[-1]):
    x = gt[..., c].astype(np.float32)
    y = pred[..., c].astype(np.float32)

    def blur(image):
      return cv2.filter2D(image, -1, window)[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    vx, vy, cxy = (
      blur(x * x) - mx**2,
      blur(y * y) - my**2,
      blur(x * y) - mx * my,
    )
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / (
      (mx**2 + my**2 + c1) * (vx + vy + c2)
    )
    values.append(ssim_map.mean())
  return float(np.mean(values))


def test_ssim_matches_mmagic_float32_pipeline():
  gt = _photo(48, 60, top=60, left=200)
  pred = _noisy(gt, seed=3, std=20.0)
  assert reference_metrics.ssim(gt, pred) == pytest.approx(
    _mmagic_style_ssim_float32(gt, pred), abs=1e-5
  )


def test_ssim_by_explicit_window_sum():
  """A 2-D correlation with scipy, then the 5-pixel border cropped."""
  gt = _photo(25, 31, top=200, left=100)
  pred = _noisy(gt, seed=4)
  window = np.outer(metrics.gaussian_window_1d(), metrics.gaussian_window_1d())
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  values = []
  for c in range(3):
    x, y = gt[..., c], pred[..., c]

    def blur(image):
      return ndimage.correlate(image, window, mode="constant")[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    num = (2 * mx * my + c1) * (2 * (blur(x * y) - mx * my) + c2)
    den = (mx**2 + my**2 + c1) * (
      blur(x * x) - mx**2 + blur(y * y) - my**2 + c2
    )
    values.append((num / den).mean())
  assert reference_metrics.ssim(gt, pred) == pytest.approx(
    np.mean(values), abs=1e-12
  )


@pytest.mark.parametrize("shape", [(64, 64), (37, 53)])
def test_batch_metrics_match_float64(shape):
  height, width = shape
  gt = np.stack([_photo(*shape), _photo(*shape, top=150, left=220)])
  mask = np.stack(
    [
      _box_mask(height, width, (4, 5, height // 2, width // 3)),
      _box_mask(height, width, (10, 2, height // 3, width // 2)),
    ]
  )
  noisy = np.stack([_noisy(gt[0], seed=5), _noisy(gt[1], seed=6, std=30)])
  composited = gt * (1 - mask) + noisy * mask
  batch_fn = jax.jit(metrics.batch_metrics)
  for pred in (noisy, composited):
    got = batch_fn(gt, pred, mask[..., 0])  # [B, H, W] mask form
    assert all(v.shape == (2,) for v in got.values())
    for i in range(2):
      assert float(got["l1_error"][i]) == pytest.approx(
        reference_metrics.l1_error(gt[i], pred[i], mask[i]), abs=1e-4
      )
      assert float(got["psnr"][i]) == pytest.approx(
        reference_metrics.psnr(gt[i], pred[i]), abs=1e-3
      )
      assert float(got["ssim"][i]) == pytest.approx(
        reference_metrics.ssim(gt[i], pred[i]), abs=1e-4
      )


def test_accumulator_ignores_padded_examples():
  accumulator = metrics.MetricAccumulator()
  accumulator.update(
    {"psnr": np.array([20.0, 30.0]), "ssim": np.array([0.5, 0.7])},
    valid=np.array([1, 1]),
  )
  # The padded tail of the last batch holds garbage, inf and nan included.
  accumulator.update(
    {
      "psnr": np.array([40.0, np.inf, np.nan]),
      "ssim": np.array([0.9, -5.0, np.nan]),
    },
    valid=np.array([1.0, 0.0, 0.0]),
  )
  result = accumulator.result()
  assert result["psnr"] == pytest.approx(30.0)
  assert result["ssim"] == pytest.approx(0.7)
  assert accumulator.count == 3


def test_accumulator_takes_batch_metrics_output():
  gt = np.stack([_photo(16, 16), _photo(16, 16, top=50)])
  pred = np.stack([_noisy(gt[0], seed=7), gt[1]])  # second one is padding
  mask = np.ones((2, 16, 16, 1))
  accumulator = metrics.MetricAccumulator()
  accumulator.update(metrics.batch_metrics(gt, pred, mask), np.array([1, 0]))
  assert np.isfinite(accumulator.result()["psnr"])  # the padded inf is gone
  assert accumulator.result()["psnr"] == pytest.approx(
    reference_metrics.psnr(gt[0], pred[0]), abs=1e-3
  )


def test_invalid_inputs_raise():
  gt = _photo(20, 20)
  with pytest.raises(ValueError, match="shape"):
    reference_metrics.psnr(gt, gt[:10])
  with pytest.raises(ValueError, match="mask shape"):
    reference_metrics.l1_error(gt, gt, np.ones((10, 20, 1)))
  with pytest.raises(ValueError, match="11x11"):
    reference_metrics.ssim(gt[:8], gt[:8])
  with pytest.raises(ValueError, match="no valid"):
    metrics.MetricAccumulator().result()
