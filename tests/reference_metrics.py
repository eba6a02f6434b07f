"""mmagic's l1 error, PSNR and SSIM per HWC image in NumPy float64: the
reference formulas that `glcic_jax.metrics.batch_metrics` (float32, JAX)
is held to. (mmagic itself casts to float32 before PSNR/SSIM; float64
differs from that by ~1e-5 at most, far below the reported precision.)"""

from __future__ import annotations

import numpy as np

from glcic_jax.metrics import (
  L1_SCALING,
  MAE_EPS,
  SSIM_C1,
  SSIM_C2,
  SSIM_WINDOW,
  gaussian_window_1d,
)


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
  count = hole.sum() * gt.shape[-1] + MAE_EPS
  return float(total / count * L1_SCALING)


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
  if min(gt.shape[:2]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least 11x11, got {gt.shape}")
  window = gaussian_window_1d()
  per_channel = []
  for c in range(gt.shape[-1]):
    x, y = gt[..., c], pred[..., c]
    mu_x, mu_y = _valid_filter(x, window), _valid_filter(y, window)
    var_x = _valid_filter(x * x, window) - mu_x**2
    var_y = _valid_filter(y * y, window) - mu_y**2
    cov = _valid_filter(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
      (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    per_channel.append(ssim_map.mean())
  return float(np.mean(per_channel))
