"""Completing one user image: the model-independent core of `glcic-inpaint`.

Reading and checking the image and the hole mask, building the network input
exactly as training does, padding to a size the generator accepts, pasting
the prediction into the hole only, optional Poisson blending (the paper's
post-processing, which mmagic leaves out), and writing the results. The
network is any `apply_fn` mapping a [1, H, W, 4] batch to [1, H, W, 3] in
[-1, 1], so everything here is testable without a checkpoint.

Conventions: images are uint8 [H, W, 3] RGB; masks are float32 [H, W, 1]
with 1 = hole. (mmagic trains on BGR; a generator imported from mmagic is
expected to have its colour channels permuted to RGB by the importer.)
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

from glcic_jax import metrics

ApplyFn = Callable[[jax.Array], jax.Array]
BBox = tuple[int, int, int, int]  # (top, left, height, width) of a hole
PathLike = str | pathlib.Path

# The generator downsamples twice by 2 and upsamples back, so its input
# sides must be multiples of 4 (mmagic 1.x fails on other sizes).
NETWORK_MULTIPLE = 4
# mmagic's bbox sampler settings for 256x256 images (max_bbox_shape,
# max_bbox_delta, min_margin); `random_bbox` scales them to the image.
_REFERENCE_SIDE = 256
_REFERENCE_MAX_BOX = 128
_REFERENCE_MAX_DELTA = 40
_REFERENCE_MARGIN = 20


def _open_image(path: PathLike) -> Image.Image:
  """Opens and fully decodes an image, upright, or says which file failed.

  PIL decodes lazily, so a truncated file would otherwise fail later with a
  message that does not name it. EXIF orientation is applied, so that image
  and mask line up as an image viewer shows them.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"no such image file: {path}")
  try:
    with Image.open(path) as image:
      image.load()
      return ImageOps.exif_transpose(image)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"cannot read image file {path}: {e}") from e


def _is_16_bit_grey(image: Image.Image) -> bool:
  return image.mode.startswith("I")


def read_image(path: PathLike) -> np.ndarray:
  """Reads any image PIL can decode as uint8 [H, W, 3] RGB.

  Grey images are replicated to three channels; an alpha channel is dropped
  (not composited), as OpenCV's IMREAD_COLOR, which mmagic loads with, does.
  16-bit grey images are scaled to 8 bits.
  """
  image = _open_image(path)
  if _is_16_bit_grey(image):
    grey = np.asarray(image, np.float64) / 257.0
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
  return np.asarray(image.convert("RGB"), np.uint8)


def _check_hole_coverage(hole: np.ndarray, source: str) -> None:
  """Rejects masks the network cannot use: no hole, or nothing but hole."""
  if not hole.any():
    raise ValueError(f"{source} marks no hole: every pixel is 0 (black)")
  if hole.all():
    raise ValueError(
      f"{source} marks the whole image as hole: nothing is left to complete "
      "it from"
    )


def read_mask(path: PathLike, shape: Sequence[int]) -> np.ndarray:
  """Reads a hole mask as float32 [H, W, 1]; any non-zero pixel is hole.

  Accepts 1-channel, RGB and RGBA images. With alpha, a pixel is hole only
  if it is both coloured and not fully transparent, so a mask painted in
  white on a transparent layer works whatever colour the transparent pixels
  store. Non-zero is mmagic's rule too (LoadMask, which looks at the first
  BGR channel only; here any colour channel counts), and it keeps the
  anti-aliased edges of painted strokes in the hole, where they are redrawn.

  Args:
    path: the mask image file.
    shape: the image's shape; its first two entries must match the mask's.
  """
  image = _open_image(path)
  if _is_16_bit_grey(image):
    hole = np.asarray(image) != 0
  elif "A" in image.getbands() or "transparency" in image.info:
    rgba = np.asarray(image.convert("RGBA"))
    hole = (rgba[..., :3].max(axis=-1) > 0) & (rgba[..., 3] > 0)
  else:
    hole = np.asarray(image.convert("RGB")).max(axis=-1) > 0
  height, width = shape[:2]
  if hole.shape != (height, width):
    raise ValueError(
      f"mask {path} is {hole.shape[0]}x{hole.shape[1]} (HxW) but the image "
      f"is {height}x{width}"
    )
  _check_hole_coverage(hole, f"mask {path}")
  return hole[..., None].astype(np.float32)


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
  _check_hole_coverage(mask > 0, f"bboxes {list(bboxes)}")
  return mask


