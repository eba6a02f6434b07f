"""`scripts/benchmark_train.py` runs end to end (JAX and PyTorch in one run,
`--json`, config overrides) on a tiny config without TensorFlow, TFDS or
clu: the GPU images it is meant for have JAX, flax, optax and PyTorch, not
those (docs/performance.md, GPU)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOT_ON_GPU_IMAGES = ["tensorflow", "tensorflow_datasets", "clu"]


def test_benchmark_train_writes_its_json_without_tensorflow(tmp_path):
  out = tmp_path / "bench.json"
  argv = [
    "benchmark_train.py",
    "--config=configs/demo.py",
    "--config.image_size=32",
    "--config.local_size=16",
    "--config.per_device_batch_size=2",
    "--config.model.global_num_convs=3",
    "--config.model.local_num_convs=2",
    "--phase=joint",
    "--steps=2",
    "--warmup=1",
    "--peak_size=512",
    f"--json={out}",
  ]
  # Importing a module mapped to None raises ImportError.
  code = (
    "import runpy, sys; "
    f"sys.modules.update(dict.fromkeys({NOT_ON_GPU_IMAGES!r})); "
    f"sys.argv = {argv!r}; "
    "runpy.run_path('scripts/benchmark_train.py', run_name='__main__')"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    check=False,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  result = json.loads(out.read_text())
  assert result["phase"] == "joint"
  assert result["image_size"] == 32  # the override reached the step
  assert result["per_device_batch_size"] == 2
  assert result["global_batch_size"] == 2 * result["devices"]
  assert result["images_per_second"] > 0
  assert result["torch_images_per_second"] > 0
  # XLA's count of a 32px joint step: 0.27 GFLOP per image at demo widths.
  assert 0.1e9 < result["flops_per_image"] < 1e9
  assert "JAX speed / PyTorch speed" in proc.stdout
