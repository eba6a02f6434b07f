"""The synthetic source: real holes, device images, topology independent."""

from __future__ import annotations

import itertools

import jax
import numpy as np

from glcic_jax import sharding
from glcic_jax.data import holes, synthetic
from tests.test_train import tiny


def take(config, mesh, start, count, batch=16):
  gen = synthetic.batches(
    config, mesh, global_batch_size=batch, start_step=start
  )
  return [jax.device_get(b) for b in itertools.islice(gen, count)]


def test_holes_follow_the_spec_and_images_cover_the_levels():
  config = tiny()
  (batch,) = take(config, sharding.create_mesh(), 0, 1)
  spec = holes.HoleSpec.from_config(config)
  assert batch["image"].dtype == np.uint8
  assert batch["image"].shape == (16, 32, 32, 3)
  assert batch["image"].min() == 0 and batch["image"].max() == 255
  top, left, h, w = batch["bbox"].T
  side = spec.max_bbox_shape[0]
  assert np.all((h <= side) & (h >= side - spec.max_bbox_delta[0] // 2))
  assert np.all(top >= spec.min_margin[0]) and np.all(top + h <= 32)
  np.testing.assert_array_equal(
    batch["local_bbox"],
    holes.local_boxes(batch["bbox"], spec.image_size, config.local_size),
  )


def test_a_step_is_the_same_whatever_the_start_and_the_devices():
  config = tiny()
  on_8 = take(config, sharding.create_mesh(), 0, 3)
  on_2 = take(config, sharding.create_mesh(jax.devices()[:2]), 2, 1)
  for key in ("image", "bbox", "local_bbox"):
    np.testing.assert_array_equal(on_8[2][key], on_2[0][key])
  assert not np.array_equal(on_8[0]["image"], on_8[1]["image"])