def random_bbox(shape: Sequence[int], rng: np.random.Generator) -> BBox:
  """A hole box drawn as mmagic's `random_bbox`, with its 256x256 settings
  scaled to this image (identical draws at 256x256).

  The box starts as half the image side, its top-left corner at least
  20/256 of the side from the border; then its top and left edges move in
  by up to (40/256 of the side) // 2 each, the bottom-right corner staying
  put. Upper ends of the draws are exclusive, as numpy's randint in mmagic.
  """
  height, width = shape[:2]

  def scaled(reference: int, side: int) -> int:
    return side * reference // _REFERENCE_SIDE

  max_h, max_w = (scaled(_REFERENCE_MAX_BOX, s) for s in (height, width))
  delta_h, delta_w = (scaled(_REFERENCE_MAX_DELTA, s) for s in (height, width))
  margin_h, margin_w = (scaled(_REFERENCE_MARGIN, s) for s in (height, width))
  max_top, max_left = height - margin_h - max_h, width - margin_w - max_w
  if max_top <= margin_h or max_left <= margin_w or min(max_h, max_w) < 1:
    raise ValueError(f"image {height}x{width} is too small for a random box")
  top = int(rng.integers(margin_h, max_top))
  left = int(rng.integers(margin_w, max_left))
  shrink_h = int(rng.integers(0, delta_h // 2 + 1))
  shrink_w = int(rng.integers(0, delta_w // 2 + 1))
  return top + shrink_h, left + shrink_w, max_h - shrink_h, max_w - shrink_w


def random_bbox_mask(
  shape: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
  """A float32 [H, W, 1] mask with one `random_bbox` hole."""
  return mask_from_bboxes(shape, [random_bbox(shape, rng)])


def pad_to_multiple(
  x: np.ndarray, multiple: int = NETWORK_MULTIPLE
) -> np.ndarray:
  """Pads the H and W axes of [..., H, W, C] at the bottom/right by reflection.

  Reflection rather than zeros: a constant border is an edge that is not in
  the photo, and the generator's dilated convolutions carry what they see
  near the border deep into the image; a mirrored border continues the
  local content instead (mmediting 0.x reflect-padded too). Bottom/right
  only, so cropping back is `x[..., :H, :W, :]`. The mask channel is padded
  the same way, so a hole touching the border simply continues into the pad.
  """
  height, width = x.shape[-3], x.shape[-2]
  pad_h, pad_w = -height % multiple, -width % multiple
  if pad_h == 0 and pad_w == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[-3], widths[-2] = (0, pad_h), (0, pad_w)
  return np.pad(x, widths, mode="reflect")


def crop_to(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """Undoes `pad_to_multiple` on [..., H', W', C]."""
  return x[..., :height, :width, :]


def network_input(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """[B, H, W, 4] float32 exactly as training builds it.

  x = (pixel - 127.5) / 127.5; hole pixels set to 0 (= grey 127.5, what
  mmagic's GetMaskedImage fills in); the mask appended as a 4th channel.
  """
  x = (images.astype(np.float32) - 127.5) / 127.5
  return np.concatenate([x * (1.0 - masks), masks], axis=-1)


def complete_batch(
  apply_fn: ApplyFn, images: np.ndarray, masks: np.ndarray
) -> np.ndarray:
  """Completes a batch of equally sized images; returns uint8 [B, H, W, 3].

  Outside the hole every pixel is the input's, bit for bit; inside it the
  prediction is converted as for the metrics (`metrics.to_pixels`) and
  rounded to the nearest grey level.

  Args:
    apply_fn: maps [B, H', W', 4] (sides multiples of 4) to [B, H', W', 3]
      in [-1, 1], e.g. `lambda x: generator.apply(variables, x, train=False)`.
    images: uint8 [B, H, W, 3].
    masks: [B, H, W, 1] or [B, H, W]; non-zero = hole.
  """
  images = np.asarray(images)
  masks = np.asarray(masks)
  if masks.ndim == 3:
    masks = masks[..., None]
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(
      f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}"
    )
  if masks.shape != images.shape[:-1] + (1,):
    raise ValueError(
      f"masks {masks.shape} do not fit images {images.shape} (expected "
      f"{images.shape[:-1] + (1,)})"
    )
  holes = (masks != 0).astype(np.float32)
  height, width = images.shape[1:3]
  padded = pad_to_multiple(network_input(images, holes))
  outputs = np.asarray(apply_fn(jnp.asarray(padded)), np.float32)
  expected = padded.shape[:-1] + (3,)
  if outputs.shape != expected:
    raise ValueError(f"apply_fn returned {outputs.shape}, expected {expected}")
  predicted = metrics.to_pixels(crop_to(outputs, height, width))
  predicted = np.rint(predicted).astype(np.uint8)
  return np.where(holes > 0, predicted, images)


def complete(
  apply_fn: ApplyFn, image: np.ndarray, mask: np.ndarray
) -> np.ndarray:
  """Completes one uint8 [H, W, 3] image; see `complete_batch`."""
  return complete_batch(apply_fn, image[None], np.asarray(mask)[None])[0]


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


def _as_rgb_panel(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(
      f"expected [H, W], [H, W, 1] or [H, W, 3], got {image.shape}"
    )
  return np.broadcast_to(image, image.shape[:2] + (3,))


def masked_preview(
  image: np.ndarray, mask: np.ndarray, fill: Sequence[int] = (255, 255, 255)
) -> np.ndarray:
  """The input as a person should see it: the hole painted in `fill`."""
  hole = np.asarray(mask).reshape(image.shape[:2] + (1,)) != 0
  return np.where(hole, np.asarray(fill, np.uint8), image).astype(np.uint8)


def side_by_side(images: Sequence[np.ndarray], gap: int = 0) -> np.ndarray:
  """Joins equally tall uint8 images left to right (grey ones as RGB), with
  `gap` black columns between them, for a quick visual comparison."""
  if not images:
    raise ValueError("no images to join")
  panels = [_as_rgb_panel(image) for image in images]
  heights = {panel.shape[0] for panel in panels}
  if len(heights) != 1:
    raise ValueError(f"images differ in height: {sorted(heights)}")
  spacer = np.zeros((panels[0].shape[0], gap, 3), np.uint8)
  pieces = []
  for i, panel in enumerate(panels):
    if i and gap:
      pieces.append(spacer)
    pieces.append(panel)
  return np.concatenate(pieces, axis=1)


def save_png(path: PathLike, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] / [H, W, 1] / [H, W] image as PNG (lossless, so
  saved completions keep the exact pixels), creating parent folders."""
  panel = np.asarray(image)
  if panel.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got {panel.dtype}")
  if panel.ndim == 3 and panel.shape[-1] == 1:
    panel = panel[..., 0]
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(panel).save(path, format="PNG")
