"""The `meta` item of a checkpoint: what every step records, and the
format check. Plain JSON, no orbax."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import jax
from etils import epath

import glcic_jax

# Bumped when the layout of the items changes; restore refuses newer formats.
FORMAT_VERSION = 1


def full_meta(step: int, extra: Mapping[str, Any] | None) -> dict[str, Any]:
  """What every checkpoint records, plus the caller's fields."""
  extra = dict(extra or {})
  if "step" in extra and int(extra["step"]) != step:
    raise ValueError(f"meta step {extra['step']} != state step {step}")
  meta = {
    "step": step,
    "data_position": step,  # one global batch per step
    "format": FORMAT_VERSION,
    "glcic_jax_version": glcic_jax.__version__,
    "jax_version": jax.__version__,
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "saved_at": datetime.datetime.now(datetime.UTC).isoformat(),
  }
  meta.update(extra)
  meta["step"], meta["format"] = step, FORMAT_VERSION
  return meta


def json_ready(value: dict[str, Any], what: str) -> dict[str, Any]:
  """Fails before anything is written, not later in the async writer."""
  try:
    json.dumps(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"checkpoint {what} is not JSON-serialisable: {e}") from e
  return value


def check_format(meta: dict[str, Any], step: int, workdir: epath.Path) -> None:
  fmt = meta.get("format", 0)
  if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
    raise ValueError(
      f"Checkpoint step {step} in {workdir} has format {fmt!r}; this "
      f"glcic-jax {glcic_jax.__version__} reads format <= {FORMAT_VERSION}."
    )
