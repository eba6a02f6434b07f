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
