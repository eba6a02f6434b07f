"""Every console command starts the same way (`commands.launch`): `--help`
shows its docstring and its own flags and exits 0 before anything heavy
loads; the commands that run on a mesh take the distributed flags. The
commands come from pyproject.toml, so a new one without an entry here
fails."""

from __future__ import annotations

import importlib
import json
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DISTRIBUTED = ["--coordinator_address", "--num_processes", "--process_id"]

# Flags each command's --help must list (a few that are its own).
EXPECTED_FLAGS = {
  "glcic-train": ["--config", "--workdir", *DISTRIBUTED],
  "glcic-eval": ["--workdir", "--step", "--num_batches", *DISTRIBUTED],
  "glcic-inpaint": ["--input", "--mask", "--bbox", "--blend"],
  "glcic-import": ["--checkpoint", "--workdir"],
  "glcic-export": ["--workdir", "--output", "--channel_order"],
  "glcic-preview-data": ["--config", "--output"],
  "glcic-serve": ["--workdir", "--checkpoint", "--host", "--port"],
}
HEAVY = ("jax", "tensorflow", "flax", "orbax", "torch")

# As pip's wrapper does: a __main__ without docstring or flags calls run();
# at exit it reports which heavy libraries were loaded.
CHILD = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(
  [m for m in {heavy!r} if m in sys.modules])))
from {module} import {function}
{function}()
"""


def test_every_command_help_lists_its_docstring_and_flags_quickly():
  with open(ROOT / "pyproject.toml", "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert set(scripts) == set(EXPECTED_FLAGS)
  procs = {}
  for name, target in scripts.items():
    module, function = target.split(":")
    code = CHILD.format(heavy=HEAVY, module=module, function=function)
    procs[name] = subprocess.Popen(
      [sys.executable, "-c", code, "--help"],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
  for name, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in out, out
    module = importlib.import_module(scripts[name].split(":")[0])
    assert out.startswith(module.__doc__.strip().splitlines()[0]), out
    for flag in EXPECTED_FLAGS[name]:
      assert f"  {flag}:" in out, (name, flag, out)
    assert json.loads(out.strip().splitlines()[-1]) == [], (name, out)
    if not set(DISTRIBUTED) & set(EXPECTED_FLAGS[name]):
      assert "--coordinator_address" not in out, name


def _train(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "glcic_jax.commands.train",
      f"--config={ROOT / 'configs' / 'tiny.py'}",
      *args,
    ],
    capture_output=True,
    text=True,
    check=False,
    cwd=ROOT,
  )


def test_errors_end_in_one_line_naming_the_cause(tmp_path):
  """A mistyped override: two lines (where the traceback went, the cause)
  instead of a traceback; --verbosity=1 shows the traceback."""
  done = _train(f"--workdir={tmp_path / 'w'}", "--config.totl_steps=5")
  assert done.returncode == 1
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 2, done.stderr
  assert lines[-1] == (
    "glcic-train: error: no config field 'totl_steps'. Did you mean "
    '"total_steps" instead of "totl_steps"?'
  )
  log = lines[0].split("the traceback is in ")[1].split(";")[0]
  assert "AttributeError" in pathlib.Path(log).read_text()
  pathlib.Path(log).unlink()

  done = _train(
    f"--workdir={tmp_path / 'w'}", "--config.log_every=0", "--verbosity=1"
  )
  assert done.returncode == 1
  assert "Traceback (most recent call last)" in done.stderr
  assert "log_every=0 must be >= 1" in done.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "w").exists()
