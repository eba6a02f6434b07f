"""The one path layer for the files written and read beside orbax's.

Eval JSON and PNG, completions.png, previews, completed photos, exported
weights and the inputs of completion all go through `etils.epath`, the
layer orbax writes checkpoints with: a `gs://` workdir gets them in the
bucket, not in a local folder named `gs:`. Writes go to a temporary name
first and are renamed into place, so an interrupted write never leaves a
truncated file under the final name.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import Any

from etils import epath

PathLike = str | os.PathLike


def as_path(path: PathLike) -> epath.Path:
  """`path` on its filesystem (local, gs://, s3://, ...)."""
  return epath.Path(path)


def is_remote(path: PathLike) -> bool:
  """Whether `path` names a URL filesystem (gs://, s3://, ...)."""
  return "://" in os.fspath(path)


def is_dir(path: PathLike) -> bool:
  return as_path(path).is_dir()


def is_file(path: PathLike) -> bool:
  return as_path(path).is_file()


def read_bytes(path: PathLike) -> bytes:
  return as_path(path).read_bytes()


def list_dir(path: PathLike) -> list[str]:
  """The entries of a folder, as paths (unsorted)."""
  return [os.fspath(p) for p in as_path(path).iterdir()]


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path`, creating its folder, replacing it whole."""
  target = as_path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
  partial.write_bytes(data)
  partial.replace(target)


def write_text(path: PathLike, text: str) -> None:
  write_bytes(path, text.encode())


def json_text(value: Any, indent: int | None = 2) -> str:
  """Strict JSON: NaN and inf (a diverged model's metrics) become null, as
  no JSON parser but Python's reads a bare NaN."""

  def finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
      return None
    if isinstance(v, dict):
      return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
      return [finite(x) for x in v]
    return v

  return json.dumps(finite(value), indent=indent, allow_nan=False)


def check_writable(folder: PathLike, what: str) -> None:
  """Creates `folder` and writes (then removes) a file there, before long
  work whose results would go there; OSError naming `what` if it cannot."""
  target = as_path(folder)
  probe = target / f".write-check-{uuid.uuid4().hex[:8]}"
  try:
    target.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    raise OSError(f"Cannot write {what} to {folder}: {e}") from e
