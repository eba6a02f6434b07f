"""The mesh helpers: replicated state, batches split, the state donated."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from glcic_jax import sharding


def test_jit_step_updates_the_state_in_place():
  """The state is donated: XLA writes the new state over the old one's
  buffers, so a step holds one copy of the parameters and Adam moments,
  not two, and the old arrays are gone."""
  mesh = sharding.create_mesh()
  state = sharding.put_replicated(
    {"w": np.zeros((256, 256), np.float32), "n": np.zeros((), np.int32)}, mesh
  )
  batch = sharding.global_batch({"x": np.ones((8, 256), np.float32)}, mesh)

  def step(state, batch):
    w = state["w"] + jnp.mean(batch["x"], axis=0)
    return {"w": w, "n": state["n"] + 1}, {"w_sum": jnp.sum(w)}

  jitted = sharding.jit_step(step, mesh, state)
  memory = jitted.lower(state, batch).compile().memory_analysis()
  assert memory.alias_size_in_bytes >= 256 * 256 * 4
  new, metrics = jitted(state, batch)
  assert state["w"].is_deleted() and not new["w"].is_deleted()
  assert float(metrics["w_sum"]) == 256 * 256 and int(new["n"]) == 1
