"""Encoded image -> mmagic's random min(crop_size, side) crop, uint8 RGB.

Two ways to the same crop: `decode_and_crop` decodes the file of every
example (large sources), `DecodedImages` decodes each file of a small
source once at start-up and crops from memory (config.data.decoded_cache_mib),
so that per example only the crop, the resize and the hole are left: on the
demo's 15 photos, PNG decoding otherwise costs more CPU than the step it
feeds (docs/performance.md). Both take the crop window from the example's
random words alone, so a cached run sees the same crops as an uncached one
with jpeg_crop_decode off.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image

from glcic_jax.data import randomness
from glcic_jax.data.tf_runtime import tf


def crop_window(words, crop_size: int, height, width):
  """int32 [4] (top, left, h, w): the random min(crop, side) window."""

  def offset(word, room):
    draw = randomness.draw_ints(words[word], 0, tf.cast(room, tf.int64))
    return tf.cast(draw, tf.int32)

  crop_h = tf.minimum(crop_size, height)
  crop_w = tf.minimum(crop_size, width)
  top = offset(randomness.CROP_TOP_WORD, height - crop_h + 1)
  left = offset(randomness.CROP_LEFT_WORD, width - crop_w + 1)
  return tf.stack([top, left, crop_h, crop_w])


def _checked(pixels):
  """pixels, failing (so tf.data skips the example) when a side is < 1."""
  usable = tf.debugging.assert_positive(
    tf.shape(pixels)[:2], message="image side < 1"
  )
  with tf.control_dependencies([usable]):
    return tf.identity(pixels)


def _header(encoded, size: int = 32):
  """The first `size` bytes as int64 [size], zero-padded if the file is
  shorter."""
  head = tf.strings.join([tf.strings.substr(encoded, 0, size), "\0" * size])
  raw = tf.io.decode_raw(tf.strings.substr(head, 0, size), tf.uint8)
  return tf.cast(raw, tf.int64)


def _uint(b, first: int, count: int, big_endian: bool):
  """The unsigned integer in bytes first .. first + count - 1 of b."""
  order = range(count) if big_endian else reversed(range(count))
  value = tf.constant(0, tf.int64)
  for k in order:
    value = value * 256 + b[first + k]
  return value


def declared_pixels(encoded):
  """int64 width x height that a PNG, JPEG, GIF, BMP or WebP file declares
  in its header, read without decoding (0 for other content, which the
  decoder then rejects). A decompression bomb declares a huge size in a
  small file; this is how it is caught before any pixel memory is taken."""
  b = _header(encoded)

  def starts(signature: bytes, at: int = 0):
    return tf.reduce_all(tf.equal(b[at : at + len(signature)], list(signature)))

  def jpeg():
    shape = tf.io.extract_jpeg_shape(encoded, output_type=tf.int64)
    return shape[0] * shape[1]

  def webp():
    vp8x = (_uint(b, 24, 3, False) + 1) * (_uint(b, 27, 3, False) + 1)
    lossless = _uint(b, 21, 4, False)
    vp8l = (lossless % 2**14 + 1) * (lossless // 2**14 % 2**14 + 1)
    vp8 = (_uint(b, 26, 2, False) % 2**14) * (_uint(b, 28, 2, False) % 2**14)
    return tf.case(
      [
        (starts(b"VP8X", 12), lambda: vp8x),
        (starts(b"VP8L", 12), lambda: vp8l),
      ],
      default=lambda: vp8,
    )

  def bmp():
    width = _uint(b, 18, 4, False)
    height = _uint(b, 22, 4, False)
    height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down
    return width * height

  zero = lambda: tf.constant(0, tf.int64)  # noqa: E731
  return tf.case(
    [
      (tf.io.is_jpeg(encoded), jpeg),
      (
        starts(b"\x89PNG"),
        lambda: _uint(b, 16, 4, True) * _uint(b, 20, 4, True),
      ),
      (starts(b"GIF8"), lambda: _uint(b, 6, 2, False) * _uint(b, 8, 2, False)),
      (starts(b"BM"), bmp),
      (tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8)), webp),
    ],
    default=zero,
  )


def _within_limit(encoded, max_pixels: int):
  """`encoded`, failing (so tf.data skips and counts the image) when its
  header declares more than `max_pixels` pixels; max_pixels <= 0: no
  limit."""
  if max_pixels <= 0:
    return encoded
  fits = tf.debugging.assert_less_equal(
    declared_pixels(encoded),
    tf.constant(max_pixels, tf.int64),
    message="image declares more pixels than config max_image_pixels",
  )
  with tf.control_dependencies([fits]):
    return tf.identity(encoded)


# EXIF orientation tag.
_ORIENTATION = 0x0112


def _exif_orientation(encoded: bytes | np.ndarray) -> np.int32:
  """The EXIF orientation (1-8) of a JPEG; 1 if it has none. PIL reads the
  header only."""
  if isinstance(encoded, np.ndarray):  # how tf.numpy_function passes it
    encoded = encoded.item()
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      value = int(image.getexif().get(_ORIENTATION, 1))
  except Exception:  # noqa: BLE001  unreadable headers fail at decoding
    return np.int32(1)
  return np.int32(value if 1 <= value <= 8 else 1)


def _has_exif(encoded):
  """Whether a JPEG holds an EXIF segment where writers put it: first after
  the start-of-image marker (cameras) or right after a JFIF segment. Read in
  graph ops, so that the files without one (most datasets') never call
  into Python; an EXIF segment placed later still is not looked for."""
  b = _header(encoded, 64)
  exif = tf.constant(list(b"Exif"), tf.int64)

  def exif_at(at):
    marker = tf.logical_and(tf.equal(b[at], 0xFF), tf.equal(b[at + 1], 0xE1))
    return tf.logical_and(
      marker, tf.reduce_all(tf.equal(b[at + 4 : at + 8], exif))
    )

  first = exif_at(2)
  jfif_length = b[4] * 256 + b[5]
  # A JFIF segment too long for the header read (a thumbnail) is not looked
  # past: the gather reads position 0 instead, which fails the match.
  fits = tf.logical_and(tf.equal(b[3], 0xE0), jfif_length <= 52)
  after = tf.where(fits, 4 + jfif_length, 0)
  after_jfif = tf.logical_and(
    fits,
    tf.reduce_all(
      tf.equal(
        tf.gather(b, after + tf.constant([0, 1, 4, 5, 6, 7], tf.int64)),
        tf.constant([0xFF, 0xE1, *b"Exif"], tf.int64),
      )
    ),
  )
  return tf.logical_or(first, after_jfif)


def jpeg_orientation(encoded):
  """int32 EXIF orientation of a JPEG (1 = as stored; other files: 1)."""

  def read():
    value = tf.numpy_function(
      _exif_orientation, [encoded], tf.int32, stateful=False
    )
    return tf.ensure_shape(value, [])

  def jpeg():
    return tf.cond(_has_exif(encoded), read, lambda: tf.constant(1))

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: tf.constant(1))


def upright(image, orientation):
  """`image` as a viewer shows it: the EXIF `orientation` undone, as
  OpenCV's imread (mmagic's reader) and PIL's exif_transpose do."""

  def transposed():
    return tf.transpose(image, [1, 0, 2])

  turns = {
    2: lambda: image[:, ::-1],
    3: lambda: image[::-1, ::-1],
    4: lambda: image[::-1],
    5: transposed,
    6: lambda: transposed()[:, ::-1],
    7: lambda: transposed()[::-1, ::-1],
    8: lambda: transposed()[::-1],
  }
  return tf.switch_case(
    orientation - 1, [lambda: image] + [turns[k] for k in range(2, 9)]
  )


