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

from collections.abc import Sequence

import numpy as np
from absl import logging

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


def decode_whole(encoded):
  """uint8 [h, w, 3] of any supported file; grey and RGBA become RGB."""

  def jpeg():
    # cv2 (mmagic) decodes with the accurate integer DCT.
    return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")

  def other():
    return tf.io.decode_image(
      encoded, channels=3, dtype=tf.uint8, expand_animations=False
    )

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def decode_and_crop(encoded, words, crop_size: int, jpeg_crop_decode: bool):
  """uint8 [h', w', 3]: the random min(crop, side) crop of one file."""

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
    pixels = tf.cond(tf.io.is_jpeg(encoded), cropped_jpeg, crop_of_whole)
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
  ):
    limit = int(limit_mib * 2**20)
    files = tf.data.Dataset.from_tensor_slices(list(paths)).enumerate()
    decoded = files.map(
      lambda i, path: (i, decode_whole(tf.io.read_file(path))),
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
