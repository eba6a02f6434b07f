"""The hole sampler against mmagic's random_bbox, and the local box."""

import itertools

import numpy as np
import pytest
from scipy import stats

from glcic_jax import masks

N_DRAWS = 20_000


@pytest.fixture(scope="module")
def boxes():
  return masks.sample_bboxes(seed=1234, n=N_DRAWS)


def _parts(boxes):
  """(top0, dt, left0, dl): the four draws random_bbox makes."""
  top, left, h, w = boxes.T
  dt, dl = 128 - h, 128 - w
  return top - dt, dt, left - dl, dl


def test_holes_stay_in_mmagic_ranges_and_reach_every_value(boxes):
  assert boxes.shape == (N_DRAWS, 4) and boxes.dtype == np.int32
  top0, dt, left0, dl = _parts(boxes)
  # numpy randint(20, 256 - 20 - 128) excludes 108; delta // 2 = 20 included.
  for start in (top0, left0):
    assert set(start) == set(range(20, 108))
  for shrink in (dt, dl):
    assert set(shrink) == set(range(0, 21))
  top, left, h, w = boxes.T
  for side in (h, w):
    assert set(side) == set(range(108, 129))
  for corner in (top, left):
    assert set(corner) == set(range(20, 128))
  assert (top + h).max() <= 256 - 20 and (left + w).max() <= 256 - 20


def test_hole_marginals_are_uniform(boxes):
  for draws, low, high in zip(
    _parts(boxes), (20, 0, 20, 0), (108, 21, 108, 21)
  ):
    counts = np.bincount(draws - low, minlength=high - low)
    assert len(counts) == high - low
    assert stats.chisquare(counts).pvalue > 0.01


def test_hole_height_and_width_are_independent(boxes):
  _, dt, _, dl = _parts(boxes)
  table = np.zeros((21, 21))
  np.add.at(table, (dt, dl), 1)
  assert stats.chi2_contingency(table).pvalue > 0.01
  # and the corners independent of the sizes that shift them
  top0, _, left0, _ = _parts(boxes)
  table = np.zeros((88, 21))
  np.add.at(table, (top0 - 20, dl), 1)
  assert stats.chi2_contingency(table).pvalue > 0.01


def test_local_box_is_128_inside_and_holds_the_hole(boxes):
  local = masks.local_boxes(boxes, 256, 128).numpy()
  top, left, h, w = boxes.T
  ltop, lleft, lh, lw = local.T
  assert (lh == 128).all() and (lw == 128).all()
  assert (ltop >= 0).all() and (lleft >= 0).all()
  assert (ltop + 128 <= 256).all() and (lleft + 128 <= 256).all()
  assert (ltop <= top).all() and (ltop + 128 >= top + h).all()
  assert (lleft <= left).all() and (lleft + 128 >= left + w).all()


def test_clip_never_acts_with_mmagic_numbers():
  """Every possible mmagic hole: our clipped box equals mmagic's formula."""
  combos = np.array(list(itertools.product(range(20, 108), range(21))))
  tops = combos[:, 0] + combos[:, 1]
  heights = 128 - combos[:, 1]
  bboxes = np.stack([tops, tops[::-1], heights, heights[::-1]], axis=1)
  ours = masks.local_boxes(bboxes, 256, 128).numpy()
  unclipped_top = np.maximum(0, tops - (128 - heights) // 2)
  np.testing.assert_array_equal(ours[:, 0], unclipped_top)
  np.testing.assert_array_equal(ours[:, 1], unclipped_top[::-1])
  assert unclipped_top.max() + 128 <= 256


def test_clip_keeps_box_inside_where_mmagic_would_not():
  # 64 image, 48 box, 36 hole at 25: mmagic's top' = 25 - 6 = 19, 19 + 48 > 64.
  local = masks.local_boxes([[25, 2, 36, 36]], 64, 48).numpy()[0]
  np.testing.assert_array_equal(local, [16, 0, 48, 48])


def test_range_of_bits_equals_per_position_bits():
  key = masks.philox_key(7, masks.TRAIN_STREAM)
  block = masks.example_bits_range(key, 5, 6).numpy()
  single = np.stack([masks.example_bits(key, p).numpy() for p in range(5, 11)])
  np.testing.assert_array_equal(block, single)
  other = masks.example_bits(masks.philox_key(7, masks.EVAL_STREAM), 5).numpy()
  assert not np.array_equal(other, block[0])


def test_mask_covers_exactly_the_box():
  bboxes = np.array([[3, 5, 4, 2], [0, 0, 8, 8]], np.int32)
  mask = masks.bbox_masks(bboxes, 8, 10).numpy()
  assert mask.shape == (2, 8, 10, 1) and mask.dtype == np.float32
  expected = np.zeros((2, 8, 10, 1), np.float32)
  expected[0, 3:7, 5:7] = 1
  expected[1, 0:8, 0:8] = 1
  np.testing.assert_array_equal(mask, expected)


def test_tiny_config_generalises_the_ranges():
  boxes = masks.sample_bboxes(0, 4000, (32, 48), (16, 20), (6, 8), (2, 3))
  top0, dt = boxes[:, 0] - (16 - boxes[:, 2]), 16 - boxes[:, 2]
  left0, dl = boxes[:, 1] - (20 - boxes[:, 3]), 20 - boxes[:, 3]
  assert set(top0) == set(range(2, 32 - 2 - 16))
  assert set(dt) == set(range(0, 4))
  assert set(left0) == set(range(3, 48 - 3 - 20))
  assert set(dl) == set(range(0, 5))


def test_seed_changes_the_holes():
  a = masks.sample_bboxes(0, 50)
  np.testing.assert_array_equal(a, masks.sample_bboxes(0, 50))
  assert not np.array_equal(a, masks.sample_bboxes(1, 50))


@pytest.mark.parametrize(
  "kwargs, fields",
  [
    (dict(image_size=160), ["config.data.min_margin", "config.image_size"]),
    (dict(max_bbox_delta=300), ["config.data.max_bbox_delta"]),
    (dict(min_margin=-1), ["config.data.min_margin"]),
  ],
)
def test_impossible_hole_config_names_the_fields(kwargs, fields):
  with pytest.raises(ValueError) as error:
    masks.HoleSpec(**kwargs)
  for field in fields:
    assert field in str(error.value)


@pytest.mark.parametrize("local_size", [300, 100])
def test_bad_local_size_names_the_field(local_size):
  with pytest.raises(ValueError, match="config.local_size"):
    masks.validate_local_size(masks.HoleSpec(), local_size)
