"""Evaluation: mmagic's metrics on composited outputs, reproducible, the
same on 1 and 8 devices, padding ignored."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from glcic_jax import (
  evaluate,
  input_pipeline,
  metrics,
  models,
  sharding,
  train_state,
)
from tests.test_train_steps import load_config


@pytest.fixture(scope="module")
def setup():
  config = load_config("tiny")
  config.per_device_batch_size = 1  # 8 per global batch: 2 held-out photos
  config.eval_data.skimage_split = "all"  # 17 photos: 3 batches, 7 padded
  state = train_state.init_state(config, jax.random.PRNGKey(3))
  generator, _ = models.build_models(config.model)
  return config, generator, jax.device_get(state.generator_variables())


def test_metrics_equal_numpy_float64_per_image(setup):
  config, generator, g_vars = setup
  mesh = sharding.create_mesh()
  result = evaluate.evaluate(generator, g_vars, config, mesh)
  assert result.num_images == 17
  # The same completions, image by image, with the float64 NumPy metrics.
  pipeline = input_pipeline.create_eval_dataset(config, global_batch_size=8)
  acc = {"l1_error": [], "psnr": [], "ssim": []}
  for batch in pipeline:
    x = np.concatenate(
      [batch["image"] * (1 - batch["mask"]), batch["mask"]], -1
    )
    fake = np.asarray(generator.apply(g_vars, x, train=False))
    fake_img = batch["image"] * (1 - batch["mask"]) + fake * batch["mask"]
    for i in np.flatnonzero(batch["valid"]):
      gt = metrics.to_pixels(batch["image"][i].astype(np.float64))
      pred = metrics.to_pixels(fake_img[i].astype(np.float64))
      acc["l1_error"].append(metrics.l1_error(gt, pred, batch["mask"][i]))
      acc["psnr"].append(metrics.psnr(gt, pred))
      acc["ssim"].append(metrics.ssim(gt, pred))
  assert len(acc["psnr"]) == 17
  np.testing.assert_allclose(
    result.l1_error, np.mean(acc["l1_error"]), atol=1e-4
  )
  np.testing.assert_allclose(result.psnr, np.mean(acc["psnr"]), atol=1e-3)
  np.testing.assert_allclose(result.ssim, np.mean(acc["ssim"]), atol=1e-4)
  assert result.grid.dtype == np.uint8 and result.grid.shape[1] == 3 * 32


def test_reproducible_and_device_count_independent(setup, tmp_path):
  config, generator, g_vars = setup
  config = config.copy_and_resolve_references()
  config.per_device_batch_size = 8  # global 8 on one device, 64 on eight
  one = sharding.create_mesh(jax.devices()[:1])
  eight = sharding.create_mesh()
  a = evaluate.evaluate(generator, g_vars, config, one)
  b = evaluate.evaluate(generator, g_vars, config, one)
  config.per_device_batch_size = 1
  c = evaluate.evaluate(generator, g_vars, config, eight)
  assert a.scalars() == b.scalars()
  for k in ("l1_error", "psnr", "ssim"):
    np.testing.assert_allclose(getattr(c, k), getattr(a, k), rtol=1e-5)
  assert a.num_images == c.num_images == 17
  path = evaluate.write_results(a, str(tmp_path), step=3, seed=0)
  import json

  with open(path) as f:
    record = json.load(f)
  assert record["checkpoint_step"] == 3 and record["num_images"] == 17
  assert set(record) >= {"l1_error", "psnr", "ssim", "seed", "source"}
