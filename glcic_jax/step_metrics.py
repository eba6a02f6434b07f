"""The metrics of the steps between two log lines, and the finiteness
check that guards every save.

Steps return their metrics on the devices; the loop keeps them there and
reads them all at once at the log interval (or before a save, a preview
or an evaluation), so the host never waits for a step to hand back its
losses. The check still names the first step whose values are not
finite, and because every save reads the pending metrics first, no state
after a non-finite step is ever written.
"""

from __future__ import annotations

import time

import jax
import numpy as np

# Steps dispatched ahead of the devices at most.
MAX_IN_FLIGHT = 2


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or inf; the last good checkpoint is kept."""


class Interval:
  """The steps since the last log line: their metrics, still on the
  devices until `drain`, and what the host already holds of them.

  Reading metrics only here, at the log interval or before anything is
  saved or evaluated, keeps the host from waiting for every step; the
  check still names the first step whose values are not finite.
  """

  def __init__(self):
    self.pending: list[tuple[int, str, dict[str, jax.Array]]] = []
    self.start_time, self.averages = time.time(), {}
    self.steps: dict[str, int] = {}

  def add(self, step: int, phase: str, metrics: dict[str, jax.Array]) -> None:
    self.pending.append((step, phase, metrics))
    self.steps[phase] = self.steps.get(phase, 0) + 1
    # At most MAX_IN_FLIGHT steps queued on the devices: a bounded number
    # of batches held, and the log's timing follows the devices.
    if len(self.pending) > MAX_IN_FLIGHT:
      jax.block_until_ready(self.pending[-MAX_IN_FLIGHT - 1][2])

  def drain(self) -> None:
    """Fetches the pending metrics; raises at the first non-finite one."""
    values = jax.device_get([m for _, _, m in self.pending])
    for (step, phase, _), fetched in zip(self.pending, values, strict=True):
      metrics = {k: float(v) for k, v in fetched.items()}
      bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
      if bad:
        raise NonFiniteLossError(
          f"non-finite values in step {step}: {bad}; stopping without "
          "saving this state (the last good checkpoint is kept)"
        )
      for name, value in metrics.items():
        self.averages.setdefault(f"{phase}/{name}", []).append(value)
    self.pending = []
