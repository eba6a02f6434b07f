"""What the processes of a multi-host run agree on: one decides, all follow.

Single-process runs skip the collectives.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def process0_steps(steps: list[int]) -> list[int]:
  """Process 0's checkpoint steps, on every process: a listing taken while
  another process moves a step aside, or through a lagging cache, would
  differ."""
  if jax.process_count() == 1:
    return steps
  count = int(multihost_utils.broadcast_one_to_all(np.int32(len(steps))))
  padded = np.zeros(count, np.int64)
  padded[: min(count, len(steps))] = steps[:count]
  return [int(s) for s in multihost_utils.broadcast_one_to_all(padded)]


def everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))
