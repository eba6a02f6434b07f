"""The tf.data pipeline on real files, image lists and the scikit-image
photos: batch contents, order, sharding, resume and bad input (TFDS splits:
test_tfds_source.py)."""

import logging
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from glcic_jax import config as config_lib
from glcic_jax.data import pipeline as input_pipeline
from glcic_jax.data import sources as image_sources
from tests.data.test_holes import sample_holes


def tiny_config(
  source="folder", data_root="", hole_overrides=None, **data_overrides
):
  """64x64 images, 32x32 local box, 24-px holes: a fast mmagic look-alike.
  `data_overrides` go to both data sections where they have the field."""
  config = config_lib.get_base_config()
  config.seed = 3
  config.image_size = 64
  config.local_size = 32
  config.holes.update(max_bbox_shape=24, max_bbox_delta=8, min_margin=4)
  config.holes.update(hole_overrides or {})
  for data in (config.data, config.eval_data):
    data.source = source
    data.data_root = data_root
    data.crop_size = 96
    data.num_parallel_calls = 2
    data.update({k: v for k, v in data_overrides.items() if k in data})
  return config


def coordinate_image(height, width):
  """R = row, G = column (mod 256), B = 7: a crop reveals its offset."""
  rows, cols = np.mgrid[:height, :width]
  return np.stack([rows % 256, cols % 256, np.full_like(rows, 7)], -1).astype(
    np.uint8
  )


def check_batch(batch, size, local_size, batch_size):
  """Shapes and dtypes as shipped (uint8 pixels, no mask: the devices draw
  it from bbox), and the local box consistent with bbox."""
  assert set(batch) >= {"image", "bbox", "local_bbox"}
  assert "mask" not in batch
  assert batch["image"].shape == (batch_size, size, size, 3)
  assert batch["image"].dtype == np.uint8
  assert (
    batch["bbox"].dtype == np.int32 and batch["local_bbox"].dtype == np.int32
  )
  top, left, h, w = batch["bbox"].T
  ltop, lleft, lh, lw = batch["local_bbox"].T
  assert (lh == local_size).all() and (lw == local_size).all()
  assert (ltop <= top).all() and (ltop + local_size >= top + h).all()
  assert (lleft <= left).all() and (lleft + local_size >= left + w).all()
  assert (ltop + local_size <= size).all() and (
    lleft + local_size <= size
  ).all()


def take(pipeline, steps):
  iterator = iter(pipeline)
  return [next(iterator) for _ in range(steps)]


def test_folder_batches_and_corrupt_file_skipped_and_counted(
  photo_folder, caplog
):
  config = tiny_config(data_root=str(photo_folder))
  pipeline = input_pipeline.create_train_dataset(config, global_batch_size=8)
  assert pipeline.num_examples == 8  # 7 images + corrupt.jpg; not notes.txt
  with caplog.at_level(logging.WARNING):
    batches = take(pipeline, 2)  # positions 0..15: two full epochs
  for batch in batches:
    check_batch(batch, 64, 32, 8)
    assert set(batch) == {"image", "bbox", "local_bbox"}
  assert pipeline.skipped_files() == 2  # the corrupt file once per epoch
  assert str(photo_folder / "corrupt.jpg") in caplog.text


def test_crop_is_a_uniform_window_of_the_source(tmp_path):
  """With crop == image_size the output is the crop itself; every offset
  from 0 to side - crop (inclusive, as mmagic's randint(0, side-crop+1))."""
  Image.fromarray(coordinate_image(67, 71)).save(tmp_path / "coords.png")
  config = tiny_config(data_root=str(tmp_path), crop_size=64)
  (batch,) = take(
    input_pipeline.create_train_dataset(config, global_batch_size=64), 1
  )
  pixels = batch["image"].astype(int)
  tops, lefts = pixels[:, 0, 0, 0], pixels[:, 0, 0, 1]
  rows, cols = np.mgrid[:64, :64]
  np.testing.assert_array_equal(pixels[..., 0], tops[:, None, None] + rows)
  np.testing.assert_array_equal(pixels[..., 1], lefts[:, None, None] + cols)
  assert (pixels[..., 2] == 7).all()
  assert set(tops) == set(range(67 - 64 + 1))
  assert set(lefts) == set(range(71 - 64 + 1))