def decode_whole(encoded, max_pixels: int = 0):
  """uint8 [h, w, 3] of any supported file, upright (EXIF orientation
  applied); grey and RGBA become RGB. Files that declare more than
  `max_pixels` (> 0) fail before decoding."""
  encoded = _within_limit(encoded, max_pixels)

  def jpeg():
    # cv2 (mmagic) decodes with the accurate integer DCT.
    pixels = tf.io.decode_jpeg(
      encoded, channels=3, dct_method="INTEGER_ACCURATE"
    )
    return upright(pixels, jpeg_orientation(encoded))

  def other():
    return tf.io.decode_image(
      encoded, channels=3, dtype=tf.uint8, expand_animations=False
    )

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def decode_and_crop(
  encoded, words, crop_size: int, jpeg_crop_decode: bool, max_pixels: int = 0
):
  """uint8 [h', w', 3]: the random min(crop, side) crop of one file."""
  encoded = _within_limit(encoded, max_pixels)

  def cropped_jpeg():
    shape = tf.io.extract_jpeg_shape(encoded)
    return tf.io.decode_and_crop_jpeg(
      encoded,
      crop_window(words, crop_size, shape[0], shape[1]),
      channels=3,
      dct_method="INTEGER_ACCURATE",
    )

  def crop_of_whole():
    image = decode_whole(encoded)
    box = crop_window(words, crop_size, tf.shape(image)[0], tf.shape(image)[1])
    return image[box[0] : box[0] + box[2], box[1] : box[1] + box[3]]

  if jpeg_crop_decode:
    # A rotated JPEG's crop window is in the upright image: decode whole.
    as_stored = tf.logical_and(
      tf.io.is_jpeg(encoded), tf.equal(jpeg_orientation(encoded), 1)
    )
    pixels = tf.cond(as_stored, cropped_jpeg, crop_of_whole)
  else:
    pixels = crop_of_whole()
  return _checked(pixels)


