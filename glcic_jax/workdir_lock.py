"""One writer per workdir: the lock a training run (or an import) holds.

Two runs writing one workdir restore each other's steps and overwrite them
with another config, or both crash at the first save. So a run takes the
workdir's lock before it restores anything, and a second run meets a clear
error naming the holder (host, pid, command, start time).

A lock must never outlive its run, or a crash would lock the user out:

- Local workdirs: an `fcntl.flock` on `W/.glcic-lock`, which the kernel
  releases when the holder exits in any way (SIGKILL included). The file's
  text only says who holds it; a file whose flock is free is stale.
- Remote workdirs (gs://, s3://: no flock there): the holder rewrites the
  lock file every `HEARTBEAT_SECONDS`; a lock whose heartbeat is older than
  `STALE_SECONDS` is stale (a killed run stops beating).

With several processes, process 0 holds the lock for the run and every
process learns whether it got it, so all start or all fail with the error.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import jax
from absl import logging
from etils import epath

from glcic_jax import files, multihost

LOCK_NAME = ".glcic-lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 180.0


class WorkdirBusyError(RuntimeError):
  """Another run holds the workdir's lock."""


def _holder_text(workdir: str, command: str) -> str:
  now = time.time()
  return json.dumps(
    {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "command": command,
      "started": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(
        timespec="seconds"
      ),
      "heartbeat": now,
      "workdir": workdir,
    }
  )


def describe_holder(text: str) -> str:
  """`host H, pid P (command), started T` from a lock file's text."""
  try:
    h: dict[str, Any] = json.loads(text)
    return (
      f"host {h['host']}, pid {h['pid']} ({h['command']}), started "
      f"{h['started']}"
    )
  except (ValueError, KeyError, TypeError):
    return f"unknown holder ({text[:80]!r})"


class WorkdirLock:
  """The lock of `workdir`, taken by `acquire` (on every process) and
  released by `release` or when the process ends."""

  def __init__(self, workdir: str, command: str = ""):
    self.workdir = os.fspath(workdir)
    self.command = command or os.path.basename(sys.argv[0])
    self._path = epath.Path(self.workdir) / LOCK_NAME
    self._fd: int | None = None
    self._beating: threading.Event | None = None

  def acquire(self) -> None:
    """Takes the lock (process 0) and tells every process the outcome;
    raises `WorkdirBusyError` everywhere if it is held elsewhere."""
    error = None
    if jax.process_index() == 0:
      try:
        self._take()
      except (WorkdirBusyError, NotADirectoryError) as e:
        error = e
    if multihost.everywhere(error is None):
      return
    self.release()
    if error is None:
      error = WorkdirBusyError(
        f"Workdir {self.workdir} is locked by another run (process 0 says "
        "which)."
      )
    raise error

  def _take(self) -> None:
    workdir = self._path.parent
    if workdir.exists() and not workdir.is_dir():
      raise NotADirectoryError(
        f"--workdir {self.workdir} is a file, not a folder"
      )
    workdir.mkdir(parents=True, exist_ok=True)
    if files.is_remote(self.workdir):
      self._take_remote()
    else:
      self._take_local()

  def _take_local(self) -> None:
    fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      text = os.pread(fd, 4096, 0).decode(errors="replace")
      os.close(fd)
      raise WorkdirBusyError(self._busy_message(text)) from None
    previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if previous:
      logging.warning(
        "Workdir %s: taking over the lock of a run that ended without "
        "releasing it (%s).",
        self.workdir,
        describe_holder(previous),
      )
    text = _holder_text(self.workdir, self.command).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)
    self._fd = fd

  def _take_remote(self) -> None:
    if self._path.exists():
      text = self._path.read_text()
      try:
        age = time.time() - float(json.loads(text)["heartbeat"])
      except (ValueError, KeyError, TypeError):
        age = STALE_SECONDS + 1
      if age <= STALE_SECONDS:
        raise WorkdirBusyError(self._busy_message(text))
      logging.warning(
        "Workdir %s: taking over a stale lock (no heartbeat for %.0f s: %s).",
        self.workdir,
        age,
        describe_holder(text),
      )
    files.write_text(self._path, _holder_text(self.workdir, self.command))
    self._beating = threading.Event()
    threading.Thread(
      target=self._beat, args=(self._beating,), name="glcic-lock", daemon=True
    ).start()

  def _beat(self, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
      try:
        text = json.loads(self._path.read_text())
        text["heartbeat"] = time.time()
        files.write_text(self._path, json.dumps(text))
      except Exception as e:  # noqa: BLE001  a missed beat is not fatal
        logging.warning("Workdir lock heartbeat failed: %s", e)

  def _busy_message(self, text: str) -> str:
    return (
      f"Workdir {self.workdir} is in use by another run: "
      f"{describe_holder(text)}. Wait for it to finish or stop it, or use "
      "another --workdir (lock file: "
      f"{self._path})."
    )

  def release(self) -> None:
    """Gives the lock up (a remote lock file is removed)."""
    if self._fd is not None:
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
    if self._beating is not None:
      self._beating.set()
      self._beating = None
      try:
        self._path.unlink()
      except OSError as e:
        logging.warning("Could not remove the lock file %s: %s", self._path, e)

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.release()
