"""A picture of what the generator is fed: masked inputs with their hole
and local-discriminator boxes (`glcic-preview-data`).

Each cell is a masked training (or evaluation) input, image * (1 - mask),
so the hole shows as the grey of 0 in [-1, 1] space, with the hole box
drawn in red and the local discriminator's box in green.
"""

from __future__ import annotations

import io
import os

import ml_collections
import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from glcic_jax import files
from glcic_jax.data import holes, pipeline

CELL_PADDING = 2  # pixels of white between and around the cells
HOLE_COLOUR = (255, 0, 0)
LOCAL_COLOUR = (0, 255, 0)


def masked_inputs(batch: dict[str, np.ndarray]) -> np.ndarray:
  """uint8 [b, H, W, 3]: image * (1 - mask) back in pixel levels."""
  image = (batch["image"].astype(np.float32) - 127.5) / 127.5
  mask = holes.hole_masks(batch["bbox"], *image.shape[1:3])
  masked = image * (1.0 - mask)
  return np.clip(np.round(masked * 127.5 + 127.5), 0, 255).astype(np.uint8)


def preview_grid(batch: dict[str, np.ndarray], columns: int = 4) -> np.ndarray:
  """uint8 [rows*(H+pad)+pad, columns*(W+pad)+pad, 3] grid of the batch.

  Cell i sits at row i // columns, column i % columns; its top-left pixel
  is at (pad + row*(H+pad), pad + column*(W+pad)).
  """
  images = masked_inputs(batch)
  count, height, width, _ = images.shape
  rows = -(-count // columns)
  pad = CELL_PADDING
  grid = Image.new(
    "RGB",
    (columns * (width + pad) + pad, rows * (height + pad) + pad),
    (255, 255, 255),
  )
  draw = ImageDraw.Draw(grid)
  for i in range(count):
    y = pad + (i // columns) * (height + pad)
    x = pad + (i % columns) * (width + pad)
    grid.paste(Image.fromarray(images[i]), (x, y))
    for box, colour in (
      (batch["local_bbox"][i], LOCAL_COLOUR),
      (batch["bbox"][i], HOLE_COLOUR),
    ):
      top, left, h, w = (int(v) for v in box)
      draw.rectangle(
        (x + left, y + top, x + left + w - 1, y + top + h - 1), outline=colour
      )
  return np.asarray(grid)


def write_preview(
  config: ml_collections.ConfigDict,
  output: str,
  *,
  num_images: int = 16,
  columns: int = 4,
  split: str = "train",
) -> np.ndarray:
  """Draws the first batch of the train (or eval) pipeline into `output`."""
  if split == "train":
    dataset = pipeline.create_train_dataset(
      config, global_batch_size=num_images
    )
  elif split == "eval":
    dataset = pipeline.create_eval_dataset(config, global_batch_size=num_images)
  else:
    raise ValueError(f"--split must be 'train' or 'eval', not {split!r}.")
  batch = next(iter(dataset))
  if "valid" in batch:  # leave the padding of a small eval set out
    batch = {k: v[batch["valid"] > 0] for k, v in batch.items()}
  grid = preview_grid(batch, columns=columns)
  encoded = io.BytesIO()
  suffix = os.path.splitext(os.fspath(output))[1].lower()
  Image.fromarray(grid).save(
    encoded, format=Image.registered_extensions().get(suffix, "PNG")
  )
  files.write_bytes(output, encoded.getvalue())
  logging.info(
    "Wrote %d %s inputs to %s (%d unreadable skipped).",
    len(batch["image"]),
    split,
    output,
    dataset.skipped_files(),
  )
  return grid
