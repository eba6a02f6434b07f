"""The benchmark scripts run end to end on a tiny config.

`benchmark_train.py` (JAX and PyTorch in one run, `--json`, config
overrides) runs without TensorFlow, TFDS or clu: the GPU images it is meant
for have JAX, flax, optax and PyTorch, not those (docs/performance.md, GPU).
`profile_step.py` sorts a traced CPU step's ops into kinds.
`benchmark_compile.py` times each program's compilation against its
baseline. `compiled_steps.py` fingerprints the compiled steps.

`benchmark_input.py --list_paths` times image-list start-up.
`gpu_benchmarks.sh` runs shrunk on the CPU with TensorFlow and clu blocked.
(`conv_form_fidelity.py` runs in tests/cpu/test_conv.py.)

All but the last are marked slow (a minute each on a 2-core CPU, mostly
compiling): `scripts/run_slow_tests.sh` runs them, outside the CI suite."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOT_ON_GPU_IMAGES = ["tensorflow", "tensorflow_datasets", "clu"]
# The demo config shrunk to 32px with short discriminators.
TINY = [
  "--config=configs/demo.py",
  "--config.image_size=32",
  "--config.local_size=16",
  "--config.per_device_batch_size=2",
  "--config.model.global_num_convs=3",
  "--config.model.local_num_convs=2",
]


def _run_python(*args: str) -> subprocess.CompletedProcess:
  """`python *args` in the repository root; fails the test on a non-zero
  exit, showing the output."""
  proc = subprocess.run(
    [sys.executable, *args],
    cwd=ROOT,
    check=False,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc


@pytest.mark.slow
def test_benchmark_train_writes_its_json_without_tensorflow(tmp_path):
  out = tmp_path / "bench.json"
  argv = [
    "benchmark_train.py",
    *TINY,
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
  proc = _run_python("-c", code)
  result = json.loads(out.read_text())
  assert result["phase"] == "joint"
  assert result["image_size"] == 32  # the override reached the step
  assert result["per_device_batch_size"] == 2
  assert result["global_batch_size"] == 2 * result["devices"]
  assert result["images_per_second"] > 0
  assert result["torch_images_per_second"] > 0
  # A 32px joint step at demo widths is 0.18 GFLOP per image as the model
  # defines it (native convs, counted before XLA's passes, whole mesh);
  # the CPU forms execute a different count (Winograd fewer, padding more).
  assert 0.15e9 < result["flops_per_image"] < 0.21e9
  assert result["executed_flops_per_image"] > 0.1e9
  assert "JAX speed / PyTorch speed" in proc.stdout
  # Memory as XLA planned the step, on every backend: the donated state
  # (nearly all of the arguments: a 2-image batch is 40 KB) is updated in
  # place, and the total adds the step's scratch to the state.
  memory = result["compiled_memory"]
  assert memory["aliased"] > 0.95 * memory["arguments"] > 1e6, memory
  assert memory["temporaries"] > 0
  assert memory["total"] == (
    memory["arguments"]
    + memory["outputs"]
    - memory["aliased"]
    + memory["temporaries"]
  )
  assert re.search(r"step buffers as compiled \d+\.\d MiB", proc.stdout)
  # The docs' table from that JSON: one row, planned memory filled in.
  table = _run_python("scripts/benchmark_table.py", str(out)).stdout
  header, _, cells = (line.split("|")[1:-1] for line in table.splitlines())
  assert len(cells) == len(header) and "JAX planned GiB" in header[-1]
  assert cells[-1].strip() == f"{memory['total'] / 2**30:.1f}"


@pytest.mark.slow
def test_profile_step_sorts_the_traced_ops_into_kinds(tmp_path):
  out = tmp_path / "profile.json"
  proc = _run_python(
    "scripts/profile_step.py",
    *TINY,
    "--phase=g",
    "--steps=2",
    "--warmup=1",
    f"--json={out}",
  )
  assert "| kind | ms/step |" in proc.stdout
  result = json.loads(out.read_text())
  kinds = result["kinds"]
  # The CPU forms' patches, the BatchNorm sums over the 8 devices' mesh
  # and the matmuls all show up, each with time.
  for kind in ("matmul", "data movement", "collective"):
    assert kinds[kind]["ms_per_step"] > 0, kinds
  # The dots found in the HLO carry nearly all of XLA's FLOP count for the
  # step (the rest is elementwise work); a wrong shape parse or a missing
  # device factor would land far outside.
  dot_flops = 1e9 * sum(k["gflop_per_step"] for k in kinds.values())
  assert 0.7 < dot_flops / result["xla_flops_per_step"] <= 1.0
  assert result["traced_ms_per_step"] > 0
  # 8 devices' ops on 2 cores run side by side: the time with an op
  # running is less than the events' sum (a sum would equal it).
  assert 0 < result["busy_ms_per_step"] < result["traced_ms_per_step"]


@pytest.mark.slow
def test_benchmark_compile_times_each_program_against_its_baseline():
  proc = _run_python(
    "scripts/benchmark_compile.py", "--config=configs/tiny.py", "--repeats=1"
  )
  row = re.compile(r"^\s*(\w[\w ]*?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)$")
  rows = {
    m[1]: [float(v) for v in m.groups()[1:]]
    for m in map(row.match, proc.stdout.splitlines())
    if m
  }
  assert set(rows) == {
    "init",
    "generator step",
    "discriminator step",
    "joint step",
  }, proc.stdout
  # The classic threefry's init compiles in about a quarter of the time of
  # the default one's (2.7 against 10.9 s, tiny config, 2-core AMD VM).
  assert rows["init"][2] < 0.6, proc.stdout


@pytest.mark.slow
def test_compiled_steps_fingerprints_are_stable_and_tell_programs_apart():
  """Two runs of the same code print the same fingerprint per phase; a
  change to the step (another batch) prints another."""
  pattern = re.compile(r"^demo 32px (\w+): ([0-9a-f]{16})$", re.M)

  def fingerprints(*extra: str) -> dict[str, str]:
    out = _run_python("scripts/compiled_steps.py", *TINY, *extra).stdout
    return dict(pattern.findall(out))

  first = fingerprints()
  assert set(first) == {"generator", "discriminator", "joint"}, first
  assert fingerprints() == first
  other = fingerprints("--config.per_device_batch_size=1")
  assert all(other[p] != first[p] for p in first), (first, other)


def test_benchmark_input_times_image_list_start_up_against_the_old_reading():
  """Fast (seconds): small lists, each reading in its own process."""
  proc = _run_python(
    "scripts/benchmark_input.py", "--list_paths=20000", "--list_baseline=10000"
  )
  rows = re.findall(
    r"^(PathTable \(ours\)|Python strings \+ tf.constant)\s+([\d,]+)\s+"
    r"(\d+\.\d+)\s+(\d+)\s+(\d+\.\d+)$",
    proc.stdout,
    re.M,
  )
  assert [(r[0], r[1]) for r in rows] == [
    ("PathTable (ours)", "20,000"),
    ("Python strings + tf.constant", "10,000"),
  ], proc.stdout
  assert re.search(r"per path, ours / before: start-up \d", proc.stdout)


@pytest.mark.slow
def test_gpu_benchmarks_script_runs_on_the_cpu_without_tensorflow(tmp_path):
  """The one GPU call, shrunk (GLCIC_BENCH_EXTRA, a 6-step loop), with
  TensorFlow, TFDS and clu unimportable as on the GPU image: every JSON,
  both tables and the loop's profile trace are written."""
  blocked = tmp_path / "blocked"
  for name in NOT_ON_GPU_IMAGES:
    (blocked / name).mkdir(parents=True)
    (blocked / name / "__init__.py").write_text(
      f"raise ImportError('{name} is not on the GPU image')\n"
    )
  out = tmp_path / "out"
  env = dict(
    os.environ,
    PYTHONPATH=f"{blocked}:{ROOT}",
    GLCIC_LOOP_STEPS="6",
    GLCIC_BENCH_EXTRA=(
      "--steps=1 --warmup=0 --config.image_size=64 --config.local_size=32 "
      "--config.per_device_batch_size=2 --config.holes.max_bbox_shape=24 "
      "--config.holes.max_bbox_delta=8 --config.holes.min_margin=4"
    ),
  )
  proc = subprocess.run(
    ["bash", "scripts/gpu_benchmarks.sh", str(out)],
    check=False,
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=1800,
  )
  log = (out / "log.txt").read_text()
  names = {p.stem for p in out.glob("*.json")}
  assert names == {
    "joint_bf16",
    "joint_f32",
    "g_bf16",
    "d_bf16",
    "layers_bf16",
    "loop_bf16",
  }, proc.stdout + proc.stderr + log
  table = (out / "table.md").read_text()
  assert "| loop efficiency |" in table and "synthetic" in table, table
  assert list((out / "profile").rglob("*.xplane.pb")), log
