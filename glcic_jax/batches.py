"""A batch as the host ships it, and what the devices make of it.

The input pipeline hands over uint8 pixels and the hole boxes: 3 bytes a
pixel and 32 bytes an example, where a float32 image and mask take 16
bytes a pixel. At 256 px that is 192 KiB an example instead of 1 MiB, the
difference between a host that keeps eight fast accelerators fed and one
that starves them. The devices turn it into what the networks and losses
take (`expand`, traced into every jitted step): the image in [-1, 1] and
the hole mask drawn from its box by the same `holes.hole_masks` the
pipeline's tests check.

Shipped keys: `image` uint8 [B,H,W,3]; `bbox` and `local_bbox` int32
[B,4] (top, left, h, w); evaluation adds `valid` float32 [B] and `index`
int32 [B].
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from glcic_jax.data import holes

BOX_KEYS = ("bbox", "local_bbox")


# The float32 of each level, correctly rounded: computed on the device,
# (x - 127.5) / 127.5 becomes a multiplication by the reciprocal (XLA's
# rewrite), one ulp off for half the levels.
_UNIT_LEVELS = (np.arange(256, dtype=np.float32) - np.float32(127.5)) / (
  np.float32(127.5)
)


def to_unit_range(pixels: Any) -> jax.Array:
  """uint8 levels -> float32 in [-1, 1], as mmagic normalises (mean and
  std 127.5), bit for bit the host's float32 arithmetic."""
  return jnp.asarray(_UNIT_LEVELS)[jnp.asarray(pixels).astype(jnp.int32)]


def expand(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """The shipped batch -> `image` float32 in [-1, 1] and `mask` float32
  [B,H,W,1] (1 = hole); every other key passes through."""
  out = dict(batch)
  height, width = batch["image"].shape[1:3]
  out["image"] = to_unit_range(batch["image"])
  out["mask"] = holes.hole_masks(batch["bbox"], height, width, xp=jnp)
  return out


def on_shipped(step: Callable, name: str) -> Callable:
  """`step(state, batch)` as a function of the shipped batch, named `name`
  so that profiles and HLO dumps say which step they show (`jit_<name>`)."""

  @functools.wraps(step)
  def run(state, batch):
    return step(state, expand(batch))

  run.__name__ = run.__qualname__ = name
  return run


def spec(image_size: int, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of a shipped training batch."""
  return {
    "image": jax.ShapeDtypeStruct(
      (batch_size, image_size, image_size, 3), jnp.uint8
    ),
    **{k: jax.ShapeDtypeStruct((batch_size, 4), jnp.int32) for k in BOX_KEYS},
  }
