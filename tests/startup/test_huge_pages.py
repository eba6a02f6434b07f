"""The start-up restart that gives malloc's large mappings huge pages."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from glcic_jax.startup import backend, huge_pages

GLIBC = ("glibc", "2.36")


@pytest.mark.parametrize(
  "environ, libc, mode, expected",
  [
    ({}, GLIBC, "madvise", "glibc.malloc.hugetlb=1"),
    (
      {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
      GLIBC,
      "madvise",
      "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
    ),
    # Already chosen (also what stops a second restart), or opted out.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise", None),
    ({"GLCIC_HUGE_PAGES": "0"}, GLIBC, "madvise", None),
    ({"GLCIC_HUGE_PAGES": "1"}, GLIBC, "madvise", "glibc.malloc.hugetlb=1"),
    # glibc before the tunable, or not glibc; kernels where it changes nothing.
    ({}, ("glibc", "2.34"), "madvise", None),
    ({}, ("", ""), "madvise", None),
    ({}, GLIBC, "always", None),
    ({}, GLIBC, "never", None),
    ({}, GLIBC, None, None),
  ],
)
def test_tunables_with_huge_pages(environ, libc, mode, expected):
  assert huge_pages.tunables_with_huge_pages(environ, libc, mode) == expected


def test_thp_mode_reads_the_bracketed_word(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert huge_pages.thp_mode(str(path)) == "madvise"
  assert huge_pages.thp_mode(str(tmp_path / "missing")) is None


def test_describe_says_which_pages(monkeypatch):
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
  assert huge_pages.describe().startswith("malloc: transparent huge pages")
  monkeypatch.delenv("GLIBC_TUNABLES")
  monkeypatch.setattr(huge_pages, "thp_mode", lambda: "always")
  assert huge_pages.describe().startswith("malloc: transparent huge pages")
  monkeypatch.setattr(huge_pages, "thp_mode", lambda: "madvise")
  assert huge_pages.describe().startswith("malloc: 4 KiB pages")


def test_hint_for_processes_started_without(monkeypatch):
  """`train_and_evaluate` logs it on the CPU: where the restart would add
  the tunable, the hint names the exact GLIBC_TUNABLES value."""
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.delenv("GLCIC_HUGE_PAGES", raising=False)
  expected = huge_pages.tunables_with_huge_pages(
    {}, platform.libc_ver(), huge_pages.thp_mode()
  )
  hint = huge_pages.missing_huge_pages_hint()
  assert (hint is None) == (expected is None)
  if hint:
    assert f"GLIBC_TUNABLES={expected}" in hint
  monkeypatch.setenv("GLCIC_HUGE_PAGES", "0")
  assert huge_pages.missing_huge_pages_hint() is None
  monkeypatch.setenv("GLCIC_HUGE_PAGES", "1")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
  assert huge_pages.missing_huge_pages_hint() is None


# Restarts with the tunable, then counts the page faults of a jitted step
# whose temporary buffer (three 16 MiB intermediates, kept apart by
# batch-wide reductions as BatchNorm's are) is above malloc's mmap
# threshold, as the training steps' are (71 MB for the demo's).
CHILD = """
import json, os, resource, sys
from glcic_jax.startup import backend, huge_pages
huge_pages.reexec_with_huge_pages()
import jax, jax.numpy as jnp

def norm(y):
  return y / (1 + (y * y).mean(0))

@jax.jit
def step(x, w):
  y1 = norm(x @ w)
  y2 = norm(y1 @ w)
  return (norm(y2 @ w) * y1).sum()

x, w = jnp.ones((16384, 256)), jnp.eye(256)
temp = step.lower(x, w).compile().memory_analysis().temp_size_in_bytes
for _ in range(3):
  step(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  step(x, w).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"),
                  "argv": sys.argv[1:], "faults": faults, "temp": temp}))
"""


def _child(**env: str) -> dict:
  environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  environ.update(XLA_FLAGS="", **{"JAX_PLATFORMS": "cpu", **env})
  out = subprocess.run(
    [sys.executable, "-c", CHILD, "an-argument"],
    env=environ,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_restart_keeps_arguments_and_cuts_page_faults():
  """On this machine: where the tunable applies, the restarted process has
  it, keeps its arguments, and faults far fewer pages per step than an
  opted-out one (about 15,600 against 570 here); elsewhere it runs as
  started."""
  expected = huge_pages.tunables_with_huge_pages(
    {}, platform.libc_ver(), huge_pages.thp_mode()
  )
  on, off = _child(), _child(GLCIC_HUGE_PAGES="0")
  assert on["tunables"] == expected and off["tunables"] is None
  assert on["argv"] == off["argv"] == ["an-argument"]
  assert on["temp"] > 32 * 2**20  # above glibc's largest mmap threshold
  if expected is not None:
    assert off["faults"] > on["temp"] / 4096 / 2, off  # 4 KiB pages, every step
    assert on["faults"] < off["faults"] / 4, (on, off)


def test_gpu_and_tpu_hosts_run_as_started():
  """Where JAX will run on an accelerator the process is not restarted
  (`JAX_PLATFORMS` names it here; an installed plugin with its device
  attached does too, `test_expected_platform`). The child stops before
  importing JAX, which would look for the accelerator."""
  code = (
    "import os, sys; from glcic_jax.startup import huge_pages; "
    "huge_pages.reexec_with_huge_pages(); "
    "print(os.environ.get('GLIBC_TUNABLES'))"
  )
  environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  for platforms in ("cuda", "tpu", "cpu"):
    environ["JAX_PLATFORMS"] = platforms
    out = subprocess.run(
      [sys.executable, "-c", code],
      env=environ,
      capture_output=True,
      text=True,
      timeout=60,
      check=True,
    ).stdout.strip()
    expected = huge_pages.tunables_with_huge_pages(
      environ, platform.libc_ver(), huge_pages.thp_mode()
    )
    assert out == str(expected if platforms == "cpu" else None), platforms


@pytest.mark.parametrize(
  "environ, installed, devices, expected",
  [
    ({}, [], [], "cpu"),
    ({"JAX_PLATFORMS": "tpu,cpu"}, [], [], "tpu"),
    (
      {"JAX_PLATFORMS": "cpu"},
      ["jax-cuda12-plugin"],
      ["/dev/nvidiactl"],
      "cpu",
    ),
    ({}, ["jax-cuda12-plugin"], ["/dev/nvidiactl"], "gpu"),
    ({}, ["jax-cuda12-plugin"], [], "cpu"),  # plugin, but no GPU attached
    (
      {"CUDA_VISIBLE_DEVICES": ""},
      ["jax-cuda12-plugin"],
      ["/dev/nvidiactl"],
      "cpu",
    ),
    ({}, ["libtpu"], ["/dev/accel0"], "tpu"),
  ],
)
def test_expected_platform(environ, installed, devices, expected):
  got = backend.expected_platform(environ, installed, devices.__contains__)
  assert got == expected
