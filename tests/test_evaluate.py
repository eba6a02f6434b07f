"""Evaluation: mmagic's metrics on composited outputs, reproducible, the
same on 1 and 8 devices, padding ignored; glcic-eval on real checkpoints
(ours and an imported mmagic-layout file)."""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np
import pytest
from absl import flags

from glcic_jax import (
  batches,
  evaluate,
  interop,
  metrics,
  models,
  sharding,
  weights,
)
from glcic_jax.commands import eval as eval_command
from glcic_jax.data import pipeline as input_pipeline
from tests import reference_metrics
from tests.inpaint.test_completer import save_tiny_checkpoint, tiny_state

TINY_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs/tiny.py")


@pytest.fixture(scope="module")
def setup():
  config, state = tiny_state()
  config.eval_data.skimage_split = "all"  # 17 photos: 3 batches, 7 padded
  generator, _ = models.build_models(
    config.model, batch_per_device=config.per_device_batch_size
  )
  return config, generator, state.generator_variables()


@pytest.fixture(scope="module")
def result_on_8(setup):
  config, generator, g_vars = setup
  return evaluate.evaluate(generator, g_vars, config, sharding.create_mesh())


def test_metrics_equal_numpy_float64_per_image(setup, result_on_8):
  config, generator, g_vars = setup
  result = result_on_8
  assert result.num_images == 17
  # The same completions, image by image, with the float64 NumPy metrics.
  pipeline = input_pipeline.create_eval_dataset(config, global_batch_size=8)
  acc = {"l1_error": [], "psnr": [], "ssim": []}
  complete = jax.jit(lambda v, x: generator.apply(v, x, train=False))
  for shipped in pipeline:
    batch = jax.device_get(batches.expand(shipped))
    x = np.concatenate(
      [batch["image"] * (1 - batch["mask"]), batch["mask"]], -1
    )
    fake = np.asarray(complete(g_vars, x))
    fake_img = batch["image"] * (1 - batch["mask"]) + fake * batch["mask"]
    for i in np.flatnonzero(batch["valid"]):
      gt = metrics.to_pixels(batch["image"][i].astype(np.float64))
      pred = metrics.to_pixels(fake_img[i].astype(np.float64))
      acc["l1_error"].append(
        reference_metrics.l1_error(gt, pred, batch["mask"][i])
      )
      acc["psnr"].append(reference_metrics.psnr(gt, pred))
      acc["ssim"].append(reference_metrics.ssim(gt, pred))
  assert len(acc["psnr"]) == 17
  np.testing.assert_allclose(
    result.l1_error, np.mean(acc["l1_error"]), atol=1e-4
  )
  np.testing.assert_allclose(result.psnr, np.mean(acc["psnr"]), atol=1e-3)
  np.testing.assert_allclose(result.ssim, np.mean(acc["ssim"]), atol=1e-4)
  # 8 rows (the first batch's real images) of gt | masked | completion.
  assert result.grid.dtype == np.uint8
  assert result.grid.shape == (8 * 32, 3 * 32, 3)


def test_reproducible_and_device_count_independent(
  setup, result_on_8, tmp_path
):
  config, generator, g_vars = setup
  config = config.copy_and_resolve_references()
  config.per_device_batch_size = 8  # one device: the same global batch of 8
  one = sharding.create_mesh(jax.devices()[:1])
  a = evaluate.evaluate(generator, g_vars, config, one)
  b = evaluate.evaluate(generator, g_vars, config, one)
  c = result_on_8
  assert a.scalars() == b.scalars()
  for k in ("l1_error", "psnr", "ssim"):
    np.testing.assert_allclose(getattr(c, k), getattr(a, k), rtol=1e-5)
  assert a.num_images == c.num_images == 17
  np.testing.assert_array_equal(a.grid, c.grid)
  path = evaluate.write_results(a, str(tmp_path), step=3, seed=0)
  assert path == str(tmp_path / "eval" / "step_3.json")
  with open(path) as f:
    record = json.load(f)
  assert record["checkpoint_step"] == 3 and record["num_images"] == 17
  assert record["psnr"] == a.psnr
  assert set(record) >= {"l1_error", "psnr", "ssim", "seed", "source"}
  assert os.path.isfile(tmp_path / "eval" / "step_3.png")
  other = evaluate.write_results(a, str(tmp_path / "r.json"), step=3, seed=0)
  assert other == str(tmp_path / "r.json") and os.path.isfile(other)
  with pytest.raises(ValueError, match="no images"):
    evaluate.evaluate(generator, g_vars, config, one, num_batches=0)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(path, step=5)
  return path


