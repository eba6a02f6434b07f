"""The completion engine behind glcic-inpaint, glcic-serve and notebooks:
photos of any size, completed at the scale the model was trained at.

A Global&Local generator trained on S x S crops knows holes in S x S
inputs: its dilated convolutions' outer taps only saw padding beyond that,
so a model trained at 64 px paints noise into a 512 px input. Strategies,
as IOPaint offers them:

- `crop` (the default for images larger than S): each connected hole
  region is completed in a window around it (twice the region's side, as
  training holes are at most half the crop), scaled down to S when larger;
  only the hole's pixels are pasted back. Memory and time follow the
  holes, not the photo: a 24 MP photo with a small hole is one S x S call.
- `resize`: the whole image scaled to fit `resize_limit` (default S),
  completed, scaled back; again only hole pixels change. For holes that
  cover much of a photo.
- `original`: the image as it is (padded to a shape bucket). Exact for
  images near S; for large ones memory grows with the pixels: the engine
  estimates it first and refuses, naming the strategy that fits, rather
  than failing in the backend.

Inputs are padded (by reflection) to a few bucket sizes, so a stream of
photos of random sizes compiles a handful of programs. Outside the hole
every output pixel is the input's, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image

from glcic_jax.inpaint import compositing

STRATEGIES = ("auto", "crop", "resize", "original")
# `auto` completes images up to this many times S per side as they are.
_AUTO_ORIGINAL_FACTOR = 1.5


class OutOfMemoryEstimate(MemoryError):
  """A strategy would need more memory than there is."""


def bucket_side(side: int, trained: int = 256) -> int:
  """The padded side for `side`: the trained side itself, or 64 or 96 times
  a power of two (at most 50% padding, two programs per octave), multiples
  of 1024 beyond 8192."""
  if side > 8192:
    return -(-side // 1024) * 1024
  sides = sorted({trained, *(b * 2**p for p in range(8) for b in (64, 96))})
  return next(s for s in sides if s >= side)


def batch_bucket(count: int) -> int:
  """Batches are padded to powers of two."""
  return 1 << max(0, math.ceil(math.log2(max(count, 1))))


@dataclasses.dataclass
class Report:
  """How one image was completed."""

  strategy: str
  calls: int  # generator calls
  network_sides: list[tuple[int, int]]  # the padded network inputs


def available_memory() -> int:
  """Bytes this process may still allocate (MemAvailable on Linux)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


