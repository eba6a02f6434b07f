"""Every random number of the input pipeline: counter-based words per
example, and the one rule that turns a word into an integer.

The random words of an example are Philox(key(seed, stream),
counter=position), where position is the example's global position in the
training stream (or its index in the source for evaluation). A crop or a
hole is therefore a function of (seed, position) only: it does not depend
on which process decodes the example, how many processes there are, or
where a run was resumed.

Integers are drawn from a 32-bit word u as low + floor(u * (high - low) /
2**32), numpy `randint`'s half-open [low, high). The bias of this
multiply-shift (at most (high - low) / 2**32, under 1e-7 here) is far below
what a 20,000-draw chi-square test can see.

TensorFlow is imported by the functions that need it, so that `draw_ints`
and the word layout serve the TensorFlow-free hole sampler of
`glcic_jax.inpaint` too.
"""

from __future__ import annotations

from typing import Any

# Streams keep the training draws and the fixed evaluation draws apart.
TRAIN_STREAM = 0
EVAL_STREAM = 1

# Words of an example: 0-3 the hole (`holes.HOLE_WORDS`), 4 and 5 the crop
# offsets, 6 and 7 unused. Eight words are two Philox blocks, so position p
# owns counters 2p and 2p + 1.
WORDS_PER_EXAMPLE = 8
CROP_TOP_WORD = 4
CROP_LEFT_WORD = 5
_PHILOX = 1  # tf.random.Algorithm.PHILOX


def draw_ints(words: Any, low: Any, high: Any) -> Any:
  """Integers in [low, high) from 32-bit words held as int64: NumPy arrays
  or TensorFlow tensors alike (the bounds broadcast, and for tensors must
  be int64 too). Pure arithmetic, so both run these very lines."""
  return low + words * (high - low) // 2**32


def philox_key(seed: int, stream: int) -> Any:
  """The Philox key of (seed, stream), a [1] uint64 tensor."""
  from glcic_jax.data.tf_runtime import tf

  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(
    seed=tf.constant([seed, stream], tf.int64)
  )
  return key


def example_words(key: Any, position: Any) -> Any:
  """The [WORDS_PER_EXAMPLE] random words of one example, int64 in
  [0, 2**32)."""
  from glcic_jax.data.tf_runtime import tf

  counter = tf.stack(
    [tf.cast(position, tf.uint64) * 2, tf.constant(0, tf.uint64)]
  )
  words = tf.raw_ops.StatelessRandomUniformFullIntV2(
    shape=[WORDS_PER_EXAMPLE],
    key=key,
    counter=counter,
    alg=_PHILOX,
    dtype=tf.uint32,
  )
  return tf.cast(words, tf.int64)
