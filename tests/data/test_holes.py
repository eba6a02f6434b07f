"""The hole sampler against mmagic's random_bbox, and the local box, in
NumPy and in the TensorFlow graph the pipeline runs."""

import itertools

import numpy as np
import pytest
from scipy import stats

from glcic_jax.data import holes, randomness
from glcic_jax.data.tf_runtime import tf

N_DRAWS = 20_000
tnp = tf.experimental.numpy


def words_range(key, start: int, count: int) -> np.ndarray:
  """[count, WORDS_PER_EXAMPLE] words of positions start .. start+count-1
  in one op: Philox fills its output block by block from the start
  counter, so row i is `randomness.example_words(key, start + i)`."""
  words = tf.raw_ops.StatelessRandomUniformFullIntV2(
    shape=[count, randomness.WORDS_PER_EXAMPLE],
    key=key,
    counter=tf.constant([2 * start, 0], tf.uint64),
    alg=1,  # Philox
    dtype=tf.uint32,
  )
  return words.numpy().astype(np.int64)


def sample_holes(
  seed: int,
  n: int,
  image_size=256,
  max_bbox_shape=128,
  max_bbox_delta=40,
  min_margin=20,
) -> np.ndarray:
  """The holes of training positions 0 .. n-1 for `seed`: [n, 4], exactly
  the `bbox` values the training pipeline yields for its first n examples
  (global order) when config.seed == seed."""
  spec = holes.HoleSpec(image_size, max_bbox_shape, max_bbox_delta, min_margin)
  key = randomness.philox_key(seed, randomness.TRAIN_STREAM)
  return holes.holes_from_words(words_range(key, 0, n), spec)


@pytest.fixture(scope="module")
def boxes():
  return sample_holes(seed=1234, n=N_DRAWS)


def _parts(boxes):
  """(top0, dt, left0, dl): the four draws random_bbox makes."""
  top, left, h, w = boxes.T
  dt, dl = 128 - h, 128 - w
  return top - dt, dt, left - dl, dl


def test_holes_stay_in_mmagic_ranges_and_reach_every_value(boxes):
  assert boxes.shape == (N_DRAWS, 4) and boxes.dtype == np.int64
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
  local = holes.local_boxes(boxes, 256, 128)
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
  ours = holes.local_boxes(bboxes, 256, 128)
  in_graph = holes.local_boxes(tf.constant(bboxes), 256, 128, tnp).numpy()
  np.testing.assert_array_equal(in_graph, ours)
  unclipped_top = np.maximum(0, tops - (128 - heights) // 2)
  np.testing.assert_array_equal(ours[:, 0], unclipped_top)
  np.testing.assert_array_equal(ours[:, 1], unclipped_top[::-1])
  assert unclipped_top.max() + 128 <= 256


def test_clip_keeps_box_inside_where_mmagic_would_not():
  # 64 image, 48 box, 36 hole at 25: mmagic's top' = 25 - 6 = 19, 19 + 48 > 64.
  local = holes.local_boxes(np.array([[25, 2, 36, 36]]), 64, 48)[0]
  np.testing.assert_array_equal(local, [16, 0, 48, 48])


def test_range_of_words_equals_per_position_words():
  key = randomness.philox_key(7, randomness.TRAIN_STREAM)
  block = words_range(key, 5, 6)
  single = np.stack(
    [randomness.example_words(key, p).numpy() for p in range(5, 11)]
  )
  np.testing.assert_array_equal(block, single)
  other = randomness.philox_key(7, randomness.EVAL_STREAM)
  assert not np.array_equal(randomness.example_words(other, 5), block[0])


def test_numpy_and_the_graph_draw_the_same_holes():
  """One definition, two array namespaces: the pipeline's graph ops give
  the holes NumPy gives from the same words."""
  key = randomness.philox_key(3, randomness.TRAIN_STREAM)
  words = words_range(key, 0, 500)
  spec = holes.HoleSpec(64, 24, 8, 4)
  in_numpy = holes.holes_from_words(words, spec)
  in_graph = tf.function(lambda w: holes.holes_from_words(w, spec, tnp))(
    tf.constant(words)
  )
  np.testing.assert_array_equal(in_graph.numpy(), in_numpy)
  masks_np = holes.hole_masks(in_numpy[:20], 64, 64)
  masks_tf = holes.hole_masks(tf.constant(in_numpy[:20]), 64, 64, tnp)
  np.testing.assert_array_equal(masks_tf.numpy(), masks_np)


def test_mask_covers_exactly_the_box():
  bboxes = np.array([[3, 5, 4, 2], [0, 0, 8, 8]], np.int32)
  mask = holes.hole_masks(bboxes, 8, 10)
  assert mask.shape == (2, 8, 10, 1) and mask.dtype == np.float32
  expected = np.zeros((2, 8, 10, 1), np.float32)
  expected[0, 3:7, 5:7] = 1
  expected[1, 0:8, 0:8] = 1
  np.testing.assert_array_equal(mask, expected)


def test_tiny_config_generalises_the_ranges():
  boxes = sample_holes(0, 4000, (32, 48), (16, 20), (6, 8), (2, 3))
  top0, dt = boxes[:, 0] - (16 - boxes[:, 2]), 16 - boxes[:, 2]
  left0, dl = boxes[:, 1] - (20 - boxes[:, 3]), 20 - boxes[:, 3]
  assert set(top0) == set(range(2, 32 - 2 - 16))
  assert set(dt) == set(range(0, 4))
  assert set(left0) == set(range(3, 48 - 3 - 20))
  assert set(dl) == set(range(0, 5))


def test_seed_changes_the_holes():
  a = sample_holes(0, 50)
  np.testing.assert_array_equal(a, sample_holes(0, 50))
  assert not np.array_equal(a, sample_holes(1, 50))


@pytest.mark.parametrize(
  "kwargs, fields",
  [
    (dict(image_size=160), ["config.holes.min_margin", "config.image_size"]),
    (dict(max_bbox_delta=300), ["config.holes.max_bbox_delta"]),
    (dict(min_margin=-1), ["config.holes.min_margin"]),
  ],
)
def test_impossible_hole_config_names_the_fields(kwargs, fields):
  with pytest.raises(ValueError) as error:
    holes.HoleSpec(**kwargs)
  for field in fields:
    assert field in str(error.value)


@pytest.mark.parametrize("local_size", [300, 100])
def test_bad_local_size_names_the_field(local_size):
  with pytest.raises(ValueError, match="config.local_size"):
    holes.validate_local_size(holes.HoleSpec(), local_size)


def test_scaled_spec_is_mmagics_at_256():
  assert holes.HoleSpec.scaled_to((256, 256)) == holes.HoleSpec()
  spec = holes.HoleSpec.scaled_to((451, 300))
  assert spec.max_bbox_shape == (451 // 2, 300 // 2)
  assert spec.min_margin == (451 * 20 // 256, 300 * 20 // 256)
