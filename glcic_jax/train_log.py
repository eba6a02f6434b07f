"""What the training loop logs: its start and one line per log interval."""

from __future__ import annotations

import jax
from absl import logging

from glcic_jax import train_state


def log_start(config, mesh, state, global_batch: int, start: int) -> None:
  logging.info(
    "Global batch %d = %d per device x %d devices (%d processes); "
    "starting at step %d of %d.",
    global_batch,
    config.per_device_batch_size,
    mesh.devices.size,
    jax.process_count(),
    start,
    config.total_steps,
  )
  ref = config.get("reference_global_batch_size", 0)
  if ref and ref != global_batch:
    logging.warning(
      "Config %s reproduces mmagic's results with a global batch of %d; "
      "this run uses %d. Results will differ from the reference.",
      config.name,
      ref,
      global_batch,
    )
  logging.info(
    "Config %s: generator %s parameters, discriminators %s.",
    config.name,
    f"{train_state.parameter_count(state.g_params):,}",
    f"{train_state.parameter_count(state.d_params):,}",
  )


def minutes_and_seconds(seconds: float) -> str:
  """`4m05s`: the log's ETA and a command's run time."""
  minutes, rest = divmod(int(seconds), 60)
  return f"{minutes}m{rest:02d}s"


def log_interval(done: int, total: int, scalars: dict[str, float]) -> None:
  """One line per log interval: the step, each phase's mean losses, speed."""
  phases: dict[str, list[str]] = {}
  for key, value in sorted(scalars.items()):
    if "/" in key:
      phase, name = key.split("/", 1)
      phases.setdefault(phase, []).append(f"{name} {value:.4g}")
  losses = "; ".join(f"{p}: {', '.join(v)}" for p, v in phases.items())
  rate = scalars["steps_per_second"]
  eta = (total - done) / rate if rate > 0 else 0
  peak = f", {scalars['mfu']:.1%} of peak" if "mfu" in scalars else ""
  logging.info(
    "step %d/%d %s | %.1f images/s (%.1f/device, %.3g TFLOP/s/device%s) | "
    "%d skipped files | ETA %s",
    done,
    total,
    losses,
    scalars["images_per_second"],
    scalars["images_per_second_per_device"],
    scalars["tflops_per_device"],
    peak,
    scalars["skipped_files"],
    minutes_and_seconds(eta),
  )
