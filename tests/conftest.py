"""Test set-up: 8 simulated CPU devices, no GPU for TensorFlow, one
persistent compilation cache for the session, the longest files first.

The device count must be fixed before JAX creates its backends, so it is set
here, at import time of the first conftest. The cache goes through the
environment so that training subprocesses share it: the tiny config's steps
are compiled by many tests and by every restarted training process, and a
restarted job loads them from the cache as a user's restarted job would.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="glcic_jax_compilation_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# The longest files first. With pytest-xdist's `--dist loadfile` (pyproject)
# each worker takes whole files in collection order; alphabetically the
# long training files came last, and one of them ran alone at the end.
_LONG_FILES_FIRST = (
  "test_train.py",
  "test_train_steps.py",
  "test_train_runs.py",
  "test_interop.py",
  "test_weights.py",
  "test_mixed_precision.py",
  "test_eval.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_LONG_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
