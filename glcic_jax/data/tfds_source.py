"""TFDS splits as image sources, each process reading only its share.

Two cases, decided by the format the dataset was prepared in:

* Random access (ArrayRecord, `tfds.data_source`): the split is read like a
  list of files, image i by index, so the global batch at step k is the
  same for any number of processes and a run resumes on another topology
  where an uninterrupted run would be.
* Streams (TFRecord, TFDS's default): a record is reachable only by reading
  the ones before it in its file, so process p of P reads the p-th of
  `tfds.even_splits(split, P)` and shuffles that share alone. The crop and
  hole of each global position still come from (seed, position), but which
  image sits at a position depends on P: a resume with the same process
  count continues exactly; with another one it continues from the same step
  on a different (equally random) order. Prepare with
  `file_format='array_record'` where that matters.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from glcic_jax.data import sources
from glcic_jax.data.tf_runtime import tf


def _builder(data: ml_collections.ConfigDict, section: str):
  import tensorflow_datasets as tfds

  where = data.tfds_data_dir or "the default data_dir"
  try:
    builder = tfds.builder(data.tfds_name, data_dir=data.tfds_data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise FileNotFoundError(
      f"TFDS dataset {data.tfds_name!r} (config.{section}.tfds_name) is not known "
      f"to TFDS nor prepared in {where}: {e}"
    ) from e
  if not builder.is_prepared():
    if not data.tfds_download:
      raise FileNotFoundError(
        f"TFDS dataset {data.tfds_name!r} split {data.tfds_split!r} is not "
        f"prepared in {where} and config.{section}.tfds_download is False."
      )
    builder.download_and_prepare()
  return builder


def open_tfds(
  data: ml_collections.ConfigDict,
  process_index: int,
  process_count: int,
  section: str = "data",
) -> sources.Source:
  """This process's view of the TFDS split of config section `section`
  (`data`), checked up front; errors name that section's fields."""
  import tensorflow_datasets as tfds

  builder = _builder(data, section)
  name = f"tfds:{data.tfds_name}/{data.tfds_split}"
  key = data.tfds_image_key
  if key not in builder.info.features:
    raise ValueError(
      f"config.{section}.tfds_image_key {key!r} is not a feature of "
      f"{data.tfds_name} (it has {sorted(builder.info.features)})."
    )
  try:
    total = builder.info.splits[data.tfds_split].num_examples
  except (KeyError, ValueError) as e:
    raise ValueError(
      f"config.{section}.tfds_split {data.tfds_split!r} is not a split of "
      f"{data.tfds_name} (it has {sorted(builder.info.splits)}): {e}"
    ) from e
  skip = {key: tfds.decode.SkipDecoding()}

  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    records = builder.as_data_source(data.tfds_split, decoders=skip)

    def fetch(index):
      return np.bytes_(records[int(index)][key])

    def read(index):
      encoded = tf.numpy_function(fetch, [index], tf.string, stateful=False)
      return tf.ensure_shape(encoded, [])

    return sources.Source(name, read=read, num_examples=len(records))

  shares = tfds.even_splits(data.tfds_split, n=process_count)
  sizes = [builder.info.splits[s].num_examples for s in shares]
  if min(sizes) < 1:
    raise ValueError(
      f"{name} has {total} examples, fewer than the {process_count} "
      "processes that would each read a share of it."
    )
  mine = builder.as_dataset(
    split=shares[process_index],
    shuffle_files=False,  # one order for every run
    decoders=skip,
  )
  first = sum(sizes[:process_index])
  records = mine.map(lambda ex: ex[key]).enumerate(start=first)
  return sources.Source(
    name, records=records, num_examples=total, share_sizes=sizes
  )
