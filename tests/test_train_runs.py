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
import time

import jax
import numpy as np
import pytest
from PIL import Image

from glcic_jax import checkpointing, config_base, train
from tests.test_train import (
  assert_states_equal,
  cpu_env,
  final_params,
  tiny,
  train_cmd,
)
from tests.test_train_steps import load_config


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = tiny(**{"loss.gan_weight": float("nan")})  # NaN once joint starts
  with pytest.raises(train.NonFiniteLossError, match="step 5"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path), save_every=4, keep=2)
  assert ckpt.all_steps() == [4]
  restored = final_params(str(tmp_path))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.g_params))


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="image_size=30"):
    config_base.check_config(tiny(image_size=30))
  with pytest.raises(ValueError, match="model.global_num_convs=4"):
    config_base.check_config(
      tiny(**{"model.global_num_convs": 4, "image_size": 24})
    )
  with pytest.raises(ValueError, match="compute_dtype"):
    config_base.check_config(tiny(compute_dtype="float16"))


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


def test_demo_config_end_to_end_at_reduced_steps(tmp_path):
  """The README's main job, shortened: all three phases, a checkpoint,
  TensorBoard logs, an evaluation and completions.png."""
  config = load_config("demo")
  config.per_device_batch_size = 1
  config.total_steps = 6
  config.schedule.iter_tc, config.schedule.iter_td = 1, 3
  config.checkpoint_every = config.eval_every = config.image_every = 6
  config.log_every = 2
  workdir = str(tmp_path)
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 6
  assert checkpointing.existing_steps(workdir) == [6]
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  grid = np.asarray(Image.open(os.path.join(workdir, "completions.png")))
  assert grid.shape[1] == 3 * 64 and grid.shape[0] % 64 == 0
  with open(os.path.join(workdir, "eval", "step_6.json")) as f:
    record = json.load(f)
  assert record["num_images"] == 2  # the two held-out photos
  assert 0 < record["ssim"] <= 1 and record["psnr"] > 5
  assert record["checkpoint_step"] == 6