def test_resize_matches_opencv_bilinear_on_a_skimage_photo():
  """chelsea (451x300) with the crop over the whole image, squashed to 64."""
  config = tiny_config(
    source="skimage", skimage_split="heldout", crop_size=1000
  )
  pipeline = input_pipeline.create_eval_dataset(config, global_batch_size=2)
  (batch,) = list(pipeline)
  paths = image_sources.open_source(config.eval_data).paths
  assert [os.path.basename(p) for p in paths] == list(
    image_sources.SKIMAGE_HELDOUT
  )
  for row, path in enumerate(paths):
    reference = cv2.resize(
      cv2.imread(path), (64, 64), interpolation=cv2.INTER_LINEAR
    )
    ours = batch["image"][row].astype(float)
    assert np.abs(ours - reference[..., ::-1]).max() <= 1.0


def test_skimage_photos_real_pixels():
  config = tiny_config(source="skimage")
  config.image_size, config.local_size = 256, 128
  config.holes.update(max_bbox_shape=128, max_bbox_delta=40, min_margin=20)
  for data in (config.data, config.eval_data):
    data.crop_size = 384
  train = input_pipeline.create_train_dataset(config, global_batch_size=4)
  held = image_sources.open_source(config.eval_data).paths
  assert not set(held) & set(image_sources.open_source(config.data).paths)
  assert train.num_examples >= 10
  (batch,) = take(train, 1)
  check_batch(batch, 256, 128, 4)
  assert batch["image"].std() > 10  # real pictures, not padding
  assert (batch["bbox"][:, 2:] >= 108).all() and (
    batch["bbox"][:, 2:] <= 128
  ).all()


def test_image_list_in_mmagic_format_keeps_list_order(tmp_path):
  colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
  (tmp_path / "a").mkdir()
  names = ["a/red.png", "green.png", "a/blue.jpg"]
  for name, colour in zip(names, colours):
    Image.fromarray(np.full((90, 120, 3), colour, np.uint8)).save(
      tmp_path / name
    )
  list_file = tmp_path / "meta.txt"
  list_file.write_text(
    "a/red.png 0\n\n  green.png   1 extra\n/a/blue.jpg\ngone.png 3\n"
  )
  config = tiny_config(source="image_list", data_root=str(tmp_path))
  config.eval_data.image_list = str(list_file)
  pipeline = input_pipeline.create_eval_dataset(config, global_batch_size=3)
  first, second = list(pipeline)
  np.testing.assert_array_equal(first["index"], [0, 1, 2])
  means = first["image"].mean(axis=(1, 2))
  np.testing.assert_allclose(means, colours, atol=3)  # JPEG is lossy
  # The missing file is counted and marked invalid, then the padding.
  np.testing.assert_array_equal(second["index"], [3, -1, -1])
  np.testing.assert_array_equal(second["valid"], [0, 0, 0])
  assert pipeline.skipped_files() == 1


def test_shuffle_is_a_new_permutation_each_epoch(tmp_path):
  """Solid-colour files: each epoch shows every file once, reordered."""
  for i in range(12):
    grey = np.full((40, 50, 3), 20 * i, np.uint8)
    Image.fromarray(grey).save(tmp_path / f"{i:02d}.png")

  def file_order(**overrides):
    config = tiny_config(data_root=str(tmp_path), **overrides)
    pipeline = input_pipeline.create_train_dataset(config, global_batch_size=12)
    return [
      list(np.round(b["image"][:, 0, 0, 0] / 20).astype(int))
      for b in take(pipeline, 2)
    ]

  first, second = file_order()
  assert sorted(first) == sorted(second) == list(range(12))
  assert first != second and first != list(range(12))
  assert file_order(shuffle=False) == [list(range(12))] * 2


def test_same_seed_same_batches_other_seed_other_batches(photo_folder):
  config = tiny_config(data_root=str(photo_folder))
  first = take(
    input_pipeline.create_train_dataset(config, global_batch_size=4), 3
  )
  again = take(
    input_pipeline.create_train_dataset(config, global_batch_size=4), 3
  )
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  config.seed = 4
  other = take(
    input_pipeline.create_train_dataset(config, global_batch_size=4), 3
  )
  assert not np.array_equal(first[0]["bbox"], other[0]["bbox"])
  assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_two_processes_split_each_global_batch(photo_folder):
  config = tiny_config(data_root=str(photo_folder))
  steps = 4
  single = take(
    input_pipeline.create_train_dataset(config, global_batch_size=6), steps
  )
  parts = [
    take(
      input_pipeline.create_train_dataset(
        config, global_batch_size=6, process_index=p, process_count=2
      ),
      steps,
    )
    for p in range(2)
  ]
  for step in range(steps):
    assert not np.array_equal(parts[0][step]["bbox"], parts[1][step]["bbox"])
    for key in single[step]:
      assert parts[0][step][key].shape[0] == 3
      joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
      np.testing.assert_array_equal(joined, single[step][key])


