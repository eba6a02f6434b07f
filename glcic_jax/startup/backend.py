"""The platform JAX will run on, judged before JAX is imported.

The huge-page restart (`huge_pages`) must happen before anything starts
threads, so before JAX is imported, and it is for the CPU backend only. JAX
picks an accelerator when its plugin is installed and the device is
present, unless `JAX_PLATFORMS` names the platforms; this module reads the
same facts without loading JAX.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping

# Distributions that give JAX an accelerator, and a device file whose
# presence shows one is attached.
_ACCELERATORS = (
  ("gpu", ("jax-cuda12-plugin", "jax-cuda13-plugin"), "/dev/nvidiactl"),
  ("gpu", ("jax-rocm60-plugin", "jax-rocm7-plugin"), "/dev/kfd"),
  ("tpu", ("libtpu", "libtpu-nightly"), "/dev/accel0"),
  ("tpu", ("libtpu", "libtpu-nightly"), "/dev/vfio/0"),
)


def _installed() -> set[str]:
  names = set()
  for dist in importlib.metadata.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    names.add(name)
  return names


def expected_platform(
  environ: Mapping[str, str] | None = None,
  installed: Iterable[str] | None = None,
  exists: Callable[[str], bool] = os.path.exists,
) -> str:
  """'cpu', 'gpu' or 'tpu' (or what `JAX_PLATFORMS` names first).

  `environ`, `installed` (distribution names) and `exists` default to this
  process's; tests pass their own.
  """
  environ = os.environ if environ is None else environ
  named = environ.get("JAX_PLATFORMS") or environ.get("JAX_PLATFORM_NAME")
  if named:
    return named.split(",")[0].strip().lower()
  installed = _installed() if installed is None else set(installed)
  hidden = environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
  for platform, dists, device in _ACCELERATORS:
    if installed & set(dists) and exists(device):
      if not (hidden and device == "/dev/nvidiactl"):
        return platform
  return "cpu"
