"""Times one training phase in JAX and, in the same run, in PyTorch.

  python scripts/benchmark_train.py --config=configs/gl_places.py \\
      --phase=joint --steps=20 [--json=out.json] [--layers] [--config.x=y ...]

JAX: the jitted step of `train_steps.make_steps` on a mesh over all local devices
(per-device batch x local devices), compiled once (compile time reported),
warmed up, then timed step by step with `block_until_ready`; FLOPs per step
from XLA's cost analysis of the compiled step; the device's dense matmul
peak (float32 and bfloat16) measured in the same run; memory: the step's
buffers per device as XLA planned them (`compiled_memory`, every backend,
the CPU included) and the allocator's peak where the backend reports one
(GPU, TPU). PyTorch: mmagic's networks as
`tests/torch_reference.py` mirrors them, the same shapes, losses and Adam
(`mmagic_train_step`), on CUDA when available, under bf16 autocast when
`compute_dtype='bfloat16'`.

The JAX and PyTorch steps alternate (one of each per round) so that load
from other processes hits both alike: the ratio of the medians is the number
to read on a shared machine. `--layers` adds forward+backward times per
layer kind at the config's widths (also interleaved). The step table is
printed last. Like the console scripts, the script restarts itself once so
that malloc maps large buffers with huge pages (`startup.huge_pages`; both
frameworks share the process; `GLCIC_HUGE_PAGES=0` measures without).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glcic_jax import batches, layers, sharding, train_state  # noqa: E402
from glcic_jax import config as config_lib  # noqa: E402
from glcic_jax import train_steps as ts  # noqa: E402
from glcic_jax.startup import huge_pages  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config.", lock_config=True)
flags.DEFINE_enum("phase", "joint", ["g", "d", "joint"], "Phase to time.")
flags.DEFINE_integer("steps", 10, "Timed steps (of each framework).")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_string("json", None, "Write the results here.")
flags.DEFINE_bool("torch", True, "Also time PyTorch in the same run.")
flags.DEFINE_bool("layers", False, "Also time each layer kind (fwd+bwd).")
flags.DEFINE_integer(
  "settle", 1, "Untimed calls before each timed one (see `interleaved`)."
)
flags.DEFINE_integer(
  "peak_size", 4096, "Side of the square matmul that measures the peak."
)
flags.DEFINE_bool(
  "loop",
  False,
  "Whole-loop mode: the real train_and_evaluate loop (input, logging, "
  "checkpoints) against its bare jitted step, same config, same run.",
)
flags.DEFINE_integer("loop_steps", 300, "Loop mode: steps of the loop.")
flags.DEFINE_string(
  "loop_trace_dir",
  "",
  "Loop mode: copy the run's jax.profiler trace (--config.profile_steps) "
  "here, for TensorBoard's profile plugin.",
)
flags.DEFINE_integer("loop_log_every", 50, "Loop mode: log interval.")
flags.DEFINE_integer(
  "loop_checkpoint_every", 100, "Loop mode: checkpoint interval."
)
FLAGS = flags.FLAGS
PHASES = {"g": ts.PHASE_G, "d": ts.PHASE_D, "joint": ts.PHASE_JOINT}


def host_cpu() -> str:
  """The host CPU's model and core count: on the CPU backend XLA reports
  only "cpu", and ratios against PyTorch differ between CPU makers
  (docs/performance.md)."""
  model = "unknown CPU"
  with contextlib.suppress(OSError):
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  return f"{model}, {os.cpu_count()} cores"


def random_batch(config, n: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch of the config's shapes: a centred square hole whose local box
  fits, so JAX and PyTorch crop the same patches."""
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


def interleaved(
  fns: dict[str, Callable[[], None]],
  steps: int,
  warmup: int,
  settle: int | None = None,
) -> dict[str, list[float]]:
  """Per-call seconds of each fn, alternating fns every round.

  Each fn must block until its device work is done. In every round each
  fn first runs `settle` untimed calls (default `--settle`), then one
  timed call, so the timed call follows one of its own, as in training.
  A call right after the other framework's pays for the switch: PyTorch's
  OpenMP workers keep spinning for a while after each parallel region
  (a 3.0 ms JAX layer took 7.6 ms right after a PyTorch one), and after
  an idle pause they have to be woken (a 5.1 ms PyTorch layer took 14.3
  ms after a 20 ms pause).
  """
  settle = FLAGS.settle if settle is None else settle
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(steps):
    for name, fn in fns.items():
      for _ in range(settle):
        fn()
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return times


