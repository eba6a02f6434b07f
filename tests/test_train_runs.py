"""Whole training runs that share nothing with test_train's straight run:
the NaN stop, SIGKILL / preemption and restart through the CLI, the README's
demo job, and config errors. Apart from test_train so that the two files'
long runs can go to different pytest-xdist workers."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from glcic_jax import checkpointing, train
from glcic_jax import config as config_lib
from tests.test_train import (
  REPO,
  assert_states_equal,
  cpu_env,
  final_params,
  tiny,
  train_cmd,
)


@pytest.mark.parametrize("log_every", [2, 100])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
  tmp_path, log_every
):
  """Losses are read at the log interval or before a save: with a log
  interval past the end, the save at step 8 finds step 5's NaN first."""
  config = tiny(**{"loss.gan_weight": float("nan"), "log_every": log_every})
  with pytest.raises(train.NonFiniteLossError, match="step 5"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path), save_every=4, keep=2)
  assert ckpt.all_steps() == [4]
  restored = final_params(str(tmp_path))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.g_params))


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="image_size=30"):
    config_lib.check_config(tiny(image_size=30))
  with pytest.raises(ValueError, match="model.global_num_convs=4"):
    config_lib.check_config(
      tiny(**{"model.global_num_convs": 4, "image_size": 24})
    )
  with pytest.raises(ValueError, match="compute_dtype"):
    config_lib.check_config(tiny(compute_dtype="float16"))


def wait_for_checkpoint(workdir, proc, newer_than=0, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if max(checkpointing.existing_steps(workdir) or [0]) > newer_than:
      return
    assert proc.poll() is None, "training exited early"
    time.sleep(0.2)
  raise AssertionError(f"no checkpoint after {newer_than} in {timeout}s")


def test_kill_and_preemption_then_restart_match_uninterrupted(tmp_path):
  """SIGKILL once a checkpoint exists (no chance to save, maybe mid-write),
  restart; SIGTERM (preemption) later: a checkpoint at the step reached,
  exit code 0; restart again. The run ends exactly where an uninterrupted
  run to the same step ends."""
  workdir = str(tmp_path / "interrupted")
  args = ["--config.checkpoint_every=2", "--config.keep_checkpoints=1000"]
  endless = "--config.total_steps=100000"
  quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  env = cpu_env(8)  # with conftest's compilation cache: restarts load the steps
  proc = subprocess.Popen(train_cmd(workdir, *args, endless), env=env, **quiet)
  try:
    wait_for_checkpoint(workdir, proc)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = max(checkpointing.existing_steps(workdir))

  proc = subprocess.Popen(train_cmd(workdir, *args, endless), env=env, **quiet)
  try:
    wait_for_checkpoint(workdir, proc, newer_than=killed_at + 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
  finally:
    proc.kill()
  stopped_at = max(checkpointing.existing_steps(workdir))
  assert stopped_at > killed_at + 2
  assert final_params(workdir).step == stopped_at

  total = stopped_at + 3  # the last restart trains 3 more steps
  done = subprocess.run(
    train_cmd(workdir, *args, f"--config.total_steps={total}"),
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert max(checkpointing.existing_steps(workdir)) == total
  want = train.train_and_evaluate(
    tiny(total_steps=total), str(tmp_path / "straight")
  )
  assert_states_equal(final_params(workdir, total), jax.device_get(want))


def test_demo_command_end_to_end_at_reduced_steps(tmp_path):
  """The README's main job through the real command, shortened: all three
  phases, a checkpoint, TensorBoard logs, an evaluation and
  completions.png, and a log a user can read: one line per log interval and
  per evaluation, no third-party chatter, and a last line saying where to
  look."""
  workdir = str(tmp_path / "demo")
  overrides = dict(
    per_device_batch_size=1,
    total_steps=6,
    checkpoint_every=6,
    eval_every=6,
    image_every=6,
    log_every=2,
  )
  cmd = [
    sys.executable,
    "-m",
    "glcic_jax.commands.train",
    f"--config={os.path.join(REPO, 'configs', 'demo.py')}",
    f"--workdir={workdir}",
    "--config.schedule.iter_tc=1",
    "--config.schedule.iter_td=3",
    *[f"--config.{k}={v}" for k, v in overrides.items()],
  ]
  done = subprocess.run(
    cmd, env=cpu_env(8), capture_output=True, text=True, check=False
  )
  log = done.stdout + done.stderr
  assert done.returncode == 0, log[-3000:]
  lines = log.strip().splitlines()
  steps = [line for line in lines if "] step " in line]
  assert [line.split("] step ")[1].split()[0] for line in steps] == [
    "2/6",
    "4/6",
    "6/6",
  ], log
  assert "generator:" in steps[0] and "loss_l1_hole" in steps[0], log
  assert "joint:" in steps[2] and "loss_g_fake" in steps[2], log
  assert sum("Evaluation at step 6 on 2 images" in line for line in lines) == 1
  for noise in ("PNG warning", "oneDNN", "CheckpointManager", "+---", "tpu"):
    assert noise not in log, (noise, log)
  assert len(lines) < 20, log
  assert lines[-1].endswith(f"see {workdir}/completions.png"), log

  assert checkpointing.existing_steps(workdir) == [6]
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  grid = np.asarray(Image.open(os.path.join(workdir, "completions.png")))
  assert grid.shape[1] == 3 * 64 and grid.shape[0] % 64 == 0
  with open(os.path.join(workdir, "eval", "step_6.json")) as f:
    record = json.load(f)
  assert record["num_images"] == 2  # the two held-out photos
  assert 0 < record["ssim"] <= 1 and record["psnr"] > 5


# What the GPU host lacks: the training command must not need any of it on
# the synthetic source.
_BLOCK_TENSORFLOW = (
  "import sys\n"
  "for name in ('tensorflow', 'tensorflow_datasets', 'clu'):\n"
  "  sys.modules[name] = None  # import fails, as where it is not installed\n"
  "from glcic_jax.commands import train\n"
  "train.run()\n"
)


def test_synthetic_source_trains_without_tensorflow_or_clu(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator

  workdir = str(tmp_path / "synthetic")
  args = train_cmd(workdir, "--config.data.source=synthetic")[3:]
  done = subprocess.run(
    [sys.executable, "-c", _BLOCK_TENSORFLOW, *args],
    env=cpu_env(8),
    capture_output=True,
    text=True,
    check=False,
  )
  log = done.stdout + done.stderr
  assert done.returncode == 0, log[-3000:]
  assert "] step 8/8 joint:" in log, log[-3000:]
  assert checkpointing.existing_steps(workdir) == [4, 8]
  (events,) = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  acc = event_accumulator.EventAccumulator(events)
  acc.Reload()
  assert [e.step for e in acc.Scalars("joint/loss_g_fake")] == [6, 8]
  assert "train/gt_masked_completion" in acc.Tags()["images"]
