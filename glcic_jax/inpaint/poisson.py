"""Poisson blending: the paper's post-processing of a completion (fast
marching, then Poisson blending), which mmagic leaves out and so do we by
default. Needs OpenCV (`pip install opencv-python-headless`).
"""

from __future__ import annotations

import numpy as np


def _import_cv2():
  try:
    import cv2
  except ImportError as e:
    raise ImportError(
      "Poisson blending needs OpenCV: pip install opencv-python-headless "
      "(or glcic-jax[dev])"
    ) from e
  return cv2


def _extend_outward(image: np.ndarray, known: np.ndarray, steps: int, cv2):
  """Grows the `known` part of `image` by `steps` pixels, each new pixel the
  mean of its already known 8-neighbours; float32 [H, W, C] out."""
  values = image.astype(np.float32) * known[..., None]
  known = known.astype(np.float32)
  for _ in range(steps):
    sums = cv2.boxFilter(
      values, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    counts = cv2.boxFilter(
      known, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    new = (counts > 0) & (known == 0)
    values[new] = sums[new] / counts[new][:, None]
    known[new] = 1.0
  return values


def poisson_blend(
  original: np.ndarray, completed: np.ndarray, mask: np.ndarray
) -> np.ndarray:
  """Poisson-blends each connected hole into its surroundings: the paper's
  post-processing (fast marching, then Poisson blending), which mmagic leaves
  out and so do we by default.

  Inside every hole the result follows the completion's gradients while its
  level is set by the known pixels around the hole, which removes colour
  seams. Pixels outside the hole are returned unchanged.

  Args:
    original: uint8 [H, W, 3] input image (its hole content is ignored).
    completed: uint8 [H, W, 3], e.g. from `complete`.
    mask: [H, W, 1] or [H, W]; non-zero = hole.
  """
  cv2 = _import_cv2()
  hole = np.asarray(mask).reshape(original.shape[:2]) != 0
  if not hole.any():
    return original.astype(np.uint8)
  # How OpenCV's seamlessClone works decides the inputs: it solves over the
  # bounding box of its mask, fixed to the destination on the box border,
  # with the source's gradients inside the mask eroded by 3 pixels and the
  # destination's gradients elsewhere. So: the mask is the hole grown by 3
  # pixels (source gradients cover the hole); the source is the completion
  # smoothly extended over those 3 pixels, and the destination's hole is
  # filled by fast marching (Telea), so that no gradient across the hole's
  # edge carries a seam or the removed content. Reflect padding keeps every
  # box off the image edge.
  grow, pad = 3, 8
  hole_u8 = hole.astype(np.uint8)
  filled = cv2.inpaint(original.astype(np.uint8), hole_u8, 3, cv2.INPAINT_TELEA)
  extended = _extend_outward(completed, hole, grow, cv2)
  extended = np.clip(np.rint(extended), 0, 255).astype(np.uint8)
  widths = ((pad, pad), (pad, pad), (0, 0))
  source = np.pad(extended, widths, mode="reflect")
  blended = np.pad(filled, widths, mode="reflect")
  region = cv2.dilate(
    np.pad(hole_u8, pad), np.ones((3, 3), np.uint8), iterations=grow
  )
  count, labels, stats, _ = cv2.connectedComponentsWithStats(region, 8)
  for label in range(1, count):
    left, top, box_w, box_h = (int(v) for v in stats[label, :4])
    component = np.where(labels == label, 255, 0).astype(np.uint8)
    # OpenCV centres the mask's bounding box on this point; with x + w // 2
    # the box lands back exactly where it came from.
    centre = (left + box_w // 2, top + box_h // 2)
    blended = cv2.seamlessClone(
      source, blended, component, centre, cv2.NORMAL_CLONE
    )
  blended = blended[pad:-pad, pad:-pad]
  return np.where(hole[..., None], blended, original).astype(np.uint8)
