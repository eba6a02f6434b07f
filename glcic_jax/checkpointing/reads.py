"""Reading one checkpoint step: on this process alone, retried.

Each process reads alone: orbax's own restore ends in a barrier of all
processes, where a process whose read failed (and that goes on to retry or
to the step before) would leave the others waiting for ever. The callers
agree on the outcome afterwards (`glcic_jax.multihost`). A failed read is retried
first: on cloud storage most failures are transient, while a corrupt file
fails every attempt.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

# Seconds before each new attempt at a failed read.
READ_RETRY_DELAYS = (1.0, 3.0)


class CheckpointError(RuntimeError):
  """A checkpoint exists but could not be read (corrupt, truncated, ...)."""


def read_step(
  workdir: epath.Path, step: int, what: str, items: dict[str, Any]
) -> Any:
  """Restores the orbax Composite `items` of `workdir/step` on this process;
  a read that fails every attempt raises `CheckpointError`, naming `what`."""
  reader = _process_local_reader()
  _drop_abandoned_read_noise()
  for attempt, delay in enumerate((*READ_RETRY_DELAYS, None)):
    try:
      return reader.restore(
        workdir / str(step), args=ocp.args.Composite(**items)
      )
    except Exception as e:  # orbax and tensorstore raise many types
      if delay is None:
        raise CheckpointError(
          f"{what} step {step} in {workdir} could not be restored "
          f"({attempt + 1} attempts): {short_error(e)}"
        ) from e
      logging.warning(
        "Reading %s step %d in %s failed (%s); retrying in %.0f s.",
        what.lower(),
        step,
        workdir,
        short_error(e),
        delay,
      )
      time.sleep(delay)


def _process_local_reader() -> ocp.Checkpointer:
  """An orbax checkpointer whose reads involve this process only (no
  barriers with the others); arrays still come back with the global
  shardings asked for, each process reading its own shards."""
  here = jax.process_index()
  options = ocp.options.MultiprocessingOptions(
    primary_host=here,
    active_processes={here},
    barrier_sync_key_prefix=f"glcic_jax_read_p{here}",
  )
  return ocp.Checkpointer(
    ocp.CompositeCheckpointHandler(
      composite_options=ocp.CompositeOptions(multiprocessing_options=options)
    ),
    multiprocessing_options=options,
  )


def _drop_abandoned_read_noise() -> None:
  """Drops the noise orbax's abandoned reads make after a failed restore.

  When one array fails to read, orbax raises and closes its event loop while
  tensorstore completes the other reads; each then reports "Event loop is
  closed" to `sys.unraisablehook` (unstarted reads warn): hundreds of
  tracebacks that would bury the one warning that matters."""
  warnings.filterwarnings(
    "ignore",
    message=r"coroutine '_read_array_index_and_device_put' was never awaited",
    category=RuntimeWarning,
  )
  previous = sys.unraisablehook
  if getattr(previous, "drops_orbax_reads", False):
    return

  def hook(unraisable: Any) -> None:
    code = getattr(unraisable.object, "cr_code", None)
    if str(unraisable.exc_value) != "Event loop is closed" and (
      code is None or "orbax" not in code.co_filename
    ):
      previous(unraisable)

  hook.drops_orbax_reads = True
  sys.unraisablehook = hook


def short_error(e: BaseException, limit: int = 300) -> str:
  """The root cause's first line, capped: orbax wraps tensorstore's precise
  error in one whose message is a whole tensorstore spec."""
  while e.__cause__ is not None:
    e = e.__cause__
  lines = str(e).strip().splitlines()
  text = lines[0] if lines else ""
  if len(text) > limit:
    text = text[:limit] + "..."
  return f"{type(e).__name__}: {text}"
