"""Checksums of a checkpoint's arrays, written at save and checked at restore.

orbax reads back whatever bytes are on disk: a checkpoint with a few bytes
overwritten (a bad disk, a broken copy) restores without complaint, and the
run then fails steps later, every resume alike. So every array's checksum
goes into the step's `meta`, and a restore recomputes it: a checkpoint that
differs is reported and set aside like a truncated one, and the one before
it is used. A restored state with NaN or inf is refused the same way.

The checksum of an array is two 32-bit sums over its raw bits: the words
weighted by 2i + 1 (odd, so any change of a single word changes it) and
their plain sum. It runs on a device, over one process's own copy of each
(replicated) array, so no process waits for another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def leaf_name(path: tuple) -> str:
  """`g_params/encoder/enc1/conv/kernel`: the same name for a leaf of a
  `GANState` and of a dict holding its fields."""
  parts = []
  for key in path:
    for attribute in ("name", "key", "idx"):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
  return "/".join(parts)


def _words(x: jax.Array) -> jax.Array:
  """The raw bits of x as uint32 words (flattened)."""
  size = jnp.dtype(x.dtype).itemsize
  if x.dtype == jnp.bool_ or size == 1:
    return x.astype(jnp.uint32).ravel()
  if size == 2:
    return (
      jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32).ravel()
    )
  return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()


@jax.jit
def _sums(leaves: list[jax.Array]) -> jax.Array:
  out = []
  for x in leaves:
    words = _words(x)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * 2 + 1
    out.append(jnp.stack([jnp.sum(words * weights), jnp.sum(words)]))
  return jnp.stack(out) if out else jnp.zeros((0, 2), jnp.uint32)


def _local_copy(x: Any) -> Any:
  """This process's whole copy of a replicated global array (a single
  device array, so the checksum needs no other process); host values stay
  as they are."""
  if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
    shard = x.addressable_shards[0]
    if shard.data.shape != x.shape:
      raise ValueError(f"array of shape {x.shape} is not replicated")
    return shard.data
  return x


def checksums(tree: Any) -> dict[str, str]:
  """{leaf name: 16 hex digits} of every array in `tree`."""
  paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(tree)[0])
  arrays = [jnp.asarray(_local_copy(x)) for x in leaves]
  sums = np.asarray(jax.device_get(_sums(arrays)))
  return {
    leaf_name(path): f"{int(a):08x}{int(b):08x}"
    for path, (a, b) in zip(paths, sums)
  }


def problems(tree: Any, recorded: Mapping[str, str] | None) -> list[str]:
  """What is wrong with restored `tree`: arrays whose checksum differs
  from the `recorded` one (None: a checkpoint from before checksums), and
  float arrays with NaN or inf."""
  found = []
  if recorded is not None:
    for name, value in checksums(tree).items():
      if name in recorded and recorded[name] != value:
        found.append(f"{name} does not match its checksum")
  named = jax.tree_util.tree_flatten_with_path(tree)[0]
  floats = [
    (leaf_name(path), _local_copy(x))
    for path, x in named
    if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
  ]
  finite = _all_finite([jnp.asarray(x) for _, x in floats])
  found += [
    f"{name} holds NaN or inf"
    for (name, _), ok in zip(floats, np.asarray(finite))
    if not ok
  ]
  return found


@jax.jit
def _all_finite(leaves: list[jax.Array]) -> jax.Array:
  if not leaves:
    return jnp.zeros((0,), bool)
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
