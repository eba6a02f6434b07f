"""JAX's persistent compilation cache for the commands, on by default.

Why: every `glcic-*` process compiles its programs from scratch, and a
restarted, resumed or repeated run compiles exactly the same ones again:
most of a short run's start-up on a CPU (docs/performance.md, "Compilation
cache"), and longer still for the paper model on GPUs and TPUs, whose
preempted jobs restart often. JAX can keep compiled executables on disk,
keyed on the program, the jaxlib version, the XLA flags and the compile
options, so a changed model or flag compiles afresh and an unchanged one
is loaded.

`commands.launch` calls `enable()` before the command's work, so every
command uses `$GLCIC_COMPILATION_CACHE`, or by default
`$XDG_CACHE_HOME/glcic_jax/xla` (`~/.cache/glcic_jax/xla`), bounded at
`DEFAULT_MAX_BYTES` with least-recently-used eviction. Eviction also makes
JAX take a file lock around every read and write, so the processes of a
multi-GPU host, which compile and store the same programs at once, never
read a half-written entry. `GLCIC_COMPILATION_CACHE=0` turns it off; a
cache the user chose already (`JAX_COMPILATION_CACHE_DIR` or
`jax.config`) is used as it is. Where the folder cannot be created the
command runs without a cache and says so: a cache must never stop a run.
An entry that fails to load (another CPU's features, a truncated file) is
compiled again by JAX, with a warning naming the program. JAX never
overwrites an entry, so a truncated one (a process killed while writing
it) warns in every run until the folder is deleted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ENV = "GLCIC_COMPILATION_CACHE"
DEFAULT_MAX_BYTES = 4 * 1024**3
_OFF = ("", "0", "off", "false", "no", "none")


def default_dir(environ: Mapping[str, str]) -> str:
  """`$XDG_CACHE_HOME/glcic_jax/xla`, or `~/.cache/glcic_jax/xla`."""
  base = environ.get("XDG_CACHE_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache"
  )
  return os.path.join(base, "glcic_jax", "xla")


def chosen_dir(environ: Mapping[str, str]) -> str | None:
  """The cache folder `GLCIC_COMPILATION_CACHE` names (None for
  0/off/false/no/none or empty: no cache), else `default_dir`."""
  value = environ.get(ENV)
  if value is None:
    return default_dir(environ)
  if value.strip().lower() in _OFF:
    return None
  return os.path.expanduser(value)


def plan(
  environ: Mapping[str, str], configured: str | None, max_size: int
) -> tuple[dict[str, Any], str]:
  """The `jax.config` updates for this process and a log line saying where
  the cache is (or why there is none).

  `configured` and `max_size` are JAX's current settings; a folder set
  there (`JAX_COMPILATION_CACHE_DIR`, `jax.config`) wins over
  `chosen_dir`. A local folder is created here, and a size bound added
  unless one is set. A remote one (`gs://...`, which JAX reaches through
  etils) is passed on as it is, without the bound: JAX's eviction lock is
  a local file lock."""
  if configured:
    return {}, f"compilation cache: {configured} (JAX's own setting)"
  folder = chosen_dir(environ)
  if folder is None:
    return {}, f"compilation cache: off ({ENV}={environ.get(ENV)})"
  updates: dict[str, Any] = {"jax_compilation_cache_dir": folder}
  if "://" not in folder:
    try:
      os.makedirs(folder, exist_ok=True)
      if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{folder} is not writable")
    except OSError as e:
      return {}, (
        f"compilation cache: off, {folder} cannot be used ({e}); set {ENV} "
        "to a writable folder to keep compiled programs between runs"
      )
    if max_size == -1:
      updates["jax_compilation_cache_max_size"] = max_size = DEFAULT_MAX_BYTES
  limit = "unbounded" if max_size < 0 else f"at most {max_size / 1024**3:g} GiB"
  return updates, f"compilation cache: {folder} ({limit}; {ENV}=0 turns it off)"


def enable() -> str:
  """Point JAX's persistent cache where `plan` says, before any
  compilation, and return the log line."""
  import jax

  updates, message = plan(
    os.environ,
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_compilation_cache_max_size,
  )
  for name, value in updates.items():
    jax.config.update(name, value)
  return message
