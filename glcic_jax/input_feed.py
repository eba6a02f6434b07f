"""Batches on the devices before the step that needs them.

A background thread takes this process's host batches (the tf.data
pipeline's numpy rows), makes the global arrays over the mesh
(`sharding.global_batch`, whose host-to-device copies run asynchronously)
and keeps `depth` of them queued. So the copy of batch k+1 overlaps step k,
and neither the pipeline's `next` nor the transfer sits on the loop's
dispatch path, as `flax.jax_utils.prefetch_to_device` and big_vision's
prefetching iterator do it.

The loop waits for a batch in short slices, so Python's signal handlers
(preemption) run while it waits, and a wait that `should_stop` ends gives
None instead of a batch. An error in the thread (an unreadable image, a
stopped pipeline) is raised in the loop at the batch it would have been. A
wait longer than `stall_seconds` is an `InputStalledError` that says what
the stalled batch reads (`describe_stall`): a read that never returns (a
FIFO, a hung network mount) would otherwise hang the run without a word.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
from jax.sharding import Mesh

from glcic_jax import sharding

# How long one slice of waiting lasts: the delay before a signal is seen.
_POLL_SECONDS = 0.1
_END = object()


class InputStalledError(RuntimeError):
  """No batch came from the input pipeline for too long."""


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


def _on_mesh(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Host rows become global arrays; arrays already global (the synthetic
  source makes its images on the devices) pass as they are."""
  host = {k: v for k, v in batch.items() if not isinstance(v, jax.Array)}
  return {**batch, **sharding.global_batch(host, mesh)} if host else batch


class DeviceFeed:
  """Iterates global batches `depth` ahead of the consumer.

  `skipped_files` is the source's count of replaced images (read from the
  source, so it counts what the thread has fetched so far).
  """

  def __init__(
    self,
    local_batches: Iterable[dict[str, Any]],
    mesh: Mesh,
    *,
    depth: int = 2,
    skipped_files: Callable[[], int] = lambda: 0,
    stall_seconds: float = 0,
    describe_stall: Callable[[int], str] = lambda k: "",
  ):
    if depth < 1:
      raise ValueError(f"prefetch depth {depth} must be >= 1")
    self.skipped_files = skipped_files
    self._stall_seconds = stall_seconds  # 0: wait for ever
    self._describe_stall = describe_stall
    self._taken = 0
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(
      target=self._fill,
      args=(iter(local_batches), mesh),
      name="glcic-device-feed",
      daemon=True,
    )
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=_POLL_SECONDS)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self, batches: Iterator[dict[str, Any]], mesh: Mesh) -> None:
    try:
      for batch in batches:
        if not self._put(_on_mesh(batch, mesh)):
          return
      self._put(_END)
    except BaseException as e:  # noqa: BLE001  re-raised in the consumer
      self._put(_Failure(e))

  def next(
    self, should_stop: Callable[[], bool] = lambda: False
  ) -> dict[str, jax.Array] | None:
    """The next global batch; None if `should_stop()` turned true while
    waiting. Raises StopIteration at the end of a finite source, and
    InputStalledError after `stall_seconds` without a batch."""
    started = time.monotonic()
    while True:
      try:
        item = self._queue.get(timeout=_POLL_SECONDS)
        break
      except queue.Empty:
        if should_stop():
          return None
        waited = time.monotonic() - started
        if self._stall_seconds and waited > self._stall_seconds:
          raise InputStalledError(
            f"No batch from the input pipeline for {waited:.0f} s "
            f"(batch {self._taken} of this run); "
            f"{self._describe_stall(self._taken)}"
          ) from None
    if item is _END:
      self._queue.put(_END)  # later calls end too
      raise StopIteration
    if isinstance(item, _Failure):
      raise item.error
    self._taken += 1
    return item

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    while True:
      try:
        yield self.next()
      except StopIteration:
        return

  def close(self) -> None:
    """Stops the thread. It ends once the batch it is fetching is done; a
    fetch that never returns (a blocking read) is left to the daemon
    thread, not waited for beyond a moment."""
    self._stop.set()
    self._thread.join(timeout=2)

  def __enter__(self) -> DeviceFeed:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
