"""tf.data input for Global&Local: mmagic's crops and holes, any topology.

Per example, in TF graph ops: decode (JPEG/PNG/BMP/GIF/WebP, grey and RGBA
to RGB; or, with config.data.decoded_cache_mib, crop from the images decoded
once at start-up: `decoding`), random crop of min(crop_size, side), bilinear
resize to image_size
(rounded to whole levels, as cv2.resize on uint8 does), mmagic's random_bbox
hole and its local box (`holes`). Batches leave as uint8 pixels and boxes;
the devices scale to [-1, 1] and draw the masks (`glcic_jax.batches`).

Global order. Training examples sit at global positions 0, 1, 2, ...; the
global batch of step k is positions [k*B, (k+1)*B). Process p of P decodes
only its contiguous slice [k*B + p*B/P, k*B + (p+1)*B/P). The random crop
and hole of a position come from (config.seed, position) alone
(counter-based Philox, see `randomness`), so for indexed sources the
global batch is the same for any process count, and `start_step` starts a
run at position start_step*B without decoding what came before. Indexed
sources (files, random-access TFDS splits) map position -> image with a
seeded permutation per epoch (`tf.random.experimental.index_shuffle`, a
full shuffle computed per index).
A TFDS stream (TFRecord) is read by each process for its share only,
shuffled by a buffer seeded per epoch; there the image at a position
depends on the process count (`tfds_source` says where that matters), and
a resume reads (never decodes) at most one epoch of the share. All of
this holds with config.data.deterministic (the default); without it tf.data
may hand out examples in the order they finish decoding, faster but not
reproducible.

Unreadable images. If the image at a position cannot be read or decoded (or
has a side < 1), the next image in source order is used instead, with the
crop and hole of the original position, up to
config.data.max_consecutive_unreadable times; more than that in a row stops
the run with an error naming the file. The replacement depends only on the
data, so the global order stays topology independent. Each replacement is
logged with the path and counted by `Pipeline.skipped_files()`. In
evaluation an unreadable image is not replaced: its row gets valid = 0.

This module does not know about JAX devices; the caller passes the process
index and count and turns the numpy batches into global arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ml_collections
import numpy as np
from absl import logging

from glcic_jax.data import decoding, holes, positions, randomness, sources
from glcic_jax.data.tf_runtime import tf

tnp = tf.experimental.numpy  # what `holes` computes with, in the graph

# Bookkeeping keys, removed by Pipeline before a batch reaches the caller.
_SKIPPED = "_skipped"
_SKIPPED_NAME = "_skipped_name"


class Pipeline:
  """A tf.data dataset of batches plus the count of replaced images.

  Iterating yields dicts of numpy arrays as `glcic_jax.batches` describes
  them: `image` [b,H,W,3] uint8, `bbox` (the hole) and `local_bbox` [b,4]
  int32 (top, left, h, w); evaluation adds `valid` [b] float32 and `index`
  [b] int32 (-1 for padding). b = global batch / process count.
  `dataset` is the underlying tf.data.Dataset; its elements also carry the
  two bookkeeping keys that iteration turns into `skipped_files()`.
  """

  def __init__(
    self,
    dataset: tf.data.Dataset,
    *,
    num_examples: int,
    num_batches: int | None = None,
    names_at: Callable[[int], list[str]] | None = None,
  ):
    self.dataset = dataset
    self.num_examples = num_examples  # images in the source
    self.num_batches = num_batches  # None: infinite (training)
    self._names_at = names_at
    self._skipped = 0

  def files_of_batch(self, k: int) -> list[str]:
    """The files batch k (from the start) reads, with the replacements it
    may try; [] where the source has no files or positions (streams)."""
    return self._names_at(k) if self._names_at else []

  def skipped_files(self) -> int:
    """Unreadable images met in the batches handed out so far."""
    return self._skipped

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    for batch in self.dataset.as_numpy_iterator():
      skipped = batch.pop(_SKIPPED)
      names = batch.pop(_SKIPPED_NAME)
      for count, name in zip(skipped, names):
        if count:
          self._skipped += int(count)
          logging.warning(
            "Skipped %d unreadable image(s), first %s", count, name.decode()
          )
      yield batch


def _load_first_readable(
  ref, data, cache, read, *, train: bool
) -> tf.data.Dataset:
  """One element: the first of ref's candidates that decodes, cropped.

  Yields (kept fields, pixels, skipped, valid): skipped counts the
  candidates that failed. When all fail, training stops with an error and
  evaluation yields a blank row with valid = 0 (also the padding's path,
  where there are no candidates).
  """

  def attempt(k):
    if cache is not None:
      pixels = cache.crop(ref["candidates"][k], ref["words"], data.crop_size)
    else:
      if "blobs" in ref:
        encoded = ref["blobs"][k]
      elif read is not None:
        encoded = read(ref["candidates"][k])
      else:
        encoded = tf.io.read_file(ref["names"][k])
      pixels = decoding.decode_and_crop(
        encoded,
        ref["words"],
        data.crop_size,
        bool(data.jpeg_crop_decode),
        data.max_image_pixels,
      )
    return pixels, tf.cast(k, tf.int32), tf.constant(1.0)

  def exhausted(count):
    if train:
      message = (
        f"{data.max_consecutive_unreadable + 1} unreadable images in a row "
        "(more than config.data.max_consecutive_unreadable), the first:"
      )
      failed = tf.debugging.Assert(False, [message, ref["names"][0]])
      with tf.control_dependencies([failed]):
        count = tf.identity(count)
    blank = tf.zeros([1, 1, 3], tf.uint8)
    return blank, tf.cast(count, tf.int32), tf.constant(0.0)

  attempts = tf.data.Dataset.range(ref["count"]).map(attempt)
  fallback = tf.data.Dataset.from_tensors(ref["count"]).map(exhausted)
  chosen = attempts.ignore_errors(log_warning=True).concatenate(fallback)
  # Only what `finish` needs travels on, not the candidates' bytes.
  kept = {"words": ref["words"], "name": ref["names"][0], "index": ref["index"]}
  return chosen.take(1).map(lambda *example: (kept, *example))


def _batches(refs, slices, data, *, train: bool, cache=None, read=None):
  """refs -> decoded, cropped, resized, holed, batched examples."""
  spec, local_size = slices.hole_spec, slices.local_size
  parallel = data.num_parallel_calls
  parallel = parallel if parallel > 0 else tf.data.AUTOTUNE

  def finish(ref, pixels, skipped, valid):
    image = tf.image.resize(pixels, spec.image_size, method="bilinear")
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)  # as cv2 on uint8
    hole = holes.holes_from_words(ref["words"], spec, tnp)
    local = holes.local_boxes(hole, spec.image_size, local_size, tnp)
    # The devices build the [-1, 1] image and the mask (`batches.expand`).
    out = {
      "image": tf.cast(image, tf.uint8),
      "bbox": tf.cast(hole, tf.int32),
      "local_bbox": tf.cast(local, tf.int32),
      _SKIPPED: skipped,
      _SKIPPED_NAME: tf.where(skipped > 0, ref["name"], ""),
    }
    if not train:
      out |= {"valid": valid, "index": tf.cast(ref["index"], tf.int32)}
    return out

  # Each inner dataset yields exactly one element, so a deterministic
  # interleave keeps the order of refs while decoding in parallel.
  ds = refs.interleave(
    lambda ref: _load_first_readable(ref, data, cache, read, train=train),
    cycle_length=parallel,
    num_parallel_calls=parallel,
  )
  ds = ds.map(finish, num_parallel_calls=parallel)
  ds = ds.batch(slices.local_batch, drop_remainder=True)
  ds = ds.prefetch(data.prefetch if data.prefetch >= 0 else tf.data.AUTOTUNE)
  options = tf.data.Options()
  # Evaluation is always in order; training follows config.data.
  options.deterministic = not train or bool(data.deterministic)
  options.experimental_optimization.map_parallelization = True
  options.experimental_optimization.parallel_batch = True
  options.threading.max_intra_op_parallelism = 1  # parallelism is per image
  return ds.with_options(options)


def _decoded_cache(source, data) -> decoding.DecodedImages | None:
  """The decoded images of a small file source, if config asks for them."""
  if data.decoded_cache_mib <= 0:
    return None
  parallel = data.num_parallel_calls
  return decoding.DecodedImages(
    source.paths,
    limit_mib=data.decoded_cache_mib,
    num_parallel_calls=parallel if parallel > 0 else tf.data.AUTOTUNE,
    source_name=source.name,
    max_pixels=data.max_image_pixels,
  )


def create_train_dataset(
  config: ml_collections.ConfigDict,
  *,
  global_batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
  start_step: int = 0,
  source: sources.Source | None = None,
) -> Pipeline:
  """The infinite training batches of this process, from `start_step` on.

  Uses config.data, config.holes, config.image_size, config.local_size and
  config.seed; `source` is config.data's, if the caller opened it already.
  Each batch is this process's slice of the global batch (see the module
  docstring), the same whatever process_count is.
  """
  data = config.data
  slices = positions.Slices(
    config, data, global_batch_size, process_index, process_count
  )
  if source is None:
    source = sources.open_source(data, process_index, process_count)
  key = randomness.philox_key(config.seed, randomness.TRAIN_STREAM)
  tries = data.max_consecutive_unreadable + 1
  n = source.num_examples
  first = start_step * slices.local_batch  # of this process's examples

  if source.indexed:

    def index_of(position):
      if not data.shuffle:
        return position % n
      seed = tf.stack([tf.constant(config.seed, tf.int64), position // n])
      return tf.random.experimental.index_shuffle(position % n, seed, n - 1)

    local_ids = tf.data.Dataset.counter(first)
    refs = positions.indexed_refs(
      local_ids, source, slices, key, tries, index_of
    )

    def names_at(k: int) -> list[str]:
      local = first + k * slices.local_batch + np.arange(slices.local_batch)
      index = [
        int(index_of(tf.constant(p, tf.int64))) for p in slices.position(local)
      ]
      candidates = (np.array(index)[:, None] + np.arange(tries)) % n
      names = source.names(tf.constant(candidates.ravel(), tf.int64)).numpy()
      return [name.decode() for name in names]
  else:
    n = source.share_sizes[process_index]

    def epoch_records(epoch):
      if not data.shuffle:
        return source.records
      seed = tf.constant(config.seed, tf.int64) * 1_000_003 + epoch
      return source.records.shuffle(data.shuffle_buffer, seed=seed)

    records = tf.data.Dataset.counter(first // n).flat_map(epoch_records)
    records = records.skip(first % n)  # reads records, decodes none
    refs = positions.stream_refs(records, first, source, slices, key, tries)
    names_at = None
  cache = _decoded_cache(source, data)
  ds = _batches(refs, slices, data, train=True, cache=cache, read=source.read)
  files = names_at if source.paths is not None and cache is None else None
  return Pipeline(ds, num_examples=n, names_at=files)


def create_eval_dataset(
  config: ml_collections.ConfigDict,
  *,
  global_batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
  data_config: ml_collections.ConfigDict | None = None,
) -> Pipeline:
  """One finite pass over the evaluation images in source order.

  The crop and hole of image i come from (config.seed, i) alone, so two
  evaluations of a checkpoint see identical inputs. The last global batch
  is padded (valid = 0, index = -1), so every process yields the same
  number of batches: ceil(num_examples / global_batch_size), or for a
  TFDS stream ceil(largest share / local batch), each process evaluating
  its share.
  """
  data = config.eval_data if data_config is None else data_config
  slices = positions.Slices(
    config, data, global_batch_size, process_index, process_count
  )
  source = sources.open_source(
    data, process_index, process_count, section="eval_data"
  )
  key = randomness.philox_key(config.seed, randomness.EVAL_STREAM)
  n = source.num_examples

  if source.indexed:
    num_batches = -(-n // global_batch_size)
    local_ids = tf.data.Dataset.range(num_batches * slices.local_batch)

    def index_of(position):
      return tf.where(position < n, position, -1)  # -1: padding

    refs = positions.indexed_refs(local_ids, source, slices, key, 1, index_of)
  else:
    # Each process pads its share to the largest share's batches.
    num_batches = -(-max(source.share_sizes) // slices.local_batch)
    own = source.share_sizes[process_index]
    padding = num_batches * slices.local_batch - own
    blank = tf.data.Dataset.from_tensors((np.int64(-1), "")).repeat(padding)
    refs = positions.stream_refs(
      source.records.concatenate(blank), 0, source, slices, key, 1
    )
  cache = _decoded_cache(source, data)
  ds = _batches(refs, slices, data, train=False, cache=cache, read=source.read)
  return Pipeline(ds, num_examples=n, num_batches=num_batches)
