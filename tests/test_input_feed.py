"""The device feed: order, prefetching, errors and signals while waiting."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest

from glcic_jax import input_feed, sharding


def host_batches(count, fetched, rows=8):
  for i in range(count):
    fetched.append(i)
    yield {"image": np.full((rows, 2), i, np.uint8)}


def test_batches_arrive_in_order_sharded_over_the_mesh_and_ahead():
  mesh = sharding.create_mesh()
  fetched = []
  with input_feed.DeviceFeed(host_batches(5, fetched), mesh, depth=2) as feed:
    first = feed.next()
    assert isinstance(first["image"], jax.Array)
    assert first["image"].sharding.is_equivalent_to(
      sharding.batch_sharded(mesh), 2
    )
    deadline = time.time() + 10
    while len(fetched) < 4 and time.time() < deadline:
      time.sleep(0.01)
    # Two batches queued and one being made while the consumer holds one.
    assert len(fetched) == 4
    rest = [int(b["image"][0, 0]) for b in feed]
  assert int(first["image"][0, 0]) == 0 and rest == [1, 2, 3, 4]


def test_a_source_error_is_raised_at_its_batch():
  def failing():
    yield {"image": np.zeros((8, 1), np.uint8)}
    raise OSError("unreadable: bad.png")

  with input_feed.DeviceFeed(failing(), sharding.create_mesh()) as feed:
    feed.next()
    with pytest.raises(OSError, match="bad.png"):
      feed.next()


def test_waiting_for_a_stalled_source_ends_when_asked():
  """A source that never answers (a FIFO, a hung file system) does not
  keep the loop from seeing a signal."""
  release = threading.Event()

  def stalled():
    release.wait()
    yield {"image": np.zeros((8, 1), np.uint8)}

  feed = input_feed.DeviceFeed(stalled(), sharding.create_mesh())
  asked = time.time() + 0.3
  assert feed.next(should_stop=lambda: time.time() > asked) is None
  release.set()
  feed.close()
