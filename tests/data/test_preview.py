"""glcic-preview-data's grid: the pipeline's first batch, masked, with the
hole and local boxes drawn."""

import numpy as np
from PIL import Image

from glcic_jax.data import pipeline as input_pipeline
from glcic_jax.data import preview
from tests.data.test_pipeline import take, tiny_config


def test_preview_grid_shows_the_holes(photo_folder, tmp_path):
  config = tiny_config(data_root=str(photo_folder))
  output = tmp_path / "grid.png"
  grid = preview.write_preview(config, str(output), num_images=4, columns=2)
  assert grid.dtype == np.uint8 and grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)
  np.testing.assert_array_equal(np.asarray(Image.open(output)), grid)
  (batch,) = take(
    input_pipeline.create_train_dataset(config, global_batch_size=4), 1
  )
  np.testing.assert_array_equal(preview.preview_grid(batch, columns=2), grid)
  pad = preview.CELL_PADDING
  for i in range(4):
    y, x = pad + (i // 2) * (64 + pad), pad + (i % 2) * (64 + pad)
    top, left, h, w = batch["bbox"][i]
    hole = grid[y + top + 1 : y + top + h - 1, x + left + 1 : x + left + w - 1]
    assert (hole == 128).all()  # grey: 0 in [-1, 1], what the generator sees
    assert tuple(grid[y + top, x + left + w // 2]) == preview.HOLE_COLOUR
    ltop, lleft = batch["local_bbox"][i, :2]
    if ltop < top:  # else the hole's outline is drawn over it
      assert tuple(grid[y + ltop, x + lleft + 16]) == preview.LOCAL_COLOUR
