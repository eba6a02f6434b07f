"""mmagic's rectangular holes and local boxes, as TensorFlow graph ops.

The input pipeline and `sample_bboxes` call the same functions, so the hole
distribution checked in tests is the one the model trains on.

Randomness is counter based: the random words of an example are
Philox(key(seed, stream), counter=position), where position is the example's
global position in the training stream (or its index in the source for
evaluation). A box is therefore a function of (seed, position) only: it does
not depend on which process decodes the example, how many processes there
are, or where a run was resumed. `example_bits` computes one example's words
and `example_bits_range` a contiguous run of them in one call; both return
the same numbers for the same position.

Integers are drawn from a 32-bit word u as low + floor(u * (high - low) /
2**32), numpy `randint`'s half-open [low, high). The bias of this
multiply-shift (at most (high - low) / 2**32, under 1e-7 here) is far below
what a 20,000-draw chi-square test can see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# Streams keep the training draws and the fixed evaluation draws apart.
TRAIN_STREAM = 0
EVAL_STREAM = 1

# Words of an example: 0 top0, 1 dt, 2 left0, 3 dl (the hole); 4, 5 the
# crop offsets (read by the input pipeline); 6, 7 unused. Eight words are
# two Philox blocks, so position p owns counters 2p and 2p + 1.
WORDS_PER_EXAMPLE = 8
CROP_TOP_WORD = 4
CROP_LEFT_WORD = 5
_PHILOX = 1  # tf.random.Algorithm.PHILOX


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(value, int | np.integer):
    return int(value), int(value)
  height, width = value
  return int(height), int(width)


@dataclasses.dataclass(frozen=True)
class HoleSpec:
  """The numbers of mmagic's `random_bbox`, per axis (height, width).

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
  def from_config(cls, config, data_config=None) -> HoleSpec:
    """Reads config.image_size and data_config (default config.data)."""
    data = config.data if data_config is None else data_config
    return cls(
      image_size=config.image_size,
      max_bbox_shape=data.max_bbox_shape,
      max_bbox_delta=data.max_bbox_delta,
      min_margin=data.min_margin,
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
          f"Hole config ({name}): config.data.max_bbox_shape ({shape}) must "
          f"be >= 1, config.data.max_bbox_delta ({delta}) and "
          f"config.data.min_margin ({margin}) >= 0."
        )
      if 2 * margin + shape >= size:
        raise ValueError(
          f"Hole does not fit ({name}): 2 * config.data.min_margin "
          f"({margin}) + config.data.max_bbox_shape ({shape}) = "
          f"{2 * margin + shape} must be smaller than config.image_size "
          f"({size}); random_bbox draws the hole's top from "
          f"[margin, size - margin - max_shape)."
        )
      if delta // 2 >= shape:
        raise ValueError(
          f"Empty hole possible ({name}): config.data.max_bbox_delta // 2 "
          f"({delta // 2}) must be smaller than config.data.max_bbox_shape "
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
        f"config.data.max_bbox_shape ({spec.max_bbox_shape[axis]}) "
        f"({name}): the local discriminator would not see the whole hole."
      )
  return local


def philox_key(seed: int, stream: int) -> tf.Tensor:
  """The Philox key of (seed, stream), a [1] uint64 tensor."""
  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(
    seed=tf.constant([seed, stream], tf.int64)
  )
  return key


