"""glcic-eval over two processes (4 CPU devices each, gloo on 127.0.0.1):
every process joins the evaluation, process 0 writes the numbers, and they
are those of one process over 8 devices."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from glcic_jax import evaluate
from tests.inpaint.test_completer import save_tiny_checkpoint
from tests.test_train import cpu_env, run_two_processes


def test_two_processes_evaluate_as_one(tmp_path):
  workdir = str(tmp_path / "w")
  save_tiny_checkpoint(workdir, step=5)
  want = evaluate.evaluate_checkpoint(
    workdir, output=str(tmp_path / "one.json")
  )
  output = str(tmp_path / "two.json")
  command = [sys.executable, "-m", "glcic_jax.commands.eval"]
  command += [f"--workdir={workdir}", f"--output={output}"]
  for returncode, out in run_two_processes(command, cpu_env(4)):
    assert returncode == 0, out[-3000:]
    assert "JAX process" in out and "8 global devices" in out, out[-3000:]
  with open(output) as f:
    got = json.load(f)
  assert got["num_images"] == want["num_images"] == 2
  assert got["checkpoint_step"] == 5
  for key in ("l1_error", "psnr", "ssim"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  assert os.path.isfile(output[: -len(".json")] + ".png")
