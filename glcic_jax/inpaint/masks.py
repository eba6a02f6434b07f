"""Where the holes are: boxes from the command line, mmagic's random box,
and the checks every mask passes.

Masks are float32 [H, W, 1] with 1 = hole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glcic_jax.data import holes

BBox = tuple[int, int, int, int]  # (top, left, height, width) of a hole


def check_hole_coverage(hole: np.ndarray, source: str) -> None:
  """Rejects masks the network cannot use: no hole, or nothing but hole."""
  if not hole.any():
    raise ValueError(f"{source} marks no hole: every pixel is 0 (black)")
  if hole.all():
    raise ValueError(
      f"{source} marks the whole image as hole: nothing is left to complete "
      "it from"
    )


def parse_bbox(spec: str) -> BBox:
  """Parses a `--bbox top,left,height,width` value."""
  parts = spec.replace(" ", "").split(",")
  try:
    if len(parts) != 4:
      raise ValueError
    top, left, height, width = (int(p) for p in parts)
  except ValueError:
    raise ValueError(
      f"bbox {spec!r} is not four integers top,left,height,width"
    ) from None
  return top, left, height, width


def mask_from_bboxes(
  shape: Sequence[int], bboxes: Sequence[BBox]
) -> np.ndarray:
  """A float32 [H, W, 1] mask that is 1 inside any of the (top, left, h, w)."""
  height, width = shape[:2]
  if not bboxes:
    raise ValueError("no bbox given")
  mask = np.zeros((height, width, 1), np.float32)
  for bbox in bboxes:
    top, left, box_h, box_w = bbox
    inside = (
      box_h > 0
      and box_w > 0
      and top >= 0
      and left >= 0
      and top + box_h <= height
      and left + box_w <= width
    )
    if not inside:
      raise ValueError(
        f"bbox (top, left, h, w) = {tuple(bbox)} does not lie inside the "
        f"{height}x{width} image"
      )
    mask[top : top + box_h, left : left + box_w] = 1.0
  check_hole_coverage(mask > 0, f"bboxes {list(bboxes)}")
  return mask


def random_bbox(shape: Sequence[int], rng: np.random.Generator) -> BBox:
  """A hole box drawn as mmagic's `random_bbox` (`data.holes`), with its
  256x256 settings scaled to this image (the same numbers at 256x256).

  The box starts as half the image side, its top-left corner at least
  20/256 of the side from the border; then its top and left edges move in
  by up to (40/256 of the side) // 2 each, the bottom-right corner staying
  put.
  """
  height, width = shape[:2]
  try:
    spec = holes.HoleSpec.scaled_to((height, width))
  except ValueError:
    raise ValueError(
      f"image {height}x{width} is too small for a random box"
    ) from None
  words = rng.integers(0, 2**32, size=len(holes.HOLE_WORDS), dtype=np.int64)
  return tuple(int(v) for v in holes.holes_from_words(words, spec))


def random_bbox_mask(
  shape: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
  """A float32 [H, W, 1] mask with one `random_bbox` hole."""
  return mask_from_bboxes(shape, [random_bbox(shape, rng)])


def check_hole_source(
  mask: str | None, bboxes: Sequence[str] | None, random_hole: bool
) -> None:
  """Exactly one way to say where the holes are; boxes parse."""
  if sum([mask is not None, bool(bboxes), random_hole]) != 1:
    raise ValueError("give exactly one of --mask, --bbox or --random_bbox")
  for spec in bboxes or []:
    parse_bbox(spec)


def fit_to(hole: np.ndarray, shape: Sequence[int], source: str) -> np.ndarray:
  """A [h, w] bool hole fitted to an image of `shape` (H, W): as it is when
  the sizes agree; scaled when only the resolution differs (aspect ratios
  within 2%, as a mask painted on a preview), a pixel being hole if any
  hole pixel covers it; a ValueError naming `source` otherwise."""
  height, width = shape[:2]
  if hole.shape == (height, width):
    return hole
  ratio = (hole.shape[1] / hole.shape[0]) / (width / height)
  if abs(ratio - 1) > 0.02:
    raise ValueError(
      f"{source} is {hole.shape[0]}x{hole.shape[1]} (HxW) and cannot be "
      f"matched to the image's {height}x{width}: the aspect ratios differ"
    )
  from PIL import Image

  grey = Image.fromarray(hole.astype(np.uint8) * 255)
  scaled = grey.resize((width, height), Image.Resampling.BOX)
  return np.asarray(scaled) > 0
