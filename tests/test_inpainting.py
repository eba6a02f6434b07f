"""Tests for glcic_jax.inpainting on real photos and a tiny real generator."""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import data

from glcic_jax import inpainting, metrics
from glcic_jax.models import Generator


@pytest.fixture(scope="module")
def apply_fn():
  """A randomly initialised Generator(channels=8), jitted, eval mode."""
  generator = Generator(channels=8)
  variables = generator.init(
    jax.random.key(0), jnp.zeros((1, 16, 16, 4)), train=False
  )
  return jax.jit(functools.partial(generator.apply, variables, train=False))


@pytest.fixture(scope="module")
def astronaut():
  """An odd-sized real photo: 451 rows is not a multiple of 4."""
  return data.astronaut()[20:471, 100:400].copy()


def test_complete_keeps_size_and_known_pixels(apply_fn, astronaut):
  mask = inpainting.mask_from_bboxes(
    astronaut.shape, [(100, 60, 120, 90), (440, 0, 11, 40)]
  )
  seen = []

  def recording_apply_fn(batch):
    seen.append(np.asarray(batch))
    return apply_fn(batch)

  result = inpainting.complete(recording_apply_fn, astronaut, mask)
  assert result.shape == astronaut.shape and result.dtype == np.uint8
  hole = mask[..., 0] > 0
  np.testing.assert_array_equal(result[~hole], astronaut[~hole])
  changed = np.any(result[hole] != astronaut[hole], axis=-1)
  assert changed.mean() > 0.5
  # The network saw a padded, normalised, masked image plus the mask.
  (batch,) = seen
  assert batch.shape == (1, 452, 300, 4)
  unpadded = batch[0, :451]
  np.testing.assert_allclose(
    unpadded[..., :3],
    (astronaut / 127.5 - 1.0) * (1 - mask),
    atol=1e-6,
  )
  np.testing.assert_array_equal(unpadded[..., 3:], mask)
  np.testing.assert_array_equal(batch[0, 451], batch[0, 449])  # reflected


def test_hole_holds_the_rounded_network_output(apply_fn, astronaut):
  image = astronaut[:64, :48]  # already a multiple of 4: no padding
  mask = inpainting.mask_from_bboxes(image.shape, [(10, 8, 30, 20)])
  x = image.astype(np.float64) / 127.5 - 1.0
  batch = np.concatenate([x * (1 - mask), mask], -1)[None]
  expected = np.rint(
    np.clip(np.asarray(apply_fn(jnp.asarray(batch, jnp.float32)))[0], -1, 1)
    * 127.5
    + 127.5
  )
  result = inpainting.complete(apply_fn, image, mask)
  hole = mask[..., 0] > 0
  diff = np.abs(result[hole].astype(int) - expected[hole])
  assert diff.max() <= 1  # float rounding at .5 boundaries only
  assert (diff == 0).mean() > 0.99


def test_complete_batch_equals_single_images(apply_fn, astronaut):
  images = np.stack([astronaut[:64, :48], astronaut[200:264, 150:198]])
  rng = np.random.default_rng(0)
  masks = np.stack(
    [inpainting.random_bbox_mask((64, 48), rng) for _ in range(2)]
  )
  together = inpainting.complete_batch(apply_fn, images, masks[..., 0])
  for i in range(2):
    alone = inpainting.complete(apply_fn, images[i], masks[i])
    np.testing.assert_array_equal(together[i], alone)


def test_complete_rejects_a_mask_of_another_size(apply_fn, astronaut):
  with pytest.raises(ValueError, match="do not fit"):
    inpainting.complete(apply_fn, astronaut, np.ones((10, 10, 1)))


def test_pad_to_multiple_and_crop_back():
  x = np.arange(2 * 5 * 7 * 1, dtype=np.float32).reshape(2, 5, 7, 1)
  padded = inpainting.pad_to_multiple(x, 4)
  assert padded.shape == (2, 8, 8, 1)
  np.testing.assert_array_equal(inpainting.crop_to(padded, 5, 7), x)
  # Mirror about the last row/column, not zeros or a repeated edge.
  np.testing.assert_array_equal(padded[:, 5, :7], x[:, 3])
  np.testing.assert_array_equal(padded[:, :5, 7], x[:, :, 5])
  same = np.zeros((8, 12, 3))
  assert inpainting.pad_to_multiple(same) is same


