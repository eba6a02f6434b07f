"""Completing images with any generator: the network input padded to a
size the generator accepts, the prediction pasted into the hole only, and
side-by-side previews.

The network is any `apply_fn(image, mask)` mapping a [B, H, W, 3] image in
[-1, 1] and its [B, H, W, 1] hole mask to [B, H, W, 3] in [-1, 1] (a
`Completer` builds the generator's input with `models.network_input`), so
everything here is testable without a checkpoint. Images are uint8
[H, W, 3] RGB; masks [H, W, 1] with non-zero = hole. (mmagic trains on BGR;
a generator imported from mmagic has its colour channels permuted to RGB by
the importer.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from glcic_jax import metrics

ApplyFn = Callable[[jax.Array, jax.Array], jax.Array]

# The generator downsamples twice by 2 and upsamples back, so its input
# sides must be multiples of 4 (mmagic 1.x fails on other sizes).
NETWORK_MULTIPLE = 4


def pad_to_multiple(
  x: np.ndarray, multiple: int = NETWORK_MULTIPLE
) -> np.ndarray:
  """Pads the H and W axes of [..., H, W, C] at the bottom/right by reflection.

  Reflection rather than zeros: a constant border is an edge that is not in
  the photo, and the generator's dilated convolutions carry what they see
  near the border deep into the image; a mirrored border continues the
  local content instead (mmediting 0.x reflect-padded too). Bottom/right
  only, so cropping back is `x[..., :H, :W, :]`. The mask is padded
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


def complete_batch(
  apply_fn: ApplyFn, images: np.ndarray, masks: np.ndarray
) -> np.ndarray:
  """Completes a batch of equally sized images; returns uint8 [B, H, W, 3].

  Outside the hole every pixel is the input's, bit for bit; inside it the
  prediction is converted as for the metrics (`metrics.to_pixels`) and
  rounded to the nearest grey level.

  Args:
    apply_fn: maps an image [B, H', W', 3] in [-1, 1] and its mask [B, H',
      W', 1] (sides multiples of 4) to [B, H', W', 3] in [-1, 1], e.g.
      `Completer.apply`.
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
  pixels = (images.astype(np.float32) - 127.5) / 127.5  # as in training
  padded = pad_to_multiple(pixels)
  outputs = apply_fn(jnp.asarray(padded), jnp.asarray(pad_to_multiple(holes)))
  outputs = np.asarray(outputs, np.float32)
  expected = padded.shape
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
