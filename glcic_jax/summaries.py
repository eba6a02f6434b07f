"""TensorBoard summaries of a run, with or without TensorFlow.

clu's writers are the project's summary writers, but `clu.metric_writers`
imports TensorFlow on import. A machine that trains on the synthetic
source without TensorFlow (the GPU host this project measures on) writes
the same event files through the `tensorboard` package's own event
writer instead; TensorBoard reads both alike.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np


class _NoWriter:
  """What processes other than 0 write: nothing."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class _EventFileWriter(_NoWriter):
  """Scalars and PNG images as TensorBoard event records, no TensorFlow."""

  def __init__(self, logdir: str):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    self._writer = EventFileWriter(logdir)

  def _add(self, step: int, values: list) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=values)
    self._writer.add_event(
      event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
    )

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    from tensorboard.compat.proto import summary_pb2

    self._add(
      step,
      [
        summary_pb2.Summary.Value(tag=k, simple_value=float(v))
        for k, v in scalars.items()
      ],
    )

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """Each value is [N, H, W, C] uint8; the first image is written."""
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2

    values = []
    for tag, batch in images.items():
      pixels = np.asarray(batch)[0]
      encoded = io.BytesIO()
      Image.fromarray(
        pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels
      ).save(encoded, format="PNG")
      image = summary_pb2.Summary.Image(
        height=pixels.shape[0],
        width=pixels.shape[1],
        colorspace=pixels.shape[2],
        encoded_image_string=encoded.getvalue(),
      )
      values.append(summary_pb2.Summary.Value(tag=tag, image=image))
    self._add(step, values)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def tensorboard_writer(logdir: str) -> Any:
  """A writer of TensorBoard summaries in `logdir` (`write_scalars`,
  `write_images`, `flush`, `close`), written by process 0 only and not
  echoed to the log (the loop logs its own one line per interval)."""
  if jax.process_index() > 0:
    return _NoWriter()
  try:  # clu's writers import TensorFlow
    from clu import metric_writers
  except ImportError:  # no TensorFlow or no clu (the GPU host)
    return _EventFileWriter(logdir)
  return metric_writers.AsyncWriter(metric_writers.SummaryWriter(logdir))


@contextlib.contextmanager
def flushing(writer: Any) -> Iterator[Any]:
  """Flushes the writer when the block ends, however it ends."""
  try:
    yield writer
  finally:
    writer.flush()
