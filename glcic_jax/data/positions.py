"""Which global positions a process owns, and the reference of each
example to read: its candidate images, its random words, its index.

The pipeline's global order (its module docstring): process p of P owns the
slice [k*B + p*B/P, k*B + (p+1)*B/P) of the global batch of step k; the
example at a position reads its image and, if that one is unreadable, the
next ones in source order.
"""

from __future__ import annotations

import numpy as np

from glcic_jax.data import holes, randomness
from glcic_jax.data.tf_runtime import tf


class Slices:
  """The checked batch layout: which global positions this process owns."""

  def __init__(
    self, config, data, global_batch_size, process_index, process_count
  ):
    # Checked first, before a long source listing.
    self.hole_spec = holes.HoleSpec.from_config(config)
    self.local_size = holes.validate_local_size(
      self.hole_spec, config.local_size
    )
    if data.crop_size < 1:
      raise ValueError(
        f"config.data.crop_size ({data.crop_size}) must be >= 1."
      )
    if data.decoded_cache_mib > 0 and data.source == "tfds":
      raise ValueError(
        "config.data.decoded_cache_mib applies to file sources (image_list, "
        "folder, skimage), not to tfds: set it to 0."
      )
    if global_batch_size % process_count:
      raise ValueError(
        f"global_batch_size {global_batch_size} is not divisible by "
        f"process_count {process_count}."
      )
    if not 0 <= process_index < process_count:
      raise ValueError(
        f"process_index {process_index} not in [0, {process_count})."
      )
    self.global_batch = global_batch_size
    self.local_batch = global_batch_size // process_count
    self.process_index = process_index

  def position(self, j):
    """The global position of this process's j-th example."""
    step, offset = j // self.local_batch, j % self.local_batch
    return (
      step * self.global_batch + self.process_index * self.local_batch + offset
    )


def indexed_refs(local_ids, source, slices, key, tries, index_of):
  """refs of indexed sources: candidates are the image and the next ones."""
  n = source.num_examples

  def ref_of(j):
    position = slices.position(j)
    index = index_of(position)
    candidates = (tf.maximum(index, 0) + tf.range(tries, dtype=tf.int64)) % n
    return {
      "names": source.names(candidates),
      "candidates": candidates,
      "count": tf.where(index >= 0, np.int64(tries), 0),
      "words": randomness.example_words(key, position),
      "index": index,
    }

  return local_ids.map(ref_of)


def stream_refs(records, first, source, slices, key, tries):
  """refs of this process's share of a TFDS stream: its j-th record (from
  `first`) with the next ones after it, at its j-th global position."""
  windows = records.window(tries, shift=1, drop_remainder=True).flat_map(
    lambda idx, blob: tf.data.Dataset.zip((idx.batch(tries), blob.batch(tries)))
  )

  def ref_of(j, window):
    position = slices.position(j)
    indices, blobs = window
    return {
      "names": source.names(indices),
      "blobs": blobs,
      "count": tf.where(indices[0] >= 0, np.int64(tries), 0),
      "words": randomness.example_words(key, position),
      "index": indices[0],
    }

  return windows.enumerate(start=first).map(ref_of)
