"""`config.data.source = 'synthetic'`: random images made on the devices,
mmagic's holes, no TensorFlow.

For benchmarks and smoke runs on machines without TensorFlow (the GPU
host this project measures on has none) and for measuring a loop whose
input costs nothing. The holes are the real sampler's (`holes`, from
words of a NumPy generator seeded by (seed, step)); the images are uniform
random levels drawn on the devices, so the host ships only the boxes. A
step's global batch depends on (seed, step) alone: the same for any
number of processes or devices (JAX's partitionable threefry), so exact
and elastic resume hold as for the real sources.

This is the one source built with JAX instead of tf.data.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from glcic_jax import sharding
from glcic_jax.data import holes

# Seeds the synthetic holes apart from the pipeline's streams.
_HOLE_STREAM = 2


def _images(key: jax.Array, step: jax.Array, shape: tuple[int, ...]):
  return jax.random.randint(
    jax.random.fold_in(key, step), shape, 0, 256, dtype=np.int32
  ).astype(np.uint8)


def batches(
  config: ml_collections.ConfigDict,
  mesh: Mesh,
  *,
  global_batch_size: int,
  start_step: int = 0,
) -> Iterator[dict]:
  """Infinite batches from `start_step` on: `image` a global uint8 array
  on the mesh, `bbox` and `local_bbox` this process's int32 rows."""
  spec = holes.HoleSpec.from_config(config)
  local_size = holes.validate_local_size(spec, config.local_size)
  local = global_batch_size // jax.process_count()
  rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
  shape = (global_batch_size, *spec.image_size, 3)
  make = jax.jit(
    _images,
    static_argnums=2,
    out_shardings=sharding.batch_sharded(mesh),
  )
  key = jax.random.key(config.seed)
  for step in range(start_step, 2**62):
    rng = np.random.default_rng([config.seed, _HOLE_STREAM, step])
    words = rng.integers(0, 2**32, (global_batch_size, 4), dtype=np.int64)
    hole = holes.holes_from_words(words, spec)
    box = holes.local_boxes(hole, spec.image_size, local_size)
    yield {
      "image": make(key, step, shape),
      "bbox": hole[rows].astype(np.int32),
      "local_bbox": box[rows].astype(np.int32),
    }
