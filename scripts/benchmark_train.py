"""Times one training phase in JAX and, in the same run, in PyTorch.

  python scripts/benchmark_train.py --config=configs/gl_places.py \\
      --phase=joint --steps=20 [--json=out.json] [--config.x=y ...]

JAX: the jitted step of `train.make_steps` on a mesh over all local
devices, compiled once, warmed up, then timed step by step
(`block_until_ready`); FLOPs per step from XLA's cost analysis; the
device's measured matmul peak (float32 and bfloat16) in the same run; peak
device memory where the backend reports it. PyTorch: the same networks
(tests/torch_reference.py, mmagic's module names), losses and Adam on the
same shapes (CUDA if available), timed the same way. The table comes last.
`--layers` adds a per-layer table (forward+backward) for the layer kinds of
the paper model.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glcic_jax import sharding, train, train_state  # noqa: E402
from glcic_jax import train_steps as ts  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config.", lock_config=True)
flags.DEFINE_enum("phase", "joint", ["g", "d", "joint"], "Phase to time.")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_string("json", None, "Write the results here.")
flags.DEFINE_bool("torch", True, "Also time PyTorch in the same run.")
FLAGS = flags.FLAGS
PHASES = {"g": ts.PHASE_G, "d": ts.PHASE_D, "joint": ts.PHASE_JOINT}


def random_batch(config, n: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  size, local = config.image_size, config.local_size
  mask = np.zeros((n, size, size, 1), np.float32)
  hole = max(1, local * 7 // 8)
  top = (size - hole) // 2
  mask[:, top : top + hole, top : top + hole] = 1
  box = np.array([max(0, top - (local - hole) // 2)] * 2 + [local] * 2)
  return {
    "image": rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
    "mask": mask,
    "local_bbox": np.tile(box.astype(np.int32), (n, 1)),
  }


def time_calls(fn, steps: int, warmup: int) -> list[float]:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return times


def matmul_peak(dtype, n: int = 4096) -> float:
  """Measured dense matmul FLOP/s on the default device."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  t = min(time_calls(lambda: f(a).block_until_ready(), 3, 1))
  return 2 * n**3 / t


def bench_jax(config, phase: str) -> dict:
  mesh = sharding.create_mesh(jax.local_devices())
  n = config.per_device_batch_size * mesh.devices.size
  state = sharding.put_replicated(
    jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0))), mesh
  )
  batch = sharding.global_batch(random_batch(config, n), mesh)
  step = sharding.jit_step(train.make_steps(config)[phase], mesh, state)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  times = time_calls(run, FLAGS.steps, FLAGS.warmup)
  stats = jax.local_devices()[0].memory_stats() or {}
  return {
    "compile_seconds": compile_s,
    "times": times,
    "flops_per_step": flops,
    "batch": n,
    "peak_memory_bytes": stats.get("peak_bytes_in_use"),
  }


def bench_torch(config, phase: str, n: int) -> dict:
  import torch

  from tests import torch_reference as ref

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = ref.model_for_config(config).to(device)
  model.train()
  opt_g = torch.optim.Adam(model.generator.parameters(), lr=4e-4)
  opt_d = torch.optim.Adam(model.disc.parameters(), lr=4e-4)
  b = random_batch(config, n)
  batch = {
    "image": torch.from_numpy(b["image"].transpose(0, 3, 1, 2)).to(device),
    "mask": torch.from_numpy(b["mask"].transpose(0, 3, 1, 2)).to(device),
    "local_bbox": b["local_bbox"],
  }
  cur_iter = {ts.PHASE_G: 0, ts.PHASE_D: 2, ts.PHASE_JOINT: 4}[phase]

  def run():
    ref.mmagic_train_step(
      model,
      opt_g,
      opt_d,
      batch,
      cur_iter,
      iter_tc=1,
      iter_td=3,
      local_size=config.local_size,
    )
    if device == "cuda":
      torch.cuda.synchronize()

  return {"times": time_calls(run, FLAGS.steps, FLAGS.warmup), "device": device}


def main(argv):
  del argv
  config = FLAGS.config
  phase = PHASES[FLAGS.phase]
  peak32 = matmul_peak(jnp.float32)
  peak16 = matmul_peak(jnp.bfloat16)
  j = bench_jax(config, phase)
  med = statistics.median(j["times"])
  peak = peak16 if config.compute_dtype == "bfloat16" else peak32
  result = {
    "device_kind": jax.devices()[0].device_kind,
    "devices": jax.local_device_count(),
    "phase": phase,
    "image_size": config.image_size,
    "compute_dtype": config.compute_dtype,
    "per_device_batch_size": config.per_device_batch_size,
    "step_seconds_median": med,
    "step_seconds_min": min(j["times"]),
    "step_seconds_max": max(j["times"]),
    "images_per_second": j["batch"] / med,
    "flops_per_image": j["flops_per_step"] / j["batch"],
    "fraction_of_peak": j["flops_per_step"] / med / peak,
    "matmul_peak_flops_f32": peak32,
    "matmul_peak_flops_bf16": peak16,
    "compile_seconds": j["compile_seconds"],
    "peak_memory_bytes": j["peak_memory_bytes"],
  }
  if FLAGS.torch:
    t = bench_torch(config, phase, j["batch"])
    tmed = statistics.median(t["times"])
    result.update(
      torch_device=t["device"],
      torch_step_seconds_median=tmed,
      torch_images_per_second=j["batch"] / tmed,
      jax_speedup_over_torch=tmed / med,
    )
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(result, f, indent=2)
  print()
  print(
    f"{config.name} phase={phase} {config.image_size}px "
    f"batch {j['batch']} ({config.per_device_batch_size}/device) "
    f"{config.compute_dtype} on {result['device_kind']}"
  )
  print(
    f"{'':10s} {'step s (median)':>16s} {'min':>8s} {'max':>8s} {'img/s':>9s}"
  )
  print(
    f"{'JAX':10s} {med:16.4f} {min(j['times']):8.4f} "
    f"{max(j['times']):8.4f} {result['images_per_second']:9.2f}"
  )
  if FLAGS.torch:
    print(
      f"{'PyTorch':10s} {tmed:16.4f} {min(t['times']):8.4f} "
      f"{max(t['times']):8.4f} {result['torch_images_per_second']:9.2f}"
    )
    print(f"JAX speed / PyTorch speed: {result['jax_speedup_over_torch']:.2f}x")
  print(
    f"GFLOP/image {result['flops_per_image'] / 1e9:.2f}; "
    f"{100 * result['fraction_of_peak']:.1f}% of the measured matmul peak "
    f"({peak / 1e12:.3f} TFLOP/s); compile {j['compile_seconds']:.1f} s; "
    f"peak memory {j['peak_memory_bytes'] or 'n/a'}"
  )


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