class DecodedImages:
  """Every image of a file source, decoded once and held as one buffer.

  An unreadable file is held as a 0 x 0 image, so cropping it fails like
  decoding it would, and the pipeline's replacement and counting of
  unreadable images work unchanged.
  """

  def __init__(
    self,
    paths: Sequence[str],
    *,
    limit_mib: float,
    num_parallel_calls: int,
    source_name: str,
    max_pixels: int = 0,
  ):
    limit = int(limit_mib * 2**20)
    files = tf.data.Dataset.from_tensor_slices(list(paths)).enumerate()
    decoded = files.map(
      lambda i, path: (i, decode_whole(tf.io.read_file(path), max_pixels)),
      num_parallel_calls=num_parallel_calls,
      deterministic=True,
    ).ignore_errors()
    images = {}
    total = 0
    for i, pixels in decoded.as_numpy_iterator():
      total += pixels.nbytes
      if total > limit:
        raise ValueError(
          f"The decoded images of {source_name} exceed "
          f"config.data.decoded_cache_mib ({limit_mib}) at {paths[i]}: "
          "raise it or set it to 0 (decode per example)."
        )
      images[int(i)] = pixels
    empty = np.zeros((0, 0, 3), np.uint8)
    held = [images.get(i, empty) for i in range(len(paths))]
    if len(images) < len(paths):
      logging.warning(
        "%d of %d images of %s are unreadable; they are skipped when drawn.",
        len(paths) - len(images),
        len(paths),
        source_name,
      )
    sizes = np.array([image.size for image in held], np.int64)
    self._starts = tf.constant(np.cumsum(sizes) - sizes)
    self._shapes = tf.constant([image.shape[:2] for image in held], tf.int32)
    self._pixels = tf.constant(
      np.concatenate([image.ravel() for image in held])
    )

  def crop(self, index, words, crop_size: int):
    """uint8 [h', w', 3]: the random crop of image `index`."""
    start = self._starts[index]
    height, width = self._shapes[index][0], self._shapes[index][1]
    box = crop_window(words, crop_size, height, width)
    # Only the window's rows are copied out of the buffer.
    row = tf.cast(width * 3, tf.int64)
    first = start + tf.cast(box[0], tf.int64) * row
    rows = self._pixels[first : first + tf.cast(box[2], tf.int64) * row]
    rows = tf.reshape(rows, [box[2], width, 3])
    return _checked(rows[:, box[1] : box[1] + box[3]])
