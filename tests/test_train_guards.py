"""What `train_and_evaluate` refuses or survives before and during a run:
a bad or empty source (named by its field, before the workdir exists), a
workdir another run holds, a failing periodic evaluation (reported, the
run goes on), a workdir already past `total_steps`, and an input that
never comes (an error naming the blocking file, or a signal that stops the
wait)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

import pytest

from glcic_jax import checkpointing, train, workdir_lock
from tests.test_train import cpu_env, tiny, train_cmd
from tests.test_workdir_lock import _holder


def test_a_bad_eval_source_fails_before_the_workdir_exists(tmp_path):
  config = tiny(eval_every=4)
  config.eval_data.source = "folder"
  config.eval_data.data_root = str(tmp_path / "no_such_folder")
  workdir = tmp_path / "w"
  with pytest.raises(FileNotFoundError, match=r"config\.eval_data\.data_root"):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_an_empty_data_folder_fails_before_the_workdir_exists(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("not an image")
  config = tiny(**{"data.source": "folder"})
  config.data.data_root = str(tmp_path / "empty")
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match="holds no images"):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_a_workdir_in_use_is_refused_before_any_work(tmp_path):
  holder = _holder(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirBusyError, match=str(holder.pid)):
      train.train_and_evaluate(tiny(), str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  assert checkpointing.existing_steps(tmp_path) == []


def test_a_failing_evaluation_costs_no_training(tmp_path, caplog):
  """Every eval image is unreadable: the evaluations at steps 4 and 8 fail,
  are logged, and the run still trains and saves to the end. A rerun with
  total_steps below the saved step says there is nothing to train."""
  bad = tmp_path / "bad_eval"
  bad.mkdir()
  for name in ("a.png", "b.jpg"):
    (bad / name).write_bytes(b"not an image at all")
  config = tiny(eval_every=4)
  config.eval_data.source = "folder"
  config.eval_data.data_root = str(bad)
  workdir = str(tmp_path / "w")
  with caplog.at_level(logging.WARNING):
    state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 8
  assert checkpointing.existing_steps(workdir) == [4, 8]
  failures = [r for r in caplog.records if "Evaluation at step" in r.message]
  assert [r.levelno for r in failures] == [logging.ERROR] * 2, caplog.text
  assert "no images evaluated" in failures[0].getMessage()

  caplog.clear()
  with caplog.at_level(logging.WARNING):
    again = train.train_and_evaluate(tiny(total_steps=6), workdir)
  assert int(again.step) == 8
  assert "Nothing to train" in caplog.text and "holds step 8" in caplog.text


@pytest.fixture
def list_with_a_fifo(tmp_path):
  """An image list whose first entry is a FIFO named like a PNG: reading
  it blocks for ever."""
  import skimage.data

  root = tmp_path / "images"
  root.mkdir()
  os.mkfifo(root / "pipe.png")
  photos = os.path.dirname(skimage.data.__file__)
  for name in ("astronaut.png", "camera.png", "coffee.png"):
    os.symlink(os.path.join(photos, name), root / name)
  image_list = tmp_path / "list.txt"
  image_list.write_text("pipe.png\nastronaut.png\ncamera.png\ncoffee.png\n")
  return [
    "--config.data.source=image_list",
    f"--config.data.image_list={image_list}",
    f"--config.data.data_root={root}",
    "--config.data.shuffle=False",  # the FIFO is the first example read
  ], root / "pipe.png"


def test_a_stalled_input_is_an_error_naming_the_file(
  tmp_path, list_with_a_fifo
):
  flags, fifo = list_with_a_fifo
  done = subprocess.run(
    train_cmd(tmp_path / "w", *flags, "--config.data.input_timeout_s=3"),
    env=cpu_env(1),
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert "InputStalledError: No batch from the input pipeline" in last, last
  assert f"it reads {fifo}, which is not a regular file" in last


def test_a_signal_stops_a_run_waiting_for_input(tmp_path, list_with_a_fifo):
  flags, _ = list_with_a_fifo
  log = tmp_path / "log.txt"
  with open(log, "w") as out:
    proc = subprocess.Popen(
      train_cmd(tmp_path / "w", *flags),
      env=cpu_env(1),
      stdout=out,
      stderr=subprocess.STDOUT,
    )
    try:
      deadline = time.time() + 240
      while "Config tiny:" not in log.read_text():  # waiting for input
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.5)
      time.sleep(3)
      proc.send_signal(signal.SIGTERM)
      assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
      proc.kill()
  assert "checkpoint none to save: no step trained" in log.read_text()
