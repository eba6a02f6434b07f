"""Inpainting metrics exactly as mmagic reports them: l1 error, PSNR, SSIM.

mmagic's Global&Local configs evaluate with `MAE(mask_key='mask',
scaling=100)`, `PSNR()` and `SSIM()` at their defaults: no border crop, no
conversion to the Y channel, all three colour channels. Each metric is taken
per image on the composited output converted to [0, 255] floats without
rounding (`to_pixels`), and the per-image values are averaged over the test
set (`MetricAccumulator`).

Two implementations of the same formulas live here:

* `l1_error`, `psnr`, `ssim`: one HWC image, NumPy float64. The reference
  numbers. (mmagic itself casts to float32 before PSNR/SSIM; float64 differs
  from that by ~1e-5 at most, far below the reported precision.)
* `batch_metrics`: NHWC batches in float32 inside JAX, for jitted evaluation
  loops. Measured against the float64 versions (tests/test_metrics.py):
  l1 error within 1e-4, PSNR within 1e-3 dB, SSIM within 1e-4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

# SSIM constants of Wang et al. 2004 for 8-bit data (MATLAB ssim_index.m).
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
# mmagic's MAE guards the division with this, so an empty mask gives 0.
_MAE_EPS = 1e-12
# MAE(scaling=100): the reported "l1 error" is the mean |error| in percent of
# the pixel range.
_L1_SCALING = 100.0


def to_pixels(x: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
  """Maps network outputs in [-1, 1] to [0, 255] floats, as mmagic does.

  mmagic's `DataPreprocessor.destruct` de-normalises and clamps but does not
  round, so metrics see fractional pixel values; rounding here would move
  PSNR by ~0.01 dB. Works on NumPy and JAX arrays (also inside `jit`).
  """
  return (x * 127.5 + 127.5).clip(0.0, 255.0)


def gaussian_window_1d(
  size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA
) -> np.ndarray:
  """The normalised 1-D Gaussian `cv2.getGaussianKernel(size, sigma)` returns.

  Computed here so that the metrics need no OpenCV; the 2-D SSIM window is
  its outer product with itself, which makes the filtering separable.
  """
  offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-(offsets**2) / (2.0 * sigma**2))
  return window / window.sum()


def _hole_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """A float64 [H, W, 1] mask with every non-zero value set to 1 (mmagic)."""
  mask = np.asarray(mask)
  if mask.ndim == 2:
    mask = mask[..., None]
  if mask.shape != (*shape[:2], 1):
    raise ValueError(
      f"mask shape {mask.shape} does not fit image shape {shape}"
    )
  return (mask != 0).astype(np.float64)


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
  gt = np.asarray(gt, np.float64)
  pred = np.asarray(pred, np.float64)
  if gt.shape != pred.shape or gt.ndim != 3:
    raise ValueError(
      f"expected two HWC images of one shape, got {gt.shape} and {pred.shape}"
    )
  return gt, pred


def l1_error(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
  """Mean absolute error over the hole, in percent of 255 (mmagic's MAE x100).

  Sum over hole pixels and channels of |gt - pred| / 255, divided by
  (hole pixels * channels + 1e-12), times 100. Only the hole counts: the
  composited output equals the ground truth elsewhere anyway.

  Args:
    gt: [H, W, C] ground truth in [0, 255].
    pred: [H, W, C] prediction in [0, 255].
    mask: [H, W, 1] or [H, W]; non-zero = hole.
  """
  gt, pred = _check_pair(gt, pred)
  hole = _hole_mask(mask, gt.shape)
  total = np.sum(np.abs(gt / 255.0 - pred / 255.0) * hole)
  count = hole.sum() * gt.shape[-1] + _MAE_EPS
  return float(total / count * _L1_SCALING)


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
  """PSNR in dB over the whole image and all channels, peak 255.

  Identical images give `inf`, as in mmagic (which then averages it into the
  dataset mean unchanged).
  """
  gt, pred = _check_pair(gt, pred)
  mse = np.mean((gt - pred) ** 2)
  if mse == 0:
    return float("inf")
  return float(20.0 * np.log10(255.0 / np.sqrt(mse)))


def _valid_filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Separable 'valid' correlation of a 2-D image with `outer(window, window)`.

  mmagic filters with border padding and then drops 5 pixels per side, which
  leaves exactly the positions where the window fits inside the image.
  """
  k = window.size
  rows = sum(
    w * image[i : image.shape[0] - k + 1 + i] for i, w in enumerate(window)
  )
  return sum(
    w * rows[:, i : rows.shape[1] - k + 1 + i] for i, w in enumerate(window)
  )


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
  """MATLAB-equivalent SSIM, per channel, averaged over channels.

  11x11 Gaussian window (sigma 1.5), statistics only where the window fits
  inside the image (the 5-pixel border dropped), C1 = (0.01*255)^2,
  C2 = (0.03*255)^2, mean over the SSIM map.
  """
  gt, pred = _check_pair(gt, pred)
  if min(gt.shape[:2]) < _SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least 11x11, got {gt.shape}")
  window = gaussian_window_1d()
  per_channel = []
  for c in range(gt.shape[-1]):
    x, y = gt[..., c], pred[..., c]
    mu_x, mu_y = _valid_filter(x, window), _valid_filter(y, window)
    var_x = _valid_filter(x * x, window) - mu_x**2
    var_y = _valid_filter(y * y, window) - mu_y**2
    cov = _valid_filter(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
      (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    per_channel.append(ssim_map.mean())
  return float(np.mean(per_channel))


def _depthwise_valid_blur(x: jax.Array, window: jax.Array) -> jax.Array:
  """Valid Gaussian filtering of every channel of NHWC `x`, rows then columns.

  One depthwise convolution per direction (feature_group_count = channels).
  HIGHEST precision because accelerators otherwise run float32 convolutions
  in bf16/tf32, which would cost SSIM its fourth decimal.
  """
  channels = x.shape[-1]
  k = window.shape[0]
  for kernel_shape in ((k, 1, 1, channels), (1, k, 1, channels)):
    kernel = jnp.broadcast_to(
      window.reshape(kernel_shape[:2] + (1, 1)), kernel_shape
    )
    x = jax.lax.conv_general_dilated(
      x,
      kernel.astype(x.dtype),
      window_strides=(1, 1),
      padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=channels,
      precision=jax.lax.Precision.HIGHEST,
    )
  return x


def _batch_ssim(gt: jax.Array, pred: jax.Array) -> jax.Array:
  """Per-image SSIM of NHWC batches: the map averaged over space and channels.

  Both images are shifted by the ground truth's per-channel mean before the
  second moments are filtered. Variances and covariances do not change under
  a constant shift, but E[x^2] - E[x]^2 then cancels on numbers ~60^2 rather
  than ~255^2, which is what keeps float32 within 1e-4 of float64.
  """
  shift = jnp.mean(gt, axis=(1, 2), keepdims=True)
  x, y = gt - shift, pred - shift
  window = jnp.asarray(gaussian_window_1d(), jnp.float32)
  stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
  mu_x, mu_y, ex2, ey2, exy = jnp.split(
    _depthwise_valid_blur(stacked, window), 5, axis=-1
  )
  var_x = ex2 - mu_x**2
  var_y = ey2 - mu_y**2
  cov = exy - mu_x * mu_y
  mu_x, mu_y = mu_x + shift, mu_y + shift
  ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
    (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
  )
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def batch_metrics(
  gt: jax.Array, pred: jax.Array, mask: jax.Array
) -> dict[str, jax.Array]:
  """Per-image l1 error, PSNR and SSIM of a batch, in float32, jittable.

  Same formulas as `l1_error`, `psnr` and `ssim` (mean over channels of the
  per-channel SSIM equals the mean of the stacked map, as every channel's map
  has the same size).

  Args:
    gt: [B, H, W, C] ground truth in [0, 255].
    pred: [B, H, W, C] prediction in [0, 255] (e.g. `to_pixels(fake_img)`).
    mask: [B, H, W, 1] or [B, H, W]; non-zero = hole.

  Returns:
    {"l1_error": [B], "psnr": [B], "ssim": [B]}; PSNR is inf where an image
    is reproduced exactly.
  """
  gt = jnp.asarray(gt, jnp.float32)
  pred = jnp.asarray(pred, jnp.float32)
  if min(gt.shape[1:3]) < _SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least 11x11, got {gt.shape}")
  mask = jnp.asarray(mask)
  if mask.ndim == 3:
    mask = mask[..., None]
  hole = (mask != 0).astype(jnp.float32)
  abs_error = jnp.abs(gt / 255.0 - pred / 255.0) * hole
  hole_values = jnp.sum(hole, axis=(1, 2, 3)) * gt.shape[-1]
  l1 = jnp.sum(abs_error, axis=(1, 2, 3)) / (hole_values + _MAE_EPS)
  mse = jnp.mean(jnp.square(gt - pred), axis=(1, 2, 3))
  return {
    "l1_error": l1 * _L1_SCALING,
    "psnr": 20.0 * jnp.log10(255.0 / jnp.sqrt(mse)),
    "ssim": _batch_ssim(gt, pred),
  }


@dataclasses.dataclass
class MetricAccumulator:
  """Averages per-image metrics over a dataset, skipping padded examples.

  Evaluation pads the last global batch to a fixed shape; `valid` (1 = real
  example, 0 = padding) keeps the padding out of the mean. Sums are kept on
  the host in float64, so 36,500 Places365 images lose nothing to rounding.
  mmagic's mean is over images, so this is too.
  """

  totals: dict[str, float] = dataclasses.field(default_factory=dict)
  count: float = 0.0

  def update(
    self,
    per_image: Mapping[str, np.ndarray | jax.Array],
    valid: np.ndarray | jax.Array | None = None,
  ) -> None:
    """Adds one batch of per-image values ([B] each), weighted by `valid`."""
    arrays = {k: np.asarray(v, np.float64) for k, v in per_image.items()}
    batch = next(iter(arrays.values())).shape[0] if arrays else 0
    weight = np.ones(batch) if valid is None else np.asarray(valid, np.float64)
    keep = weight != 0
    for name, values in arrays.items():
      if values.shape != weight.shape:
        raise ValueError(
          f"{name} has shape {values.shape}, valid has {weight.shape}"
        )
      # np.where, not values * weight: a padded image may hold inf or nan.
      weighted = np.where(keep, values, 0.0) * weight
      self.totals[name] = self.totals.get(name, 0.0) + float(weighted.sum())
    self.count += float(weight[keep].sum())

  def result(self) -> dict[str, float]:
    """The mean of each metric over all valid images seen so far."""
    if self.count == 0:
      raise ValueError("no valid examples were accumulated")
    return {name: total / self.count for name, total in self.totals.items()}
