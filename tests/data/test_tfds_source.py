"""TFDS splits prepared for real in both formats, read by two processes.

Ten solid-grey images (grey levels 0, 20, ..., 180) identify by their pixel
mean which image a batch row shows, whatever the crop (TFDS reorders the
records when it prepares a split, so a level is not a record index).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from glcic_jax.data import pipeline as input_pipeline
from tests.data.test_pipeline import check_batch, take, tiny_config

NUM_RECORDS = 10


def _prepare(root, file_format):
  greys = np.stack(
    [np.full((80, 90, 3), 20 * i, np.uint8) for i in range(NUM_RECORDS)]
  )
  builder = tfds.dataset_builders.TfDataBuilder(
    name="greys",
    version="1.0.0",
    split_datasets={
      "train": tf.data.Dataset.from_tensor_slices({"image": greys}),
      "validation": tf.data.Dataset.from_tensor_slices({"image": greys[:5]}),
    },
    features=tfds.features.FeaturesDict(
      {"image": tfds.features.Image(shape=(80, 90, 3))}
    ),
    data_dir=str(root),
    file_format=file_format,
  )
  builder.download_and_prepare()
  return root


@pytest.fixture(scope="module")
def greys_dirs(tmp_path_factory):
  return {
    fmt: _prepare(tmp_path_factory.mktemp(fmt), fmt)
    for fmt in ("array_record", "tfrecord")
  }


def greys_config(data_dir):
  config = tiny_config(
    source="tfds", tfds_name="greys", tfds_data_dir=str(data_dir)
  )
  config.eval_data.tfds_split = "validation"
  return config


def record_ids(batches):
  """The image each row shows, from its grey level."""
  means = np.concatenate([b["image"].mean(axis=(1, 2, 3)) for b in batches])
  return np.rint(means / 20).astype(int)


def train(config, steps, process_count=1, process_index=0, start_step=0):
  pipeline = input_pipeline.create_train_dataset(
    config,
    global_batch_size=4,
    process_index=process_index,
    process_count=process_count,
    start_step=start_step,
  )
  return take(pipeline, steps)


def test_random_access_split_is_the_same_global_batch_for_any_process_count(
  greys_dirs,
):
  config = greys_config(greys_dirs["array_record"])
  single = train(config, 5)  # 20 positions: over an epoch boundary
  halves = [train(config, 5, 2, p) for p in range(2)]
  resumed = train(config, 2, start_step=3)
  for step, batch in enumerate(single):
    check_batch(batch, 64, 32, 4)
    for key in batch:
      np.testing.assert_array_equal(
        batch[key], np.concatenate([halves[0][step][key], halves[1][step][key]])
      )
  for a, b in zip(resumed, single[3:]):  # resumes inside the second epoch
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  # Each epoch shows every record once.
  ids = record_ids(single)
  assert sorted(ids[:NUM_RECORDS]) == list(range(NUM_RECORDS))
  assert sorted(ids[NUM_RECORDS:]) == list(range(NUM_RECORDS))
  evaluation = input_pipeline.create_eval_dataset(config, global_batch_size=4)
  batches = list(evaluation)
  assert evaluation.num_batches == 2 == len(batches)
  np.testing.assert_array_equal(
    np.concatenate([b["index"] for b in batches]), [0, 1, 2, 3, 4, -1, -1, -1]
  )
  assert sorted(record_ids(batches)[:5]) == list(range(5))


def test_stream_split_each_process_reads_only_its_share(greys_dirs):
  config = greys_config(greys_dirs["tfrecord"])
  # 5 records a share, 2 per local batch: 10 steps are 4 epochs of a share.
  shares = [record_ids(train(config, 10, 2, p)) for p in range(2)]
  seen = [set(ids) for ids in shares]
  assert seen[0].isdisjoint(seen[1])
  assert seen[0] | seen[1] == set(range(NUM_RECORDS))
  for ids in shares:  # each epoch of a share shows each of its records once
    for epoch in ids.reshape(4, 5):
      assert sorted(epoch) == sorted(ids[:5])
  # The crops and holes of a position do not depend on the process count.
  single = train(config, 3)
  halves = [train(config, 3, 2, p) for p in range(2)]
  for step in range(3):
    for key in ("bbox", "local_bbox"):
      np.testing.assert_array_equal(
        single[step][key],
        np.concatenate([halves[0][step][key], halves[1][step][key]]),
      )
  # With the same process count a resume continues exactly.
  resumed = train(config, 4, 2, 1, start_step=6)
  np.testing.assert_array_equal(record_ids(resumed), shares[1][12:20])
  first = train(config, 10, 2, 1)
  for a, b in zip(resumed, first[6:]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_stream_split_evaluates_each_share_once(greys_dirs):
  config = greys_config(greys_dirs["tfrecord"])
  runs = [
    input_pipeline.create_eval_dataset(
      config, global_batch_size=4, process_index=p, process_count=2
    )
    for p in range(2)
  ]
  batches = [list(run) for run in runs]
  # Shares of 3 and 2 validation records, 2 per local batch: 2 batches each.
  assert [run.num_batches for run in runs] == [2, 2]
  assert [len(b) for b in batches] == [2, 2]
  indices = np.concatenate([b["index"] for bs in batches for b in bs])
  valid = np.concatenate([b["valid"] for bs in batches for b in bs])
  assert sorted(indices[valid > 0]) == list(range(5))
  assert sorted(indices[valid == 0]) == [-1, -1, -1]
  ids = np.concatenate([record_ids([b]) for bs in batches for b in bs])
  assert sorted(ids[valid > 0]) == list(range(5))


def test_bad_tfds_fields_are_named_before_any_reading(greys_dirs, tmp_path):
  good = greys_dirs["tfrecord"]
  for field, value, match in [
    ("tfds_image_key", "picture", "tfds_image_key 'picture'"),
    ("tfds_split", "test", "tfds_split 'test'"),
    ("tfds_name", "no_such_dataset_here", "no_such_dataset_here"),
  ]:
    config = greys_config(good)
    config.data[field] = value
    with pytest.raises((ValueError, FileNotFoundError), match=match):
      train(config, 1)
  with pytest.raises(ValueError, match="fewer than the 16 processes"):
    input_pipeline.create_train_dataset(
      greys_config(good),
      global_batch_size=16,
      process_index=0,
      process_count=16,
    )