class Engine:
  """Completes uint8 RGB photos of any size with a `Completer`."""

  def __init__(self, completer, *, memory_limit: int | None = None):
    self.completer = completer
    self.trained_size = int(completer.config.image_size)
    self.memory_limit = memory_limit
    self._bytes_per_pixel: float | None = None

  # -- public -----------------------------------------------------------

  def complete(
    self,
    image: np.ndarray,
    hole: np.ndarray,
    *,
    strategy: str = "auto",
    size: int | None = None,
    resize_limit: int | None = None,
  ) -> tuple[np.ndarray, Report]:
    """(completed uint8 [H, W, 3], report) of a uint8 [H, W, 3] image and
    its hole ([H, W] or [H, W, 1], non-zero = hole). `size` is the network
    side windows are scaled to (default: the trained size; another one is
    allowed and warned about)."""
    image = np.ascontiguousarray(image, np.uint8)
    hole = np.asarray(hole).reshape(image.shape[:2]) != 0
    if strategy not in STRATEGIES:
      raise ValueError(
        f"strategy must be one of {STRATEGIES}, not {strategy!r}"
      )
    size = size or self.trained_size
    if size % 4:
      raise ValueError(f"size {size} must be a multiple of 4")
    if size != self.trained_size:
      logging.warning(
        "Completing at %d px; the model was trained at %d px and may paint "
        "noise at other scales.",
        size,
        self.trained_size,
      )
    if strategy == "auto":
      small = max(image.shape[:2]) <= _AUTO_ORIGINAL_FACTOR * size
      strategy = "original" if small else "crop"
    if not hole.any():
      return image.copy(), Report(strategy, 0, [])
    if strategy == "crop":
      return self._crop(image, hole, size)
    if strategy == "resize":
      return self._resize(image, hole, resize_limit or size)
    return self._original(image, hole, size)

  def estimate_bytes(self, height: int, width: int) -> int:
    """Device memory one generator call at this (bucketed) size takes,
    scaled from the compiled program's own figure at 256 x 256."""
    if self._bytes_per_pixel is None:
      self._bytes_per_pixel = self._measure_bytes_per_pixel()
    pixels = self._bucket(height) * self._bucket(width)
    return int(self._bytes_per_pixel * pixels)

  # -- strategies -------------------------------------------------------

  def _original(self, image, hole, size):
    height, width = image.shape[:2]
    if max(height, width) > _AUTO_ORIGINAL_FACTOR * size:
      logging.warning(
        "Completing %dx%d px as it is; the model was trained at %d px "
        "(--strategy=crop completes at that scale).",
        height,
        width,
        size,
      )
    self._check_memory(height, width, "original")
    out = self._run([image], [hole])[0]
    return (
      np.where(hole[..., None], out, image),
      Report("original", 1, [(self._bucket(height), self._bucket(width))]),
    )

  def _resize(self, image, hole, limit):
    height, width = image.shape[:2]
    factor = min(1.0, limit / max(height, width))
    small_h, small_w = (max(4, round(s * factor)) for s in (height, width))
    self._check_memory(small_h, small_w, "resize")
    small = _resized(image, small_w, small_h)
    small_hole = _resized_hole(hole, small_w, small_h)
    out = self._run([small], [small_hole])[0]
    big = _resized(out, width, height)
    return (
      np.where(hole[..., None], big, image),
      Report("resize", 1, [(self._bucket(small_h), self._bucket(small_w))]),
    )

  def _crop(self, image, hole, size):
    windows = hole_windows(hole, size)
    crops, crop_holes, placed = [], [], []
    for top, left, bottom, right in windows:
      h, w = bottom - top, right - left
      factor = min(1.0, size / max(h, w))
      sh, sw = (max(4, round(s * factor)) for s in (h, w))
      window_hole = hole[top:bottom, left:right]
      crops.append(_resized(image[top:bottom, left:right], sw, sh))
      crop_holes.append(_resized_hole(window_hole, sw, sh))
      placed.append((top, left, bottom, right))
    outs = self._run(crops, crop_holes)
    result = image.copy()
    for (top, left, bottom, right), out in zip(placed, outs):
      big = _resized(out, right - left, bottom - top)
      region = result[top:bottom, left:right]
      window_hole = hole[top:bottom, left:right]
      region[window_hole] = big[window_hole]
    sides = sorted(
      {(self._bucket(c.shape[0]), self._bucket(c.shape[1])) for c in crops}
    )
    return result, Report("crop", len(sides), sides)

  # -- the network ------------------------------------------------------

  def _bucket(self, side: int) -> int:
    return bucket_side(side, self.trained_size)

  def _run(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]):
    """Completes each image (uint8, any sizes), grouped by bucket shape and
    padded to it; returns uint8 images of the inputs' sizes."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
      key = (self._bucket(image.shape[0]), self._bucket(image.shape[1]))
      groups.setdefault(key, []).append(i)
    outs: list[np.ndarray | None] = [None] * len(images)
    for (bh, bw), members in groups.items():
      count = batch_bucket(len(members))
      batch = np.zeros((count, bh, bw, 3), np.uint8)
      masks = np.zeros((count, bh, bw, 1), np.float32)
      for slot, i in enumerate(members):
        batch[slot] = _reflect_pad(images[i], bh, bw)
        masks[slot, ..., 0] = _reflect_pad(holes[i].astype(np.float32), bh, bw)
      done = compositing.complete_batch(self.completer.apply, batch, masks)
      for slot, i in enumerate(members):
        h, w = images[i].shape[:2]
        outs[i] = done[slot, :h, :w]
    return outs

  def _check_memory(self, height: int, width: int, strategy: str) -> None:
    if height * width <= 4 * 2**20:  # small enough never to matter
      return
    need = self.estimate_bytes(height, width)
    limit = self.memory_limit or int(0.8 * available_memory())
    if need > limit:
      raise OutOfMemoryEstimate(
        f"--strategy={strategy} at {height}x{width} px needs about "
        f"{need / 2**30:.1f} GiB (estimated), more than the "
        f"{limit / 2**30:.1f} GiB available; --strategy=crop completes "
        "each hole in a window at the model's scale and fits."
      )

  def _measure_bytes_per_pixel(self) -> float:
    import jax
    import jax.numpy as jnp

    side = 256
    image = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, side, side, 1), jnp.float32)
    compiled = jax.jit(self.completer.apply).lower(image, mask).compile()
    memory = compiled.memory_analysis()
    total = (
      memory.temp_size_in_bytes
      + memory.argument_size_in_bytes
      + memory.output_size_in_bytes
    )
    return total / side**2


def hole_windows(
  hole: np.ndarray, size: int
) -> list[tuple[int, int, int, int]]:
  """(top, left, bottom, right) windows, one per group of nearby hole
  regions: each at least `size` square (or the image, if smaller) and at
  least twice its holes' extent, centred on them, inside the image;
  windows that would overlap are merged."""
  from skimage import measure

  height, width = hole.shape
  boxes = [
    tuple(r.bbox)
    for r in measure.regionprops(measure.label(hole, connectivity=2))
  ]
  windows = [_window(box, size, height, width) for box in boxes]
  merged = True
  while merged:
    merged = False
    for i in range(len(windows)):
      for j in range(i + 1, len(windows)):
        if _overlap(windows[i], windows[j]):
          union = _union(boxes[i], boxes[j])
          boxes = [b for k, b in enumerate(boxes) if k not in (i, j)] + [union]
          windows = [_window(b, size, height, width) for b in boxes]
          merged = True
          break
      if merged:
        break
  return sorted(windows)


def _window(box, size, height, width):
  top, left, bottom, right = box
  side = max(size, 2 * max(bottom - top, right - left))
  side_h, side_w = min(side, height), min(side, width)
  centre_y, centre_x = (top + bottom) // 2, (left + right) // 2
  y0 = min(max(0, centre_y - side_h // 2), height - side_h)
  x0 = min(max(0, centre_x - side_w // 2), width - side_w)
  return (y0, x0, y0 + side_h, x0 + side_w)


def _overlap(a, b) -> bool:
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a, b):
  return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(
    Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
  )


def _resized_hole(hole: np.ndarray, width: int, height: int) -> np.ndarray:
  """A scaled hole keeps every pixel any hole pixel touches (a thin stroke
  survives downscaling)."""
  if hole.shape == (height, width):
    return hole
  grey = Image.fromarray(hole.astype(np.uint8) * 255)
  return np.asarray(grey.resize((width, height), Image.Resampling.BOX)) > 0


def _reflect_pad(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """Pads [H, W(, C)] at the bottom/right to (height, width) by mirroring
  (numpy repeats the mirror where the pad is wider than the image): a
  mirrored border continues the photo where a constant one would be an
  edge the generator carries inwards."""
  pad_h, pad_w = height - x.shape[0], width - x.shape[1]
  if pad_h <= 0 and pad_w <= 0:
    return x
  widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (x.ndim - 2)
  return np.pad(x, widths, mode="symmetric")
