"""Completion with a tiny real generator on real photos: sizes, known
pixels, padding, batches and previews."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glcic_jax import models
from glcic_jax.inpaint import compositing, images, masks
from tests import reference_metrics


@pytest.fixture(scope="module")
def apply_fn():
  """A randomly initialised Generator(channels=8), jitted, eval mode, on
  the input `models.network_input` builds."""
  generator = models.Generator(channels=8)
  variables = generator.init(
    jax.random.key(0), jnp.zeros((1, 16, 16, 4)), train=False
  )
  return jax.jit(
    lambda image, mask: generator.apply(
      variables, models.network_input(image, mask), train=False
    )
  )


def test_complete_keeps_size_and_known_pixels(apply_fn, astronaut):
  mask = masks.mask_from_bboxes(
    astronaut.shape, [(100, 60, 120, 90), (440, 0, 11, 40)]
  )
  seen = []

  def recording_apply_fn(image, mask):
    seen.append(np.asarray(models.network_input(image, mask)))
    return apply_fn(image, mask)

  result = compositing.complete(recording_apply_fn, astronaut, mask)
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
  mask = masks.mask_from_bboxes(image.shape, [(10, 8, 30, 20)])
  x = image.astype(np.float64) / 127.5 - 1.0
  output = apply_fn(jnp.asarray(x[None], jnp.float32), jnp.asarray(mask[None]))
  expected = np.rint(np.clip(np.asarray(output)[0], -1, 1) * 127.5 + 127.5)
  result = compositing.complete(apply_fn, image, mask)
  hole = mask[..., 0] > 0
  diff = np.abs(result[hole].astype(int) - expected[hole])
  assert diff.max() <= 1  # float rounding at .5 boundaries only
  assert (diff == 0).mean() > 0.99


def test_complete_batch_equals_single_images(apply_fn, astronaut):
  images = np.stack([astronaut[:64, :48], astronaut[200:264, 150:198]])
  rng = np.random.default_rng(0)
  holes = np.stack([masks.random_bbox_mask((64, 48), rng) for _ in range(2)])
  together = compositing.complete_batch(apply_fn, images, holes[..., 0])
  for i in range(2):
    alone = compositing.complete(apply_fn, images[i], holes[i])
    np.testing.assert_array_equal(together[i], alone)


def test_complete_rejects_a_mask_of_another_size(apply_fn, astronaut):
  with pytest.raises(ValueError, match="do not fit"):
    compositing.complete(apply_fn, astronaut, np.ones((10, 10, 1)))


def test_pad_to_multiple_and_crop_back():
  x = np.arange(2 * 5 * 7 * 1, dtype=np.float32).reshape(2, 5, 7, 1)
  padded = compositing.pad_to_multiple(x, 4)
  assert padded.shape == (2, 8, 8, 1)
  np.testing.assert_array_equal(compositing.crop_to(padded, 5, 7), x)
  # Mirror about the last row/column, not zeros or a repeated edge.
  np.testing.assert_array_equal(padded[:, 5, :7], x[:, 3])
  np.testing.assert_array_equal(padded[:, :5, 7], x[:, :, 5])
  same = np.zeros((8, 12, 3))
  assert compositing.pad_to_multiple(same) is same


def test_side_by_side_preview_and_save(tmp_path, astronaut):
  image = astronaut[:30, :20]
  mask = masks.mask_from_bboxes(image.shape, [(5, 5, 10, 10)])
  preview = compositing.masked_preview(image, mask)
  assert (preview[5:15, 5:15] == 255).all()
  np.testing.assert_array_equal(preview[20:], image[20:])
  grey_mask = (mask * 255).astype(np.uint8)
  joined = compositing.side_by_side([image, preview, grey_mask], gap=2)
  assert joined.shape == (30, 64, 3)
  np.testing.assert_array_equal(joined[:, 22:42], preview)
  assert (joined[:, 20:22] == 0).all()
  np.testing.assert_array_equal(joined[:, 44:, 1], grey_mask[..., 0])
  with pytest.raises(ValueError, match="height"):
    compositing.side_by_side([image, image[:10]])
  path = tmp_path / "out" / "joined.png"
  images.save_png(path, joined)
  np.testing.assert_array_equal(images.read_image(path), joined)
  with pytest.raises(ValueError, match="uint8"):
    images.save_png(path, joined.astype(np.float32))


def test_completion_metrics_end_to_end(apply_fn, astronaut):
  """complete() output feeds the metrics: unchanged pixels give no l1."""
  image = astronaut[:64, :64]
  mask = masks.mask_from_bboxes(image.shape, [(16, 16, 32, 32)])
  result = compositing.complete(apply_fn, image, mask)
  assert reference_metrics.l1_error(image, result, 1 - mask) == 0.0
  assert reference_metrics.l1_error(image, result, mask) > 0.0
