"""Image and mask files for completion: read as a person sees them, written
losslessly.

Images are uint8 [H, W, 3] RGB; masks float32 [H, W, 1] with 1 = hole.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageOps

from glcic_jax import files
from glcic_jax.data import IMAGE_EXTENSIONS
from glcic_jax.inpaint.masks import check_hole_coverage

PathLike = files.PathLike
_EXIF_ORIENTATION = 0x0112


def _open_image(path: PathLike) -> Image.Image:
  """Opens and fully decodes an image, upright, or says which file failed.

  PIL decodes lazily, so a truncated file would otherwise fail later with a
  message that does not name it. EXIF orientation is applied, so that image
  and mask line up as an image viewer shows them.
  """
  path = os.fspath(path)
  if not files.is_file(path):
    raise FileNotFoundError(f"no such image file: {path}")
  try:
    with Image.open(io.BytesIO(files.read_bytes(path))) as image:
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


def read_mask(path: PathLike, shape: Sequence[int] | None = None) -> np.ndarray:
  """Reads a hole mask as float32 [H, W, 1]; any non-zero pixel is hole.

  Accepts 1-channel, RGB and RGBA images. With alpha, a pixel is hole only
  if it is both coloured and not fully transparent, so a mask painted in
  white on a transparent layer works whatever colour the transparent pixels
  store. Non-zero is mmagic's rule too (LoadMask, which looks at the first
  BGR channel only; here any colour channel counts), and it keeps the
  anti-aliased edges of painted strokes in the hole, where they are redrawn.

  A JPEG mask is read but warned about: its compression noise around the
  strokes is non-zero, so the hole grows.

  Args:
    path: the mask image file.
    shape: the image's shape, if known; its first two entries must match
      the mask's.
  """
  image = _open_image(path)
  if image.format == "JPEG" or os.fspath(path).lower().endswith(
    (".jpg", ".jpeg")
  ):
    logging.warning(
      "Mask %s is a JPEG: lossy compression leaves faint non-zero pixels "
      "around the strokes, and every non-zero pixel is hole, so the hole "
      "grows. Save masks as PNG.",
      path,
    )
  if _is_16_bit_grey(image):
    hole = np.asarray(image) != 0
  elif "A" in image.getbands() or "transparency" in image.info:
    rgba = np.asarray(image.convert("RGBA"))
    hole = (rgba[..., :3].max(axis=-1) > 0) & (rgba[..., 3] > 0)
  else:
    hole = np.asarray(image.convert("RGB")).max(axis=-1) > 0
  height, width = hole.shape if shape is None else shape[:2]
  if hole.shape != (height, width):
    raise ValueError(
      f"mask {path} is {hole.shape[0]}x{hole.shape[1]} (HxW) but the image "
      f"is {height}x{width}"
    )
  check_hole_coverage(hole, f"mask {path}")
  return hole[..., None].astype(np.float32)


def upright_size(path: PathLike) -> tuple[int, int] | None:
  """(height, width) as `read_image` will return it, from the header alone
  (EXIF rotations swap the sides); None if the header is unreadable (the
  file is then reported when it is read)."""
  try:
    with Image.open(io.BytesIO(files.read_bytes(path))) as image:
      width, height = image.size
      rotated = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
    return None
  return (width, height) if rotated else (height, width)


def save_png(path: PathLike, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] / [H, W, 1] / [H, W] image as PNG (lossless, so
  saved completions keep the exact pixels), creating parent folders."""
  panel = np.asarray(image)
  if panel.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got {panel.dtype}")
  if panel.ndim == 3 and panel.shape[-1] == 1:
    panel = panel[..., 0]
  encoded = io.BytesIO()
  Image.fromarray(panel).save(encoded, format="PNG")
  files.write_bytes(path, encoded.getvalue())


def save_image(path: PathLike, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] image in the format its suffix names: PNG
  (lossless) unless the suffix says JPEG (quality 95, no chroma
  subsampling), WebP (lossless) or BMP."""
  suffix = os.path.splitext(os.fspath(path))[1].lower()
  options = {
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
  }
  if suffix not in options:
    save_png(path, image)
    return
  fmt, kwargs = options[suffix]
  encoded = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(
    encoded, format=fmt, **kwargs
  )
  files.write_bytes(path, encoded.getvalue())


def list_inputs(inputs: Sequence[str]) -> list[str]:
  """Files as given, folders expanded to their images (sorted).

  Fails before any work if a path is missing or two inputs would write the
  same `<name>.png`.
  """
  paths = []
  for item in inputs:
    if files.is_dir(item):
      found = sorted(
        f for f in files.list_dir(item) if f.lower().endswith(IMAGE_EXTENSIONS)
      )
      if not found:
        raise FileNotFoundError(f"no images in folder {item}")
      paths += found
    elif files.is_file(item):
      paths.append(item)
    else:
      raise FileNotFoundError(f"no such input file or folder: {item}")
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"several inputs would be written as {twice} (.png)")
  return paths
