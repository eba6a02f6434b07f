"""The decoded-image cache crops exactly what per-example decoding crops."""

import numpy as np
import pytest

from glcic_jax.data import pipeline as input_pipeline
from tests.data.test_pipeline import take, tiny_config


def test_cached_batches_equal_decoded_batches_and_skip_the_same(photo_folder):
  # jpeg_crop_decode off: the cache decodes whole files, as that path does.
  decoded = tiny_config(data_root=str(photo_folder), jpeg_crop_decode=False)
  cached = tiny_config(data_root=str(photo_folder), decoded_cache_mib=64)
  pipelines = [
    input_pipeline.create_train_dataset(c, global_batch_size=8)
    for c in (decoded, cached)
  ]
  # 3 batches: 3 epochs of the 8 files, the corrupt one among them.
  expected, got = (take(p, 3) for p in pipelines)
  for want, have in zip(expected, got):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
  assert pipelines[0].skipped_files() == pipelines[1].skipped_files() == 3

  evals = [
    list(input_pipeline.create_eval_dataset(c, global_batch_size=3))
    for c in (decoded, cached)
  ]
  for want, have in zip(*evals):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
  assert 0 in np.concatenate([b["valid"] for b in evals[1]])


def test_cache_over_its_limit_names_the_field_and_a_file(photo_folder):
  config = tiny_config(data_root=str(photo_folder), decoded_cache_mib=1)
  with pytest.raises(ValueError, match=r"decoded_cache_mib \(1\) at .*"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)


def test_cache_of_a_tfds_source_is_refused():
  config = tiny_config(source="tfds", decoded_cache_mib=8)
  with pytest.raises(ValueError, match="decoded_cache_mib applies to file"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)
