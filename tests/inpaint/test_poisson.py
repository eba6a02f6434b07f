"""Poisson blending removes seams and keeps the known pixels."""

import sys

import numpy as np
import pytest
from skimage import data

from glcic_jax.inpaint import masks, poisson


def _poisson_scene():
  """A photo whose holes held a red object, and three holes, one at the edge."""
  photo = data.astronaut()[150:250, 200:300]
  mask = masks.mask_from_bboxes(
    photo.shape, [(10, 12, 35, 40), (60, 50, 20, 19), (0, 80, 16, 20)]
  )
  hole = mask[..., 0] > 0
  original = photo.copy()
  original[hole] = (255, 0, 0)
  return photo, original, mask, hole


def test_poisson_blend_removes_a_colour_cast():
  photo, original, mask, hole = _poisson_scene()
  # The right texture with a colour cast, pasted over the hole: blending
  # takes the level from the known pixels around and removes the cast.
  cast = np.where(
    hole[..., None], np.clip(photo.astype(int) + 40, 0, 255), photo
  )
  blended = poisson.poisson_blend(original, cast.astype(np.uint8), mask)
  assert blended.shape == photo.shape and blended.dtype == np.uint8
  np.testing.assert_array_equal(blended[~hole], original[~hole])
  before = np.abs(cast[hole] - photo[hole]).mean()
  after = np.abs(blended[hole].astype(int) - photo[hole]).mean()
  assert before > 35 and after < 4


def test_poisson_blend_keeps_the_completion_texture_in_place():
  """Fine texture survives where it was; a box misplaced by even one pixel
  would decorrelate it."""
  photo, original, mask, hole = _poisson_scene()
  rng = np.random.default_rng(0)
  texture = rng.integers(0, 256, photo.shape)
  completed = np.where(hole[..., None], texture, photo).astype(np.uint8)
  blended = poisson.poisson_blend(original, completed, mask)
  inner = hole & np.roll(hole, 4, 0) & np.roll(hole, -4, 0)
  inner &= np.roll(hole, 4, 1) & np.roll(hole, -5, 1)
  dx_blended = np.diff(blended.astype(float), axis=1)[inner[:, :-1]]
  dx_completed = np.diff(completed.astype(float), axis=1)[inner[:, :-1]]
  assert np.corrcoef(dx_blended.ravel(), dx_completed.ravel())[0, 1] > 0.9
  np.testing.assert_array_equal(blended[~hole], original[~hole])


def test_poisson_blend_needs_opencv(monkeypatch):
  monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` fail
  image = np.zeros((8, 8, 3), np.uint8)
  with pytest.raises(ImportError, match="opencv"):
    poisson.poisson_blend(image, image, np.ones((8, 8, 1)))
