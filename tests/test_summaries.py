"""TensorBoard event files written without TensorFlow."""

from __future__ import annotations

import glob
import os

import numpy as np

from glcic_jax import summaries


def test_event_file_writer_writes_what_tensorboard_reads(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator

  writer = summaries._EventFileWriter(str(tmp_path))
  with summaries.flushing(writer):
    writer.write_scalars(3, {"joint/loss": 0.5, "images_per_second": 12})
    grid = np.zeros((1, 4, 6, 3), np.uint8)
    grid[0, :, :3] = 255
    writer.write_images(3, {"train/grid": grid})
  writer.close()
  (events,) = glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
  acc = event_accumulator.EventAccumulator(events)
  acc.Reload()
  assert acc.Scalars("joint/loss")[0].value == 0.5
  assert acc.Scalars("images_per_second")[0].step == 3
  (image,) = acc.Images("train/grid")
  assert (image.width, image.height) == (6, 4)
