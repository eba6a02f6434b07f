"""What `train_and_evaluate` refuses or survives before and during a run:
a bad or empty source (named by its field, before the workdir exists), a
workdir another run holds, a failing periodic evaluation (reported, the
run goes on), and a workdir already past `total_steps`."""

from __future__ import annotations

import logging

import pytest

from glcic_jax import checkpointing, train, workdir_lock
from tests.test_train import tiny
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