def matmul_peak(dtype, n: int = 4096) -> float:
  """Measured dense matmul FLOP/s on the default device (best of 3)."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  # One fn: each call already follows one of its own, nothing to settle.
  times = interleaved({"mm": lambda: f(a).block_until_ready()}, 3, 1, settle=0)
  return 2 * n**3 / min(times["mm"])


def _flops(cost) -> float:
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def compiled_memory(compiled) -> dict[str, int] | None:
  """One device's buffers of a compiled step, in bytes, as XLA's buffer
  assignment planned them: arguments (the state and the batch), outputs,
  the part of the outputs that reuses donated arguments, and the scratch
  of all intermediates (one block on the CPU). `total` is what the step
  holds at once; None where the backend gives no analysis."""
  try:
    m = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):
    return None
  if m is None:
    return None
  parts = {
    "arguments": int(m.argument_size_in_bytes),
    "outputs": int(m.output_size_in_bytes),
    "aliased": int(m.alias_size_in_bytes),
    "temporaries": int(m.temp_size_in_bytes),
  }
  parts["total"] = (
    parts["arguments"]
    + parts["outputs"]
    - parts["aliased"]
    + parts["temporaries"]
  )
  return parts


def jax_step(config, phase: str) -> tuple[Callable[[], None], dict]:
  """The compiled phase step as a no-argument callable, and its facts
  (with the compiled executable, whose HLO `scripts/profile_step.py`
  reads)."""
  mesh = sharding.create_mesh(jax.local_devices())
  n = config.per_device_batch_size * mesh.devices.size
  state = sharding.put_replicated(
    jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0))), mesh
  )
  batch = sharding.global_batch(random_batch(config, n), mesh)
  step = sharding.jit_step(ts.make_steps(config)[phase], mesh, state)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  # The compiled program is one device's partition: its count covers that
  # device's share of the global batch.
  executed = _flops(compiled.cost_analysis()) * mesh.devices.size
  # The model's arithmetic: the same step with native convolutions, counted
  # before XLA's passes (the CPU's Winograd convs execute fewer FLOPs).
  native_step = ts.make_steps(config, conv_forms="native")[phase]
  native = sharding.jit_step(native_step, mesh, state)
  flops = _flops(native.lower(state, batch).cost_analysis())
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  return run, {
    "compile_seconds": compile_s,
    "flops": flops,
    "executed_flops": executed,
    "batch": n,
    "compiled": compiled,
    "memory": compiled_memory(compiled),
  }


def torch_autocast(device: str, config):
  """bf16 autocast for `compute_dtype='bfloat16'` (convs and linears in
  bf16, BatchNorm and losses in float32: JAX's policy), else a no-op."""
  import torch

  if config.compute_dtype != "bfloat16":
    return contextlib.nullcontext()
  return torch.autocast(device_type=device, dtype=torch.bfloat16)


def torch_device() -> str:
  import torch

  return "cuda" if torch.cuda.is_available() else "cpu"


def torch_peak_memory() -> int | None:
  """Peak bytes PyTorch's CUDA allocator held (None on the CPU)."""
  import torch

  return (
    torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
  )


def torch_step(config, phase: str, n: int) -> Callable[[], None]:
  """mmagic's train step for `phase` on the same shapes, as a callable."""
  import torch

  from tests import torch_reference as ref

  device = torch_device()
  torch.backends.cudnn.benchmark = True  # PyTorch's fastest conv algorithms
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
    with torch_autocast(device, config):
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

  return run


def layer_specs(config) -> list[tuple]:
  """(name, kind, in, out, k, stride, dilation, input side): the paper
  model's layer kinds at this config's widths and sizes."""
  c, s, m = config.model.generator_channels, config.image_size, config.model
  specs = [
    ("enc1 5x5", "conv", 4, c, 5, 1, 1, s),
    ("enc2 3x3 stride 2", "conv", c, 2 * c, 3, 2, 1, s),
    ("enc3 3x3", "conv", 2 * c, 2 * c, 3, 1, 1, s // 2),
    ("enc5 3x3", "conv", 4 * c, 4 * c, 3, 1, 1, s // 4),
    ("neck 3x3 dilation 2", "conv", 4 * c, 4 * c, 3, 1, 2, s // 4),
    ("neck 3x3 dilation 16", "conv", 4 * c, 4 * c, 3, 1, 16, s // 4),
    ("dec3 transposed 4x4 s2", "tconv", 4 * c, 2 * c, 4, 2, 1, s // 4),
    ("dec5 transposed 4x4 s2", "tconv", 2 * c, c, 4, 2, 1, s // 2),
    ("dec6 3x3", "conv", c, c // 2, 3, 1, 1, s),
    (f"BatchNorm {c}ch", "bn", c, c, 0, 1, 1, s),
    (f"BatchNorm {4 * c}ch", "bn", 4 * c, 4 * c, 0, 1, 1, s // 4),
  ]
  cin = 3
  for i in range(m.global_num_convs):
    cout = min(m.disc_base_channels * 2**i, m.disc_max_channels)
    specs.append(
      (f"global conv{i + 1} 5x5 s2", "dconv", cin, cout, 5, 2, 1, s // 2**i)
    )
    cin = cout
  return specs


def _jax_layer(spec, dtype, n: int, forms: str) -> Callable[[], None]:
  """Forward + backward (input and parameter gradients) of one layer, with
  convs in the given forms ('cpu': matmuls, 'native': XLA's convs)."""
  _, kind, cin, cout, k, stride, dil, side = spec
  x = jax.random.normal(jax.random.PRNGKey(0), (n, side, side, cin), dtype)
  conv, conv_transpose = layers.conv_layers(forms, n)
  if kind == "bn":
    module = layers.BatchNorm(dtype=dtype)
  elif kind == "tconv":
    module = conv_transpose(cout, dtype=dtype)
  else:
    module = conv(cout, k, stride, dil, dtype=dtype)
  args = (True,) if kind == "bn" else ()
  variables = module.init(jax.random.PRNGKey(1), x, *args)

  def loss(params, x):
    y, _ = module.apply(
      {**variables, "params": params}, x, *args, mutable=["batch_stats"]
    )
    return jnp.sum(jnp.square(y.astype(jnp.float32)))

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  params = variables["params"]
  jax.block_until_ready(grad(params, x))
  return lambda: jax.block_until_ready(grad(params, x))


def _torch_layer(spec, config, n: int) -> Callable[[], None]:
  import torch

  _, kind, cin, cout, k, stride, dil, side = spec
  device = torch_device()
  if kind == "bn":
    layer = torch.nn.BatchNorm2d(cout)
  elif kind == "tconv":
    layer = torch.nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
  else:
    pad = dil * (k - 1) // 2
    layer = torch.nn.Conv2d(cin, cout, k, stride, pad, dilation=dil)
  layer = layer.to(device)
  x = torch.randn(n, cin, side, side, device=device, requires_grad=True)

  def run():
    layer.zero_grad()
    x.grad = None
    with torch_autocast(device, config):
      y = layer(x)
    y.float().square().sum().backward()
    if device == "cuda":
      torch.cuda.synchronize()

  return run


def bench_layers(config, n: int) -> list[dict]:
  """Per-layer JAX and PyTorch medians, in the same interleaved rounds.
  JAX convs are timed in both forms (the backend's and the other)."""
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[
    config.compute_dtype
  ]
  ours, other = _forms()
  rows = []
  for spec in layer_specs(config):
    fns = {"jax": _jax_layer(spec, dtype, n, ours)}
    if spec[1] != "bn":
      fns["jax_other"] = _jax_layer(spec, dtype, n, other)
    if FLAGS.torch:
      fns["torch"] = _torch_layer(spec, config, n)
    times = interleaved(fns, max(FLAGS.steps, 5), FLAGS.warmup)
    row = {"layer": spec[0], "side": spec[-1], "in": spec[2], "out": spec[3]}
    row.update({k: statistics.median(v) for k, v in times.items()})
    rows.append(row)
    print(f"  timed {spec[0]}", flush=True)
  return rows


def _forms() -> tuple[str, str]:
  """(the backend's conv forms, the other ones)."""
  if jax.default_backend() == "cpu":
    return "cpu", "native"
  return "native", "cpu"


def print_layers(rows: list[dict]) -> None:
  ours, other = _forms()
  print(f"\nforward+backward per layer kind, ms (JAX convs as {ours};")
  print(f"as {other} in brackets)")
  print(f"{'layer':28s} {'in':>12s} {'JAX':>14s} {'PyTorch':>8s} {'ratio':>6s}")
  for r in rows:
    shape = f"{r['side']}^2x{r['in']}"
    j = f"{1e3 * r['jax']:.2f}"
    if "jax_other" in r:
      j += f" [{1e3 * r['jax_other']:.1f}]"
    t = f"{1e3 * r['torch']:8.2f}" if "torch" in r else f"{'':8s}"
    ratio = f"{r['torch'] / r['jax']:6.2f}" if "torch" in r else ""
    print(f"{r['layer']:28s} {shape:>12s} {j:>14s} {t} {ratio}")
  print("ratio = PyTorch time / JAX time (> 1: JAX faster)")


def single_phase(config, phase: str):
  """The config with every step in `phase` (mmagic's counters moved), so
  the loop's intervals all time one program."""
  config = config_lib.from_saved(config.to_dict())
  never, always = 2**30, -1
  tc, td = {
    ts.PHASE_G: (never, never),
    ts.PHASE_D: (always, never),
    ts.PHASE_JOINT: (always, always),
  }[phase]
  config.schedule.update(iter_tc=tc, iter_td=td, start_iter=0, disc_step=1)
  return config


def bare_step_rate(config, phase: str, batch, steps: int) -> float:
  """images/s of the jitted step the loop runs, on one shipped batch
  already on the devices."""
  mesh = sharding.create_mesh()
  state = sharding.put_replicated(
    jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0))), mesh
  )
  fn = batches.on_shipped(ts.make_steps(config)[phase], f"{phase}_step")
  step = sharding.jit_step(fn, mesh, state)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], batch)
    jax.block_until_ready(metrics)

  times = interleaved({"step": run}, steps, max(FLAGS.warmup, 2), settle=0)
  n = config.per_device_batch_size * mesh.devices.size
  return n / statistics.median(times["step"])


def bench_loop(config, phase: str) -> dict:
  """The loop's images/s (its logged intervals after the first, which
  holds the compilation) against the bare step's, before and after it."""
  import tempfile

  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util

  from glcic_jax import train

  config = single_phase(config, phase)
  config.update(
    total_steps=FLAGS.loop_steps,
    log_every=FLAGS.loop_log_every,
    checkpoint_every=FLAGS.loop_checkpoint_every,
    eval_every=0,
    image_every=0,
  )
  mesh = sharding.create_mesh()
  n = config.per_device_batch_size * mesh.devices.size
  feed = train._open_feed(config, mesh, n, 0)
  batch = feed.next()
  feed.close()
  before = bare_step_rate(config, phase, batch, FLAGS.steps)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t0
    trace = os.path.join(workdir, "plugins", "profile")
    if FLAGS.loop_trace_dir and os.path.isdir(trace):
      shutil.copytree(trace, FLAGS.loop_trace_dir, dirs_exist_ok=True)
    events = [
      os.path.join(workdir, f)
      for f in os.listdir(workdir)
      if f.startswith("events.out.tfevents")
    ]
    acc = event_accumulator.EventAccumulator(
      events[0], size_guidance={"tensors": 0, "scalars": 0}
    )
    acc.Reload()
    tag = "images_per_second"
    if tag in acc.Tags().get("scalars", []):
      rates = [e.value for e in acc.Scalars(tag)]
    else:
      rates = [
        float(tensor_util.make_ndarray(e.tensor_proto))
        for e in acc.Tensors(tag)
      ]
  after = bare_step_rate(config, phase, batch, FLAGS.steps)
  step_rate = statistics.median([before, after])
  loop_rate = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
  return {
    "loop": True,
    "config": config.name,
    "source": config.data.source,
    "phase": phase,
    "global_batch_size": n,
    "loop_steps": FLAGS.loop_steps,
    "checkpoint_every": FLAGS.loop_checkpoint_every,
    "compute_dtype": config.compute_dtype,
    "image_size": config.image_size,
    "per_device_batch_size": config.per_device_batch_size,
    "profile_steps": list(config.profile_steps),
    "loop_wall_seconds": wall,
    "loop_images_per_second": loop_rate,
    "loop_interval_rates": rates,
    "step_images_per_second_before": before,
    "step_images_per_second_after": after,
    "step_images_per_second": step_rate,
    "loop_efficiency": loop_rate / step_rate,
    "device_kind": jax.devices()[0].device_kind,
    "host_cpu": host_cpu(),
  }


def print_loop(r: dict) -> None:
  print()
  print(
    f"{r['config']} phase={r['phase']} source={r['source']} batch "
    f"{r['global_batch_size']} on {r['device_kind']} ({r['host_cpu']}); "
    f"{r['loop_steps']} steps, checkpoint every {r['checkpoint_every']}"
  )
  print(f"{'':28s} {'images/s':>10s}")
  print(
    f"{'bare step (before the loop)':28s} {r['step_images_per_second_before']:10.2f}"
  )
  print(
    f"{'bare step (after the loop)':28s} {r['step_images_per_second_after']:10.2f}"
  )
  print(f"{'train_and_evaluate loop':28s} {r['loop_images_per_second']:10.2f}")
  print(
    f"loop efficiency (loop / median of the bare step): "
    f"{r['loop_efficiency']:.3f}"
  )


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.loop:
    config_lib.check_config(config)
    result = bench_loop(config, PHASES[FLAGS.phase])
    if FLAGS.json:
      with open(FLAGS.json, "w") as f:
        json.dump(result, f, indent=2)
    print_loop(result)
    return
  config_lib.check_config(config)
  phase = PHASES[FLAGS.phase]
  peak32 = matmul_peak(jnp.float32, FLAGS.peak_size)
  peak16 = matmul_peak(jnp.bfloat16, FLAGS.peak_size)
  jax_run, info = jax_step(config, phase)
  n = info["batch"]
  fns = {"jax": jax_run}
  if FLAGS.torch:
    fns["torch"] = torch_step(config, phase, n)
  times = interleaved(fns, FLAGS.steps, FLAGS.warmup)
  jt = times["jax"]
  med = statistics.median(jt)
  peak = peak16 if config.compute_dtype == "bfloat16" else peak32
  stats = jax.local_devices()[0].memory_stats() or {}
  result = {
    "device_kind": jax.devices()[0].device_kind,
    "backend": jax.default_backend(),
    "host_cpu": host_cpu(),
    "malloc": huge_pages.describe(),
    "devices": jax.local_device_count(),
    "phase": phase,
    "image_size": config.image_size,
    "compute_dtype": config.compute_dtype,
    "per_device_batch_size": config.per_device_batch_size,
    "global_batch_size": n,
    "steps": FLAGS.steps,
    "step_seconds_median": med,
    "step_seconds_min": min(jt),
    "step_seconds_max": max(jt),
    "images_per_second": n / med,
    "flops_per_step": info["flops"],
    "flops_per_image": info["flops"] / n,
    "executed_flops_per_image": info["executed_flops"] / n,
    # Per device: each device's share of the step against one device's peak.
    "fraction_of_peak": info["flops"] / jax.local_device_count() / med / peak,
    "matmul_peak_flops_f32": peak32,
    "matmul_peak_flops_bf16": peak16,
    "compile_seconds": info["compile_seconds"],
    "peak_memory_bytes": stats.get("peak_bytes_in_use"),
    "compiled_memory": info["memory"],
  }
  if FLAGS.torch:
    tt = times["torch"]
    tmed = statistics.median(tt)
    result.update(
      torch_device=torch_device(),
      torch_step_seconds_median=tmed,
      torch_step_seconds_min=min(tt),
      torch_step_seconds_max=max(tt),
      torch_images_per_second=n / tmed,
      jax_speedup_over_torch=tmed / med,
      torch_peak_memory_bytes=torch_peak_memory(),
    )
  if FLAGS.layers:
    result["layers"] = bench_layers(config, n)
    print_layers(result["layers"])
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(result, f, indent=2)
  mem = result["peak_memory_bytes"]
  planned = (info["memory"] or {}).get("total")
  tmem = result.get("torch_peak_memory_bytes")
  print()
  print(
    f"{config.name} phase={phase} {config.image_size}px "
    f"batch {n} ({config.per_device_batch_size}/device) "
    f"{config.compute_dtype} on {result['device_kind']} "
    f"(host: {result['host_cpu']})\n{result['malloc']}"
  )
  print(
    f"{'':10s} {'step s (median)':>16s} {'min':>8s} {'max':>8s} {'img/s':>9s}"
  )
  print(
    f"{'JAX':10s} {med:16.4f} {min(jt):8.4f} "
    f"{max(jt):8.4f} {result['images_per_second']:9.2f}"
  )
  if FLAGS.torch:
    print(
      f"{'PyTorch':10s} {tmed:16.4f} {min(tt):8.4f} "
      f"{max(tt):8.4f} {result['torch_images_per_second']:9.2f}"
    )
    print(f"JAX speed / PyTorch speed: {result['jax_speedup_over_torch']:.2f}x")
    if tmem:
      print(f"PyTorch peak memory {tmem / 2**30:.2f} GiB")
  print(
    f"GFLOP/image {result['flops_per_image'] / 1e9:.2f} "
    f"({result['executed_flops_per_image'] / 1e9:.2f} as executed); "
    f"{100 * result['fraction_of_peak']:.1f}% of the measured matmul peak "
    f"({peak / 1e12:.3f} TFLOP/s); compile {info['compile_seconds']:.1f} s; "
    f"peak memory {f'{mem / 2**30:.2f} GiB' if mem else 'n/a'}; "
    "step buffers as compiled "
    f"{f'{planned / 2**20:.1f} MiB' if planned else 'n/a'} per device"
  )


if __name__ == "__main__":
  huge_pages.reexec_with_huge_pages()
  flags.mark_flags_as_required(["config"])
  app.run(main)
