"""The shipped batch and its expansion on the devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from glcic_jax import batches
from glcic_jax.data import holes


def test_expand_gives_the_float_image_and_the_hole_masks():
  levels = np.arange(256, dtype=np.uint8)
  image = np.broadcast_to(levels[None, :, None, None], (2, 256, 4, 3))
  boxes = np.array([[3, 1, 10, 2], [0, 0, 256, 4]], np.int32)
  out = jax.jit(batches.expand)(
    {"image": image, "bbox": boxes, "local_bbox": boxes}
  )
  # Bit for bit what the pipeline computed before it shipped uint8: the
  # correctly rounded float32 (x - 127.5) / 127.5 of every level.
  expected = (image.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
  np.testing.assert_array_equal(np.asarray(out["image"]), expected)
  np.testing.assert_array_equal(
    np.asarray(out["mask"]), holes.hole_masks(boxes, 256, 4)
  )
  np.testing.assert_array_equal(np.asarray(out["local_bbox"]), boxes)


def test_shipped_steps_carry_their_name_into_the_compiled_program():
  def step(state, batch):
    return state + jnp.sum(batch["mask"]), {"loss": jnp.mean(batch["image"])}

  named = batches.on_shipped(step, "joint_step")
  spec = batches.spec(image_size=8, batch_size=2)
  text = jax.jit(named).lower(jnp.zeros(()), spec).as_text()
  assert "jit_joint_step" in text
  assert named.__name__ == "joint_step"


def test_spec_is_a_quarter_of_the_float_bytes_or_less():
  spec = batches.spec(image_size=256, batch_size=1)
  shipped = sum(np.prod(s.shape) * s.dtype.itemsize for s in spec.values())
  floats = 256 * 256 * (3 + 1) * 4
  assert shipped * 5 < floats
