"""Where arrays live: one 1-D ('data',) mesh over every device of every host.

Data parallelism only: the GAN state is replicated, batches are split along
their first axis. A jitted step over a batch sharded this way computes
BatchNorm statistics over the *global* batch (XLA inserts the all-reduce),
which is SyncBN, what mmagic trains with. This module is the only place that
declares shardings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data',) mesh over `devices` (default: all devices of all hosts).

  Devices are in `jax.devices()` order, which groups each process's devices
  together, so each process's rows of the global batch are contiguous.
  """
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(
    np.array(devices),
    (DATA_AXIS,),
    axis_types=(jax.sharding.AxisType.Auto,),
  )


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def single_device() -> jax.sharding.Sharding:
  """This process's first device: where single-host tools (eval's restore,
  export, completion) put arrays."""
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def state_sharding(mesh: Mesh, state: Any) -> Any:
  """The state's sharding tree: every leaf replicated."""
  return jax.tree.map(lambda _: replicated(mesh), state)


def global_batch(
  local_batch: Mapping[str, np.ndarray], mesh: Mesh
) -> dict[str, jax.Array]:
  """This process's slice of a global batch -> global arrays split on 'data'.

  Each process passes its own contiguous rows (process p of P holds rows
  [p*B/P, (p+1)*B/P)); the result is the [B, ...] global batch.
  """
  sharding = batch_sharded(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
    for k, v in local_batch.items()
  }


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over devices and processes."""
  n_dev, n_proc = mesh.devices.size, jax.process_count()
  if global_batch_size % n_dev or global_batch_size % n_proc:
    raise ValueError(
      f"global batch {global_batch_size} does not split over {n_dev} devices"
      f" in {n_proc} processes (config.per_device_batch_size x devices)"
    )


def jit_step(step_fn: Callable, mesh: Mesh, state: Any) -> Callable:
  """`jax.jit` of a `(state, batch) -> (state, metrics)` step on the mesh.

  The state is donated (updated in place on the devices) and stays
  replicated; metrics come back replicated scalars.
  """
  s_sharding = state_sharding(mesh, state)
  return jax.jit(
    step_fn,
    in_shardings=(s_sharding, batch_sharded(mesh)),
    out_shardings=(s_sharding, replicated(mesh)),
    donate_argnums=0,
  )


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places a host-identical pytree on every device of the mesh.

  Every process must pass the same values (they are built from the same
  seed or restored from the same checkpoint).
  """
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)
