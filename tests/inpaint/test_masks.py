"""Holes from the command line and mmagic's random box, scaled to any
image."""

import numpy as np
import pytest

from glcic_jax.inpaint import masks


def test_bboxes():
  assert masks.parse_bbox("3, 4,5,6") == (3, 4, 5, 6)
  with pytest.raises(ValueError, match="four integers"):
    masks.parse_bbox("3,4,5")
  with pytest.raises(ValueError, match="four integers"):
    masks.parse_bbox("a,b,c,d")
  mask = masks.mask_from_bboxes((10, 12), [(0, 0, 2, 3), (8, 10, 2, 2)])
  assert mask.shape == (10, 12, 1) and mask.sum() == 6 + 4
  assert mask[9, 11, 0] == 1 and mask[2, 0, 0] == 0
  for bad in [(9, 0, 2, 2), (0, 11, 1, 2), (-1, 0, 2, 2), (0, 0, 0, 2)]:
    with pytest.raises(ValueError, match="does not lie inside"):
      masks.mask_from_bboxes((10, 12), [bad])
  with pytest.raises(ValueError, match="whole image"):
    masks.mask_from_bboxes((10, 12), [(0, 0, 10, 12)])


def test_random_bbox_follows_mmagic_at_256():
  rng = np.random.default_rng(0)
  boxes = np.array([masks.random_bbox((256, 256), rng) for _ in range(2000)])
  tops, lefts, heights, widths = boxes.T
  # h = 128 - shrink, shrink in [0, 20]; top = top0 + shrink, top0 in
  # [20, 108) (numpy's exclusive upper end); likewise for left and w.
  assert heights.min() == 108 and heights.max() == 128
  assert widths.min() == 108 and widths.max() == 128
  top0, left0 = tops - (128 - heights), lefts - (128 - widths)
  assert top0.min() == 20 and top0.max() == 107
  assert left0.min() == 20 and left0.max() == 107
  assert (tops + heights).max() <= 235 and (lefts + widths).max() <= 235
  again = masks.random_bbox((256, 256), np.random.default_rng(0))
  assert again == tuple(boxes[0])


def test_random_bbox_mask_scales_to_the_image():
  rng = np.random.default_rng(1)
  for _ in range(50):
    mask = masks.random_bbox_mask((451, 300, 3), rng)
    rows, cols = np.nonzero(mask[..., 0])
    assert 451 // 2 - 35 <= np.ptp(rows) + 1 <= 451 // 2
    assert 300 // 2 - 23 <= np.ptp(cols) + 1 <= 300 // 2
    assert rows.min() >= 451 * 20 // 256 and cols.min() >= 300 * 20 // 256
  with pytest.raises(ValueError, match="too small"):
    masks.random_bbox((1, 40), rng)
