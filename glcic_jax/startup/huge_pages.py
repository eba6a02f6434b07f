"""Transparent huge pages for glibc's large allocations, on the CPU backend.

Why: XLA's CPU runtime allocates each execution's temporary buffer (every
intermediate of a training step) with malloc and frees it when the step
ends. Above glibc's mmap threshold (32 MiB at most) malloc maps fresh pages
for it and unmaps them on free, so every step faults in each 4 KiB page
again, which costs the CPU steps a large share of their time. glibc 2.35+
can mark its own mappings for transparent huge pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, used where the kernel's THP mode
is `madvise`): 2 MiB pages, a fraction of the faults (docs/performance.md,
"Huge pages").

glibc reads its tunables once, when the process starts, so the console
scripts (`commands.launch`) and benchmark scripts re-execute themselves once
with the tunable added, before any import that starts threads, and only
where JAX will run on the CPU (`backend`): GPU and TPU hosts run as started.
`GLCIC_HUGE_PAGES=0` opts out; a `glibc.malloc.hugetlb` already in
`GLIBC_TUNABLES` is left as it is. Programs that call `train_and_evaluate`
themselves can set the variable; on the CPU it logs the value to set
(`missing_huge_pages_hint`).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

from glcic_jax.startup import backend

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "GLCIC_HUGE_PAGES"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = THP_MODE_FILE) -> str | None:
  """The kernel's transparent-huge-page mode (`always`, `madvise` or
  `never`: the bracketed word of `path`), None where it cannot be read."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1 : end] if 0 <= start < end else None


def tunables_with_huge_pages(
  environ: Mapping[str, str],
  libc: tuple[str, str],
  mode: str | None,
) -> str | None:
  """The `GLIBC_TUNABLES` value that adds huge pages to malloc's own
  mappings, or None where it would change nothing: opted out, already
  set, not glibc 2.35+ (`libc` as `platform.libc_ver()` gives it), or a
  kernel whose THP mode is not `madvise` (`always` gives every mapping
  huge pages already; `never`, none)."""
  if environ.get(OPT_OUT, "1") == "0" or mode != "madvise":
    return None
  name, version = libc
  try:
    major_minor = tuple(int(v) for v in version.split(".")[:2])
  except ValueError:
    return None
  if name != "glibc" or major_minor < (2, 35):
    return None
  current = environ.get("GLIBC_TUNABLES", "")
  if TUNABLE in current:
    return None
  return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def _tunables_for_this_process() -> str | None:
  """`tunables_with_huge_pages` for this process's environment, C library
  and kernel."""
  return tunables_with_huge_pages(os.environ, platform.libc_ver(), thp_mode())


def reexec_with_huge_pages() -> None:
  """Replace this process by itself (same pid, arguments and interpreter)
  with `GLIBC_TUNABLES` extended, where JAX will run on the CPU and
  `tunables_with_huge_pages` says it helps; otherwise return. Call it
  before anything starts threads or reads input: nothing of this process
  survives the exec."""
  if backend.expected_platform() != "cpu":
    return
  tunables = _tunables_for_this_process()
  if tunables is None:
    return
  env = dict(os.environ, GLIBC_TUNABLES=tunables)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, env)
  except OSError as e:  # run on without; the tunable only saves time
    print(
      f"glcic_jax: could not re-execute with {TUNABLE}=1: {e}", file=sys.stderr
    )


def describe() -> str:
  """One line for the logs: whether malloc's mappings get huge pages."""
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  mode = thp_mode()
  if f"{TUNABLE}=1" in tunables:
    return f"malloc: transparent huge pages (GLIBC_TUNABLES={tunables})"
  if mode == "always":
    return "malloc: transparent huge pages (the kernel's THP mode is always)"
  return (
    f"malloc: 4 KiB pages (THP mode {mode}, {OPT_OUT}="
    f"{os.environ.get(OPT_OUT, 'unset')}, GLIBC_TUNABLES={tunables or 'unset'})"
  )


def missing_huge_pages_hint() -> str | None:
  """For code that calls `train_and_evaluate` itself (no restart): how to
  get huge pages where this process could have them and has not, or None."""
  tunables = _tunables_for_this_process()
  if tunables is None:
    return None
  return (
    "malloc maps each step's temporary buffer with 4 KiB pages; start "
    f"Python with GLIBC_TUNABLES={tunables} for faster CPU steps "
    f"(glcic_jax/startup/huge_pages.py; {OPT_OUT}=0 silences this)"
  )
