"""mmagic's rectangular holes (`random_bbox`) and the local discriminator's
box around them, written once for NumPy and TensorFlow.

The functions are array arithmetic over an `xp` namespace: NumPy (the
default; `glcic_jax.inpaint` draws its random holes so) or
`tf.experimental.numpy` inside the tf.data pipeline. So the hole
distribution the tests check is the one the model trains on and the one a
user's `--random_bbox` gets. Words come from `randomness`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from glcic_jax.data.randomness import draw_ints

# Words of an example that draw its hole: top0, dt, left0, dl.
HOLE_WORDS = (0, 1, 2, 3)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(value, int | np.integer):
    return int(value), int(value)
  height, width = value
  return int(height), int(width)


@dataclasses.dataclass(frozen=True)
class HoleSpec:
  """The numbers of mmagic's `random_bbox`, per axis (height, width); the
  defaults are mmagic's for 256x256 images, and the config's `holes`
  section takes them from here.

  Attributes:
    image_size: the image the hole is drawn in (after the resize).
    max_bbox_shape: the largest hole side; the hole is max_shape - delta.
    max_bbox_delta: the hole side shrinks by U{0 .. delta // 2}.
    min_margin: the undelta'd hole keeps at least this far from the border.
  """

  image_size: tuple[int, int] = (256, 256)
  max_bbox_shape: tuple[int, int] = (128, 128)
  max_bbox_delta: tuple[int, int] = (40, 40)
  min_margin: tuple[int, int] = (20, 20)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      object.__setattr__(self, field.name, _pair(getattr(self, field.name)))
    self._validate()

  @classmethod
  def from_config(cls, config: Any) -> HoleSpec:
    """Reads config.image_size and config.holes."""
    holes = config.holes
    return cls(
      image_size=config.image_size,
      max_bbox_shape=holes.max_bbox_shape,
      max_bbox_delta=holes.max_bbox_delta,
      min_margin=holes.min_margin,
    )

  @classmethod
  def scaled_to(cls, image_size: Sequence[int]) -> HoleSpec:
    """mmagic's 256x256 settings scaled to an image of another size (the
    same numbers at 256x256)."""
    reference = cls()
    size = _pair(tuple(image_size))

    def scaled(values: tuple[int, int]) -> tuple[int, int]:
      return tuple(
        side * v // r for side, v, r in zip(size, values, reference.image_size)
      )

    return cls(
      size,
      scaled(reference.max_bbox_shape),
      scaled(reference.max_bbox_delta),
      scaled(reference.min_margin),
    )

  def _validate(self) -> None:
    # Names are the config fields, so a bad config points at its own line.
    for axis, name in enumerate(("height", "width")):
      size = self.image_size[axis]
      shape = self.max_bbox_shape[axis]
      delta = self.max_bbox_delta[axis]
      margin = self.min_margin[axis]
      if shape < 1 or delta < 0 or margin < 0:
        raise ValueError(
          f"Hole config ({name}): config.holes.max_bbox_shape ({shape}) must "
          f"be >= 1, config.holes.max_bbox_delta ({delta}) and "
          f"config.holes.min_margin ({margin}) >= 0."
        )
      if 2 * margin + shape >= size:
        raise ValueError(
          f"Hole does not fit ({name}): 2 * config.holes.min_margin "
          f"({margin}) + config.holes.max_bbox_shape ({shape}) = "
          f"{2 * margin + shape} must be smaller than config.image_size "
          f"({size}); random_bbox draws the hole's top from "
          f"[margin, size - margin - max_shape)."
        )
      if delta // 2 >= shape:
        raise ValueError(
          f"Empty hole possible ({name}): config.holes.max_bbox_delta // 2 "
          f"({delta // 2}) must be smaller than config.holes.max_bbox_shape "
          f"({shape})."
        )


def validate_local_size(
  spec: HoleSpec, local_size: int | Sequence[int]
) -> tuple[int, int]:
  """Checks that the local box fits the image and holds the largest hole."""
  local = _pair(local_size)
  for axis, name in enumerate(("height", "width")):
    if local[axis] > spec.image_size[axis]:
      raise ValueError(
        f"config.local_size ({local[axis]}) is larger than config.image_size "
        f"({spec.image_size[axis]}) ({name})."
      )
    if local[axis] < spec.max_bbox_shape[axis]:
      raise ValueError(
        f"config.local_size ({local[axis]}) is smaller than "
        f"config.holes.max_bbox_shape ({spec.max_bbox_shape[axis]}) "
        f"({name}): the local discriminator would not see the whole hole."
      )
  return local


def holes_from_words(words: Any, spec: HoleSpec, xp: Any = np) -> Any:
  """mmagic's random_bbox: [..., 4] int64 (top, left, h, w) from [..., >=4]
  int64 words (`HOLE_WORDS`).

  top0 ~ U[margin, size - margin - max_shape), dt ~ U{0 .. delta // 2};
  top = top0 + dt, h = max_shape - dt; the same, independently, for
  left and w.
  """
  corners, sides = [], []
  for axis in range(2):
    top_word, delta_word = HOLE_WORDS[2 * axis : 2 * axis + 2]
    size = spec.image_size[axis]
    shape = spec.max_bbox_shape[axis]
    margin = spec.min_margin[axis]
    start = draw_ints(words[..., top_word], margin, size - margin - shape)
    shrink = draw_ints(
      words[..., delta_word], 0, spec.max_bbox_delta[axis] // 2 + 1
    )
    corners.append(start + shrink)
    sides.append(shape - shrink)
  return xp.stack([corners[0], corners[1], sides[0], sides[1]], axis=-1)


def local_boxes(
  holes: Any,
  image_size: int | Sequence[int] = (256, 256),
  local_size: int | Sequence[int] = (128, 128),
  xp: Any = np,
) -> Any:
  """The local discriminator's box around each hole: [..., 4] (top, left,
  h, w), in the holes' integer type.

  As mmagic's bbox_utils: top' = max(0, top - (local - h) // 2), left'
  likewise, so the hole sits in the middle of the box. We also clip to
  top' <= size - local so the box stays inside the image; mmagic does not
  clip (a box running off the image would give a short patch there). With
  mmagic's numbers (256 image, 128 box and hole, margin 20, delta 40) the
  largest top' is 107 + 10 = 117 <= 128, so the clip never acts and the
  boxes equal mmagic's; tests/data/test_holes.py checks every case.
  """
  size = _pair(image_size)
  local = _pair(local_size)
  starts = []
  for axis in range(2):
    start = holes[..., axis] - (local[axis] - holes[..., axis + 2]) // 2
    starts.append(xp.clip(start, 0, size[axis] - local[axis]))
  sides = [xp.full_like(starts[0], side) for side in local]
  return xp.stack(starts + sides, axis=-1)


def hole_masks(holes: Any, height: int, width: int, xp: Any = np) -> Any:
  """[..., height, width, 1] float32 masks, 1 inside each (top, left, h, w)."""
  top, left = holes[..., 0, None], holes[..., 1, None]
  bottom, right = top + holes[..., 2, None], left + holes[..., 3, None]
  rows = xp.arange(height)
  cols = xp.arange(width)
  in_rows = (rows >= top) & (rows < bottom)  # [..., H]
  in_cols = (cols >= left) & (cols < right)  # [..., W]
  inside = in_rows[..., :, None] & in_cols[..., None, :]
  return xp.asarray(inside, dtype=xp.float32)[..., None]