def example_bits(key: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
  """The [WORDS_PER_EXAMPLE] uint32 random words of one example."""
  counter = tf.stack(
    [tf.cast(position, tf.uint64) * 2, tf.constant(0, tf.uint64)]
  )
  return tf.raw_ops.StatelessRandomUniformFullIntV2(
    shape=[WORDS_PER_EXAMPLE],
    key=key,
    counter=counter,
    alg=_PHILOX,
    dtype=tf.uint32,
  )


def example_bits_range(key: tf.Tensor, start: int, count: int) -> tf.Tensor:
  """[count, WORDS_PER_EXAMPLE] words of positions start .. start+count-1.

  Philox fills the output block by block from the start counter, so row i
  here is exactly `example_bits(key, start + i)`, drawn in one op.
  """
  counter = tf.constant([2 * start, 0], tf.uint64)
  return tf.raw_ops.StatelessRandomUniformFullIntV2(
    shape=[count, WORDS_PER_EXAMPLE],
    key=key,
    counter=counter,
    alg=_PHILOX,
    dtype=tf.uint32,
  )


def uniform_ints(words: tf.Tensor, low, high) -> tf.Tensor:
  """int32 in [low, high) from uint32 words (numpy randint's convention)."""
  low = tf.cast(low, tf.int64)
  span = tf.cast(high, tf.int64) - low
  scaled = tf.bitwise.right_shift(tf.cast(words, tf.int64) * span, 32)
  return tf.cast(low + scaled, tf.int32)


def bboxes_from_bits(bits: tf.Tensor, spec: HoleSpec) -> tf.Tensor:
  """mmagic's random_bbox: [..., 4] int32 (top, left, h, w) from words.

  top0 ~ U[margin, size - margin - max_shape), dt ~ U{0 .. delta // 2};
  top = top0 + dt, h = max_shape - dt; the same, independently, for
  left and w.
  """
  corners, shrinks = [], []
  for axis, (top_word, delta_word) in enumerate(((0, 1), (2, 3))):
    size = spec.image_size[axis]
    shape = spec.max_bbox_shape[axis]
    margin = spec.min_margin[axis]
    start = uniform_ints(bits[..., top_word], margin, size - margin - shape)
    shrink = uniform_ints(
      bits[..., delta_word], 0, spec.max_bbox_delta[axis] // 2 + 1
    )
    corners.append(start + shrink)
    shrinks.append(shape - shrink)
  return tf.stack([corners[0], corners[1], shrinks[0], shrinks[1]], axis=-1)


def local_boxes(
  bboxes,
  image_size: int | Sequence[int] = (256, 256),
  local_size: int | Sequence[int] = (128, 128),
) -> tf.Tensor:
  """The local discriminator's box around each hole: [..., 4] int32.

  As mmagic's bbox_utils: top' = max(0, top - (local - h) // 2), left'
  likewise, so the hole sits in the middle of the box. We also clip to
  top' <= size - local so the box stays inside the image; mmagic does not
  clip (a box running off the image would give a short patch there). With
  mmagic's numbers (256 image, 128 box and hole, margin 20, delta 40) the
  largest top' is 107 + 10 = 117 <= 128, so the clip never acts and the
  boxes equal mmagic's; tests/test_masks.py checks every case.
  """
  bboxes = tf.convert_to_tensor(bboxes, tf.int32)
  size = _pair(image_size)
  local = _pair(local_size)
  starts = []
  for axis in range(2):
    start = bboxes[..., axis] - (local[axis] - bboxes[..., axis + 2]) // 2
    starts.append(tf.clip_by_value(start, 0, size[axis] - local[axis]))
  sides = [tf.fill(tf.shape(starts[0]), side) for side in local]
  return tf.stack(starts + sides, axis=-1)


def bbox_masks(bboxes, height: int, width: int) -> tf.Tensor:
  """[..., height, width, 1] float32 masks, 1 inside each (top, left, h, w)."""
  bboxes = tf.convert_to_tensor(bboxes, tf.int32)
  top, left = bboxes[..., 0, None], bboxes[..., 1, None]
  bottom, right = top + bboxes[..., 2, None], left + bboxes[..., 3, None]
  rows = tf.range(height)
  cols = tf.range(width)
  in_rows = (rows >= top) & (rows < bottom)  # [..., H]
  in_cols = (cols >= left) & (cols < right)  # [..., W]
  inside = in_rows[..., :, None] & in_cols[..., None, :]
  return tf.cast(inside, tf.float32)[..., None]


def sample_bboxes(
  seed: int,
  n: int,
  image_size: int | Sequence[int] = (256, 256),
  max_bbox_shape: int | Sequence[int] = (128, 128),
  max_bbox_delta: int | Sequence[int] = (40, 40),
  min_margin: int | Sequence[int] = (20, 20),
) -> np.ndarray:
  """The holes of training positions 0 .. n-1 for `seed`: [n, 4] int32.

  These are exactly the `bbox` values the training pipeline yields for its
  first n examples (global order) when config.seed == seed, drawn with one
  vectorised op.
  """
  spec = HoleSpec(image_size, max_bbox_shape, max_bbox_delta, min_margin)
  bits = example_bits_range(philox_key(seed, TRAIN_STREAM), 0, n)
  return bboxes_from_bits(bits, spec).numpy()
