"""glcic-eval over two processes (4 CPU devices each, gloo on 127.0.0.1):
every process joins the evaluation, process 0 writes the numbers, and they
are those of one process over 8 devices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np

from glcic_jax import evaluate
from tests.inpaint.test_completer import save_tiny_checkpoint
from tests.test_train import cpu_env


def test_two_processes_evaluate_as_one(tmp_path):
  workdir = str(tmp_path / "w")
  save_tiny_checkpoint(workdir, step=5)
  want = evaluate.evaluate_checkpoint(
    workdir, output=str(tmp_path / "one.json")
  )
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = cpu_env(4)
  env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
  output = str(tmp_path / "two.json")
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "glcic_jax.commands.eval",
        f"--workdir={workdir}",
        f"--output={output}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
    assert "JAX process" in out and "8 global devices" in out, out[-3000:]
  with open(output) as f:
    got = json.load(f)
  assert got["num_images"] == want["num_images"] == 2
  assert got["checkpoint_step"] == 5
  for key in ("l1_error", "psnr", "ssim"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  assert os.path.isfile(output[: -len(".json")] + ".png")
