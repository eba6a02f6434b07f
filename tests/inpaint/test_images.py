"""Image and mask files: formats, layouts, and errors that name the file."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from glcic_jax.inpaint import images


def _save(path, array, mode=None):
  Image.fromarray(array, mode=mode).save(path)
  return path


def test_read_image_formats_become_rgb(tmp_path, astronaut):
  rgb = astronaut[:40, :30]
  grey = data.camera()[:40, :30]
  np.testing.assert_array_equal(
    images.read_image(_save(tmp_path / "rgb.png", rgb)), rgb
  )
  from_grey = images.read_image(_save(tmp_path / "grey.png", grey))
  assert from_grey.shape == (40, 30, 3) and from_grey.dtype == np.uint8
  for c in range(3):
    np.testing.assert_array_equal(from_grey[..., c], grey)
  rgba = np.concatenate([rgb, np.full((40, 30, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(
    images.read_image(_save(tmp_path / "rgba.png", rgba)), rgb
  )
  grey16 = grey.astype(np.uint16) * 257
  from16 = images.read_image(_save(tmp_path / "grey16.png", grey16))
  np.testing.assert_array_equal(from16[..., 1], grey)


def test_read_image_errors_name_the_file(tmp_path, astronaut):
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
  with pytest.raises(ValueError, match="corrupt.png"):
    images.read_image(corrupt)
  truncated = tmp_path / "truncated.png"
  _save(truncated, astronaut)
  truncated.write_bytes(truncated.read_bytes()[:5000])
  with pytest.raises(ValueError, match="truncated.png"):
    images.read_image(truncated)
  with pytest.raises(FileNotFoundError, match="missing.png"):
    images.read_image(tmp_path / "missing.png")


def test_read_mask_channel_layouts(tmp_path):
  shape = (20, 30, 3)
  hole = np.zeros((20, 30), bool)
  hole[5:12, 4:20] = True
  expected = hole[..., None].astype(np.float32)
  grey = np.where(hole, 255, 0).astype(np.uint8)
  got = images.read_mask(_save(tmp_path / "l.png", grey), shape)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)
  rgb = np.zeros((20, 30, 3), np.uint8)
  rgb[hole, 0] = 1  # any non-zero value in any channel is hole
  np.testing.assert_array_equal(
    images.read_mask(_save(tmp_path / "rgb.png", rgb), shape), expected
  )
  # White strokes on a layer whose transparent pixels also store white.
  rgba = np.full((20, 30, 4), 255, np.uint8)
  rgba[~hole, 3] = 0
  np.testing.assert_array_equal(
    images.read_mask(_save(tmp_path / "rgba.png", rgba), shape), expected
  )


def test_read_mask_errors(tmp_path):
  hole = np.zeros((20, 30), np.uint8)
  hole[2:5, 2:5] = 255
  wrong = _save(tmp_path / "wrong.png", hole)
  with pytest.raises(ValueError, match=r"20x30.*25x30"):
    images.read_mask(wrong, (25, 30, 3))
  empty = _save(tmp_path / "empty.png", np.zeros((20, 30), np.uint8))
  with pytest.raises(ValueError, match="no hole"):
    images.read_mask(empty, (20, 30))
  full = _save(tmp_path / "full.png", np.full((20, 30), 255, np.uint8))
  with pytest.raises(ValueError, match="whole image"):
    images.read_mask(full, (20, 30))