def _run_cli(argv: list[str]) -> None:
  """glcic-eval's own flag definitions and main, on a private FlagValues."""
  fv = flags.FlagValues()
  eval_command.define_flags(fv, sys_argv=argv)
  eval_command.main(fv(argv), fv)


def test_cli_numbers_and_files(workdir, result_on_8, tmp_path, capsys):
  output = str(tmp_path / "out" / "all.json")
  _run_cli(
    [
      "glcic-eval",
      f"--workdir={workdir}",
      f"--config={TINY_CONFIG}",
      "--config.per_device_batch_size=1",
      "--split=all",
      f"--output={output}",
      f"--tensorboard_dir={tmp_path / 'tb'}",
    ]
  )
  assert "PSNR" in capsys.readouterr().out
  with open(output) as f:
    record = json.load(f)
  # The checkpoint holds the weights `result_on_8` evaluated.
  assert record["num_images"] == 17 and record["checkpoint_step"] == 5
  for k in ("l1_error", "psnr", "ssim"):
    np.testing.assert_allclose(record[k], getattr(result_on_8, k), rtol=1e-6)
  assert os.path.isfile(output[: -len(".json")] + ".png")
  # TensorBoard events only where asked: none in the workdir.
  events = os.listdir(tmp_path / "tb")
  assert any(name.startswith("events.out.tfevents") for name in events)
  in_workdir = glob.glob(os.path.join(workdir, "**", "events.out.*"))
  assert not in_workdir, in_workdir


def test_an_unwritable_output_fails_before_evaluating(workdir, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(OSError, match="Cannot write the evaluation results"):
    evaluate.evaluate_checkpoint(
      workdir, output=str(blocker / "sub" / "r.json"), num_batches=10**9
    )


def test_non_finite_metrics_are_written_as_null(tmp_path):
  result = evaluate.EvalResult(
    l1_error=float("nan"),
    psnr=float("inf"),
    ssim=0.5,
    num_images=1,
    skipped_files=0,
    grid=np.zeros((4, 4, 3), np.uint8),
  )
  path = evaluate.write_results(result, str(tmp_path), step=3, seed=0)
  text = open(path).read()
  assert "NaN" not in text and "Infinity" not in text
  record = json.loads(text)
  assert record["l1_error"] is None and record["psnr"] is None
  assert record["ssim"] == 0.5


def test_default_config_reproducible_and_errors(workdir, tmp_path):
  a = evaluate.evaluate_checkpoint(workdir)
  b = evaluate.evaluate_checkpoint(workdir)
  assert a == b
  # The saved config's eval data: the 2 held-out photos.
  assert a["checkpoint_step"] == 5 and a["num_images"] == 2
  assert a["json_path"] == os.path.join(workdir, "eval", "step_5.json")
  with open(a["json_path"]) as f:
    assert json.load(f) == {k: v for k, v in a.items() if k != "json_path"}
  with pytest.raises(
    FileNotFoundError, match=r"step 7.*available steps: \[5\]"
  ):
    evaluate.evaluate_checkpoint(workdir, step=7)
  with pytest.raises(FileNotFoundError, match="No checkpoint.*none"):
    evaluate.evaluate_checkpoint(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match=r"\.json"):
    evaluate.evaluate_checkpoint(workdir, output=str(tmp_path / "results"))


def test_imported_checkpoint_evaluates_without_training(workdir, tmp_path):
  """The same weights exported as an mmagic .pth and brought back with
  glcic-import evaluate exactly as the checkpoint they came from."""
  config, state = tiny_state()
  pth = tmp_path / "mmagic_layout.pth"
  interop.write_state_dict(
    pth,
    interop.gl_state_dict(
      state.generator_variables(), state.disc_variables(), "bgr"
    ),
  )
  imported = str(tmp_path / "imported")
  weights.import_checkpoint(str(pth), imported, config, step=300_000)
  record = evaluate.evaluate_checkpoint(imported)
  assert record["checkpoint_step"] == 300_000
  native = evaluate.evaluate_checkpoint(workdir)
  for k in ("l1_error", "psnr", "ssim", "num_images"):
    assert record[k] == native[k]
  assert 0 < record["ssim"] < 1
