"""Inpainting metrics exactly as mmagic reports them: l1 error, PSNR, SSIM.

mmagic's Global&Local configs evaluate with `MAE(mask_key='mask',
scaling=100)`, `PSNR()` and `SSIM()` at their defaults: no border crop, no
conversion to the Y channel, all three colour channels. Each metric is taken
per image on the composited output converted to [0, 255] floats without
rounding (`to_pixels`), and the per-image values are averaged over the test
set (`MetricAccumulator`).

`batch_metrics` computes them on NHWC batches in float32 inside JAX, for
jitted evaluation loops; tests/reference_metrics.py holds the same formulas
per image in NumPy float64, which the tests hold it to (l1 error within
1e-4, PSNR within 1e-3 dB, SSIM within 1e-4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

# SSIM constants of Wang et al. 2004 for 8-bit data (MATLAB ssim_index.m).
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# mmagic's MAE guards the division with this, so an empty mask gives 0.
MAE_EPS = 1e-12
# MAE(scaling=100): the reported "l1 error" is the mean |error| in percent of
# the pixel range.
L1_SCALING = 100.0


def to_pixels(x: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
  """Maps network outputs in [-1, 1] to [0, 255] floats, as mmagic does.

  mmagic's `DataPreprocessor.destruct` de-normalises and clamps but does not
  round, so metrics see fractional pixel values; rounding here would move
  PSNR by ~0.01 dB. Works on NumPy and JAX arrays (also inside `jit`).
  """
  return (x * 127.5 + 127.5).clip(0.0, 255.0)


def gaussian_window_1d(
  size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> np.ndarray:
  """The normalised 1-D Gaussian `cv2.getGaussianKernel(size, sigma)` returns.

  Computed here so that the metrics need no OpenCV; the 2-D SSIM window is
  its outer product with itself, which makes the filtering separable.
  """
  offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-(offsets**2) / (2.0 * sigma**2))
  return window / window.sum()


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
  ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
    (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
  )
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def batch_metrics(
  gt: jax.Array, pred: jax.Array, mask: jax.Array
) -> dict[str, jax.Array]:
  """Per-image l1 error, PSNR and SSIM of a batch, in float32, jittable.

  The mean over channels of the per-channel SSIM equals the mean of the
  stacked map, as every channel's map has the same size.

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
  if min(gt.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least 11x11, got {gt.shape}")
  mask = jnp.asarray(mask)
  if mask.ndim == 3:
    mask = mask[..., None]
  hole = (mask != 0).astype(jnp.float32)
  abs_error = jnp.abs(gt / 255.0 - pred / 255.0) * hole
  hole_values = jnp.sum(hole, axis=(1, 2, 3)) * gt.shape[-1]
  l1 = jnp.sum(abs_error, axis=(1, 2, 3)) / (hole_values + MAE_EPS)
  mse = jnp.mean(jnp.square(gt - pred), axis=(1, 2, 3))
  return {
    "l1_error": l1 * L1_SCALING,
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