def _save(path, array, mode=None):
  Image.fromarray(array, mode=mode).save(path)
  return path


def test_read_image_formats_become_rgb(tmp_path, astronaut):
  rgb = astronaut[:40, :30]
  grey = data.camera()[:40, :30]
  np.testing.assert_array_equal(
    inpainting.read_image(_save(tmp_path / "rgb.png", rgb)), rgb
  )
  from_grey = inpainting.read_image(_save(tmp_path / "grey.png", grey))
  assert from_grey.shape == (40, 30, 3) and from_grey.dtype == np.uint8
  for c in range(3):
    np.testing.assert_array_equal(from_grey[..., c], grey)
  rgba = np.concatenate([rgb, np.full((40, 30, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(
    inpainting.read_image(_save(tmp_path / "rgba.png", rgba)), rgb
  )
  grey16 = grey.astype(np.uint16) * 257
  from16 = inpainting.read_image(_save(tmp_path / "grey16.png", grey16))
  np.testing.assert_array_equal(from16[..., 1], grey)


def test_read_image_errors_name_the_file(tmp_path, astronaut):
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
  with pytest.raises(ValueError, match="corrupt.png"):
    inpainting.read_image(corrupt)
  truncated = tmp_path / "truncated.png"
  _save(truncated, astronaut)
  truncated.write_bytes(truncated.read_bytes()[:5000])
  with pytest.raises(ValueError, match="truncated.png"):
    inpainting.read_image(truncated)
  with pytest.raises(FileNotFoundError, match="missing.png"):
    inpainting.read_image(tmp_path / "missing.png")


def test_read_mask_channel_layouts(tmp_path):
  shape = (20, 30, 3)
  hole = np.zeros((20, 30), bool)
  hole[5:12, 4:20] = True
  expected = hole[..., None].astype(np.float32)
  grey = np.where(hole, 255, 0).astype(np.uint8)
  got = inpainting.read_mask(_save(tmp_path / "l.png", grey), shape)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)
  rgb = np.zeros((20, 30, 3), np.uint8)
  rgb[hole, 0] = 1  # any non-zero value in any channel is hole
  np.testing.assert_array_equal(
    inpainting.read_mask(_save(tmp_path / "rgb.png", rgb), shape), expected
  )
  # White strokes on a layer whose transparent pixels also store white.
  rgba = np.full((20, 30, 4), 255, np.uint8)
  rgba[~hole, 3] = 0
  np.testing.assert_array_equal(
    inpainting.read_mask(_save(tmp_path / "rgba.png", rgba), shape), expected
  )


def test_read_mask_errors(tmp_path):
  hole = np.zeros((20, 30), np.uint8)
  hole[2:5, 2:5] = 255
  wrong = _save(tmp_path / "wrong.png", hole)
  with pytest.raises(ValueError, match=r"20x30.*25x30"):
    inpainting.read_mask(wrong, (25, 30, 3))
  empty = _save(tmp_path / "empty.png", np.zeros((20, 30), np.uint8))
  with pytest.raises(ValueError, match="no hole"):
    inpainting.read_mask(empty, (20, 30))
  full = _save(tmp_path / "full.png", np.full((20, 30), 255, np.uint8))
  with pytest.raises(ValueError, match="whole image"):
    inpainting.read_mask(full, (20, 30))


def test_bboxes():
  assert inpainting.parse_bbox("3, 4,5,6") == (3, 4, 5, 6)
  with pytest.raises(ValueError, match="four integers"):
    inpainting.parse_bbox("3,4,5")
  with pytest.raises(ValueError, match="four integers"):
    inpainting.parse_bbox("a,b,c,d")
  mask = inpainting.mask_from_bboxes((10, 12), [(0, 0, 2, 3), (8, 10, 2, 2)])
  assert mask.shape == (10, 12, 1) and mask.sum() == 6 + 4
  assert mask[9, 11, 0] == 1 and mask[2, 0, 0] == 0
  for bad in [(9, 0, 2, 2), (0, 11, 1, 2), (-1, 0, 2, 2), (0, 0, 0, 2)]:
    with pytest.raises(ValueError, match="does not lie inside"):
      inpainting.mask_from_bboxes((10, 12), [bad])
  with pytest.raises(ValueError, match="whole image"):
    inpainting.mask_from_bboxes((10, 12), [(0, 0, 10, 12)])


def test_random_bbox_follows_mmagic_at_256():
  rng = np.random.default_rng(0)
  boxes = np.array(
    [inpainting.random_bbox((256, 256), rng) for _ in range(2000)]
  )
  tops, lefts, heights, widths = boxes.T
  # h = 128 - shrink, shrink in [0, 20]; top = top0 + shrink, top0 in
  # [20, 108) (numpy's exclusive upper end); likewise for left and w.
  assert heights.min() == 108 and heights.max() == 128
  assert widths.min() == 108 and widths.max() == 128
  top0, left0 = tops - (128 - heights), lefts - (128 - widths)
  assert top0.min() == 20 and top0.max() == 107
  assert left0.min() == 20 and left0.max() == 107
  assert (tops + heights).max() <= 235 and (lefts + widths).max() <= 235
  again = inpainting.random_bbox((256, 256), np.random.default_rng(0))
  assert again == tuple(boxes[0])


def test_random_bbox_mask_scales_to_the_image():
  rng = np.random.default_rng(1)
  for _ in range(50):
    mask = inpainting.random_bbox_mask((451, 300, 3), rng)
    rows, cols = np.nonzero(mask[..., 0])
    assert 451 // 2 - 35 <= np.ptp(rows) + 1 <= 451 // 2
    assert 300 // 2 - 23 <= np.ptp(cols) + 1 <= 300 // 2
    assert rows.min() >= 451 * 20 // 256 and cols.min() >= 300 * 20 // 256
  with pytest.raises(ValueError, match="too small"):
    inpainting.random_bbox((1, 40), rng)


def _poisson_scene():
  """A photo whose holes held a red object, and three holes, one at the edge."""
  photo = data.astronaut()[150:250, 200:300]
  mask = inpainting.mask_from_bboxes(
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
  blended = inpainting.poisson_blend(original, cast.astype(np.uint8), mask)
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
  blended = inpainting.poisson_blend(original, completed, mask)
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
    inpainting.poisson_blend(image, image, np.ones((8, 8, 1)))


def test_side_by_side_preview_and_save(tmp_path, astronaut):
  image = astronaut[:30, :20]
  mask = inpainting.mask_from_bboxes(image.shape, [(5, 5, 10, 10)])
  preview = inpainting.masked_preview(image, mask)
  assert (preview[5:15, 5:15] == 255).all()
  np.testing.assert_array_equal(preview[20:], image[20:])
  grey_mask = (mask * 255).astype(np.uint8)
  joined = inpainting.side_by_side([image, preview, grey_mask], gap=2)
  assert joined.shape == (30, 64, 3)
  np.testing.assert_array_equal(joined[:, 22:42], preview)
  assert (joined[:, 20:22] == 0).all()
  np.testing.assert_array_equal(joined[:, 44:, 1], grey_mask[..., 0])
  with pytest.raises(ValueError, match="height"):
    inpainting.side_by_side([image, image[:10]])
  path = tmp_path / "out" / "joined.png"
  inpainting.save_png(path, joined)
  np.testing.assert_array_equal(inpainting.read_image(path), joined)
  with pytest.raises(ValueError, match="uint8"):
    inpainting.save_png(path, joined.astype(np.float32))


def test_completion_metrics_end_to_end(apply_fn, astronaut):
  """complete() output feeds the metrics: unchanged pixels give no l1."""
  image = astronaut[:64, :64]
  mask = inpainting.mask_from_bboxes(image.shape, [(16, 16, 32, 32)])
  result = inpainting.complete(apply_fn, image, mask)
  assert metrics.l1_error(image, result, 1 - mask) == 0.0
  assert metrics.l1_error(image, result, mask) > 0.0
