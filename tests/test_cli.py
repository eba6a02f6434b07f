"""Every console script's `--help` shows its docstring and its own flags
(`glcic_jax/cli.py`); the commands come from pyproject.toml, so a new one
without an entry here fails."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Flags each command's --help must list (a few that are its own).
EXPECTED_FLAGS = {
  "glcic-train": ["--config", "--workdir", "--coordinator_address"],
  "glcic-eval": ["--workdir", "--step", "--num_batches"],
  "glcic-inpaint": ["--input", "--mask", "--bbox", "--blend"],
  "glcic-import": ["--checkpoint", "--workdir"],
  "glcic-export": ["--workdir", "--output", "--channel_order"],
  "glcic-preview-data": ["--config", "--output"],
}


def test_every_command_help_lists_its_docstring_and_flags():
  with open(ROOT / "pyproject.toml", "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert set(scripts) == set(EXPECTED_FLAGS)
  # As pip's wrapper does: a __main__ without docstring or flags calls run().
  procs = {}
  for name, target in scripts.items():
    module, function = target.split(":")
    code = f"from {module} import {function}; {function}()"
    procs[name] = subprocess.Popen(
      [sys.executable, "-c", code, "--help"],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
  for name, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    # absl exits with status 1 after printing --help.
    assert proc.returncode == 1 and "Traceback" not in out, out
    module = importlib.import_module(scripts[name].split(":")[0])
    assert module.__doc__.splitlines()[0] in out, out
    for flag in EXPECTED_FLAGS[name]:
      assert f"  {flag}:" in out, (name, flag, out)
