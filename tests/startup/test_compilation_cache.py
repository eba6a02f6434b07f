"""The persistent compilation cache every command turns on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from glcic_jax.startup import compilation_cache

HOME = {"HOME": "/home/u"}


@pytest.mark.parametrize(
  "environ, expected",
  [
    (HOME, "/home/u/.cache/glcic_jax/xla"),
    ({**HOME, "XDG_CACHE_HOME": "/xdg"}, "/xdg/glcic_jax/xla"),
    ({**HOME, "GLCIC_COMPILATION_CACHE": "/c"}, "/c"),
    ({**HOME, "GLCIC_COMPILATION_CACHE": "0"}, None),
    ({**HOME, "GLCIC_COMPILATION_CACHE": "Off"}, None),
    ({**HOME, "GLCIC_COMPILATION_CACHE": ""}, None),
  ],
)
def test_chosen_dir(monkeypatch, environ, expected):
  monkeypatch.setenv("HOME", environ["HOME"])  # expanduser reads the process's
  assert compilation_cache.chosen_dir(environ) == expected


@pytest.mark.parametrize(
  "environ", [HOME, {**HOME, "GLCIC_COMPILATION_CACHE": "0"}]
)
def test_jax_own_setting_wins(environ):
  """JAX_COMPILATION_CACHE_DIR or jax.config, whatever ours says."""
  assert compilation_cache.plan(environ, "/jax", -1) == (
    {},
    "compilation cache: /jax (JAX's own setting)",
  )


def test_plan(tmp_path, monkeypatch):
  """Local folders are made and bounded; remote ones and JAX's own setting
  pass as they are; an unusable folder means no cache and a reason."""
  folder = tmp_path / "a" / "b"
  env = {compilation_cache.ENV: str(folder)}
  updates, line = compilation_cache.plan(env, None, -1)
  assert folder.is_dir()
  assert updates == {
    "jax_compilation_cache_dir": str(folder),
    "jax_compilation_cache_max_size": compilation_cache.DEFAULT_MAX_BYTES,
  }
  assert line.startswith(f"compilation cache: {folder} (at most 4 GiB")
  # A bound the user set is kept.
  updates, line = compilation_cache.plan(env, None, 2**30)
  assert "jax_compilation_cache_max_size" not in updates
  assert "(at most 1 GiB" in line
  monkeypatch.chdir(tmp_path)  # where os.makedirs would put "gs:"
  remote = {compilation_cache.ENV: "gs://bucket/xla"}
  updates, line = compilation_cache.plan(remote, None, -1)
  assert updates == {"jax_compilation_cache_dir": "gs://bucket/xla"}
  assert not (tmp_path / "gs:").exists() and "(unbounded;" in line
  assert compilation_cache.plan(env, "/jax", -1) == (
    {},
    "compilation cache: /jax (JAX's own setting)",
  )
  updates, line = compilation_cache.plan({compilation_cache.ENV: "0"}, None, -1)
  assert updates == {} and line.startswith("compilation cache: off")
  blocker = tmp_path / "a-file"
  blocker.write_text("")
  env = {compilation_cache.ENV: str(blocker / "cache")}
  updates, line = compilation_cache.plan(env, None, -1)
  assert updates == {} and "cannot be used" in line


# A command as the console scripts start one (`commands.launch.run`),
# compiling one program and reporting what the cache did.
CHILD = """
import json, sys
import jax, jax.numpy as jnp
from glcic_jax.commands import launch

def main(argv, flag_values):
  hits = []
  jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name)
    if name == "/jax/compilation_cache/cache_hits" else None)
  f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
  f(jnp.ones((64, 64))).block_until_ready()
  print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                    "max_size": jax.config.jax_compilation_cache_max_size,
                    "hits": len(hits)}))

launch.run("__main__", lambda flag_values: None, main)
"""


def _command(**env: str) -> tuple[dict, str]:
  environ = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JAX_COMPILATION_CACHE_DIR", compilation_cache.ENV)
  }
  environ.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS="",
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    **env,
  )
  proc = subprocess.run(
    [sys.executable, "-c", CHILD],
    env=environ,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_commands_reuse_compiled_programs(tmp_path):
  """A second command process loads what the first compiled; opting out,
  or a folder that cannot be made, runs without a cache and says so."""
  folder = tmp_path / "cache"
  first, log = _command(GLCIC_COMPILATION_CACHE=str(folder))
  assert first["dir"] == str(folder) and first["hits"] == 0
  assert first["max_size"] == compilation_cache.DEFAULT_MAX_BYTES
  assert f"compilation cache: {folder}" in log
  assert any(p.name.endswith("-cache") for p in folder.iterdir())
  second, _ = _command(GLCIC_COMPILATION_CACHE=str(folder))
  assert second["hits"] >= 1, second

  # Truncated entries (a process killed while writing) are compiled again:
  # the copy of a folder that gave hits gives none, and the command runs.
  truncated = tmp_path / "truncated"
  shutil.copytree(folder, truncated)
  for entry in truncated.glob("*-cache"):
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
  recompiled, _ = _command(GLCIC_COMPILATION_CACHE=str(truncated))
  assert recompiled["hits"] == 0 and recompiled["dir"] == str(truncated)

  off, log = _command(GLCIC_COMPILATION_CACHE="0")
  assert off["dir"] is None and off["hits"] == 0
  assert "compilation cache: off" in log

  blocker = tmp_path / "a-file"
  blocker.write_text("")
  unusable, log = _command(GLCIC_COMPILATION_CACHE=str(blocker / "cache"))
  assert unusable["dir"] is None and unusable["hits"] == 0
  assert f"compilation cache: off, {blocker / 'cache'} cannot be used" in log

  # JAX's own variable is used as it is, without a size bound added.
  own, log = _command(JAX_COMPILATION_CACHE_DIR=str(folder))
  assert own["dir"] == str(folder) and own["hits"] >= 1
  assert own["max_size"] == -1 and "(JAX's own setting)" in log
