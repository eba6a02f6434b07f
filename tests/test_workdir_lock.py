"""One writer per workdir: a second run is refused, naming the holder, and
a holder that died (SIGKILL included) leaves no lock behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from glcic_jax import workdir_lock
from tests.test_files import bucket  # noqa: F401  (fixture)

HOLD = """
import sys, time
from glcic_jax import workdir_lock
lock = workdir_lock.WorkdirLock(sys.argv[1], "holder-command")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(workdir) -> subprocess.Popen:
  """Another process that takes the lock of `workdir` and keeps it."""
  proc = subprocess.Popen(
    [sys.executable, "-c", HOLD, str(workdir)],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  holder = _holder(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirBusyError) as raised:
      workdir_lock.WorkdirLock(str(tmp_path)).acquire()
    message = str(raised.value)
    assert f"pid {holder.pid} (holder-command)" in message, message
    assert str(tmp_path) in message and "started 20" in message
  finally:
    holder.kill()
    holder.wait()


def test_a_killed_holder_leaves_no_lock(tmp_path, caplog):
  holder = _holder(tmp_path)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with caplog.at_level("WARNING"), workdir_lock.WorkdirLock(str(tmp_path)):
    text = (tmp_path / workdir_lock.LOCK_NAME).read_text()
    assert json.loads(text)["pid"] == os.getpid()
  assert f"pid {holder.pid} (holder-command)" in caplog.text  # taken over
  # Released: the next one takes it without a word about a previous run.
  caplog.clear()
  with caplog.at_level("WARNING"), workdir_lock.WorkdirLock(str(tmp_path)):
    pass
  assert "taking over" not in caplog.text


def test_remote_locks_beat_and_go_stale(bucket, monkeypatch, caplog):  # noqa: F811
  first = workdir_lock.WorkdirLock(bucket, "first")
  first.acquire()
  with pytest.raises(workdir_lock.WorkdirBusyError, match=r"\(first\)"):
    workdir_lock.WorkdirLock(bucket, "second").acquire()
  # A holder that stopped beating (killed) is stale after STALE_SECONDS.
  first._beating.set()
  later = time.time() + workdir_lock.STALE_SECONDS + 1
  monkeypatch.setattr(workdir_lock.time, "time", lambda: later)
  with caplog.at_level("WARNING"):
    second = workdir_lock.WorkdirLock(bucket, "second")
    second.acquire()
  assert "stale lock" in caplog.text and "(first)" in caplog.text
  second.release()
  third = workdir_lock.WorkdirLock(bucket, "third")
  third.acquire()
  third.release()


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("x")
  with pytest.raises(
    NotADirectoryError, match="a_file is a file, not a folder"
  ):
    workdir_lock.WorkdirLock(str(path)).acquire()
  assert path.read_text() == "x"
