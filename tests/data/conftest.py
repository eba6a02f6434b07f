"""Fixtures of the data tests: a folder of real image files."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
  """JPEG, PNG, BMP, grey, RGBA, small and corrupt files, nested."""
  root = tmp_path_factory.mktemp("photos")
  (root / "nested" / "deeper").mkdir(parents=True)
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (410, 500, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(root / "photo.jpg", quality=90)
  Image.fromarray(rgb[:300, :260]).save(root / "nested" / "pic.png")
  Image.fromarray(rgb[:390, :390]).save(root / "pic.bmp")
  Image.fromarray(rgb[..., 0]).save(root / "nested" / "grey.png")
  Image.fromarray(rgb[:200, :300, 0]).save(root / "grey.JPG")
  rgba = np.concatenate([rgb[:300, :300], rgb[:300, :300, :1]], -1)
  Image.fromarray(rgba, "RGBA").save(root / "nested" / "deeper" / "rgba.png")
  Image.fromarray(rgb[:70, :100]).save(root / "small.png")
  (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
  (root / "notes.txt").write_text("not an image")
  return root
