"""The mesh helpers: steps traced with the mesh in view, batches split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from glcic_jax import conv_layers, sharding


def test_jit_step_traces_with_the_mesh_in_view():
  """Layers see how many devices split the batch they trace (the CPU's
  Winograd threshold counts per device); outside a mesh they see 1."""
  seen = []

  def step(state, batch):
    seen.append(conv_layers.devices_sharing_batch())
    return state, {"sum": jnp.sum(batch["x"])}

  for n in (8, 2):
    mesh = sharding.create_mesh(jax.devices()[:n])
    state = sharding.put_replicated({"w": np.zeros(3, np.float32)}, mesh)
    batch = sharding.global_batch({"x": np.ones((n, 4), np.float32)}, mesh)
    _, metrics = sharding.jit_step(step, mesh, state)(state, batch)
    assert float(metrics["sum"]) == 4 * n
  assert seen == [8, 2]
  assert conv_layers.devices_sharing_batch() == 1
  traced = jax.jit(lambda x: x * conv_layers.devices_sharing_batch())(1.0)
  assert float(traced) == 1.0  # a jit without a mesh


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