def test_start_step_resumes_at_the_same_batch(photo_folder):
  config = tiny_config(data_root=str(photo_folder))
  uninterrupted = take(
    input_pipeline.create_train_dataset(config, global_batch_size=3), 7
  )
  resumed = take(
    input_pipeline.create_train_dataset(
      config, global_batch_size=3, start_step=4
    ),
    3,
  )
  for a, b in zip(uninterrupted[4:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_holes_are_those_of_sample_holes(photo_folder):
  """The pipeline draws its holes with `holes`' code, position by position
  (whichever image the shuffle puts there)."""
  config = tiny_config(data_root=str(photo_folder))
  batches = take(
    input_pipeline.create_train_dataset(config, global_batch_size=5), 2
  )
  expected = sample_holes(config.seed, 10, 64, 24, 8, 4)
  np.testing.assert_array_equal(
    np.concatenate([b["bbox"] for b in batches]), expected
  )


def test_eval_is_repeatable_padded_and_equal_across_processes(photo_folder):
  config = tiny_config(data_root=str(photo_folder))
  pipeline = input_pipeline.create_eval_dataset(config, global_batch_size=6)
  first, second = list(pipeline), list(pipeline)
  assert len(first) == pipeline.num_batches == 2
  for a, b in zip(first, second):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
    check_batch(a, 64, 32, 6)
  # 8 files: 7 readable, corrupt.jpg (index 0 in sorted order) is invalid.
  index = np.concatenate([b["index"] for b in first])
  valid = np.concatenate([b["valid"] for b in first])
  np.testing.assert_array_equal(index, list(range(8)) + [-1] * 4)
  assert valid.sum() == 7 and (valid[8:] == 0).all()
  assert pipeline.skipped_files() == 2  # one per pass
  parts = [
    list(
      input_pipeline.create_eval_dataset(
        config, global_batch_size=6, process_index=p, process_count=2
      )
    )
    for p in range(2)
  ]
  assert len(parts[0]) == len(parts[1]) == 2
  for step in range(2):
    joined = np.concatenate([parts[0][step]["image"], parts[1][step]["image"]])
    np.testing.assert_array_equal(joined, first[step]["image"])


def test_nondeterministic_mode_still_yields_valid_batches(photo_folder):
  config = tiny_config(data_root=str(photo_folder), deterministic=False)
  for batch in take(
    input_pipeline.create_train_dataset(config, global_batch_size=4), 2
  ):
    check_batch(batch, 64, 32, 4)


def test_source_errors_are_clear(tmp_path):
  with pytest.raises(ValueError, match=str(tmp_path)):
    input_pipeline.create_train_dataset(
      tiny_config(data_root=str(tmp_path)), global_batch_size=2
    )
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=missing):
    input_pipeline.create_train_dataset(
      tiny_config(data_root=missing), global_batch_size=2
    )
  config = tiny_config(source="image_list", image_list=missing)
  with pytest.raises(FileNotFoundError, match=missing):
    input_pipeline.create_train_dataset(config, global_batch_size=2)
  config = tiny_config(
    source="tfds", tfds_name="places365_small", tfds_data_dir=missing
  )
  with pytest.raises(FileNotFoundError, match="places365_small"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)
  config = tiny_config(
    data_root=str(tmp_path), hole_overrides=dict(min_margin=30)
  )
  with pytest.raises(ValueError, match="config.holes.min_margin"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)


def test_only_unreadable_files_stop_training_with_the_path(tmp_path):
  for i in range(3):
    (tmp_path / f"bad{i}.png").write_bytes(b"garbage")
  config = tiny_config(data_root=str(tmp_path))
  with pytest.raises(
    Exception, match=r"unreadable images in a row.*bad\d\.png"
  ):
    take(input_pipeline.create_train_dataset(config, global_batch_size=2), 1)
