"""Where one training phase's step spends its time on the CPU backend.

  python scripts/profile_step.py --config=configs/gl_places.py \\
      --config.per_device_batch_size=1 --phase=g [--steps=3] [--top=25] \\
      [--json=out.json]

Compiles the phase step exactly as `benchmark_train.py` does (and takes
its flags), times `--steps` steps untraced (median), then traces as many
with `jax.profiler` and reads the trace back (the XSpace protobuf, through TensorFlow's copy of
`xplane_pb2`). XLA's CPU runtime records one event per executed op
(thunk), named after the HLO instruction, so each event is matched to the
compiled HLO and sorted into a kind:

- matmul: a dot run inline (YNNPACK fusions on JAX 0.10+), with its FLOPs,
  GFLOP/s and form (NN: both operands row-major as multiplied; NT, TN: the
  library reads one operand transposed);
- matmul, asynchronous: a plain dot that the runtime hands to Eigen's
  thread pool; its event ends at the hand-over, so its work is not in the
  event times but overlaps the ops after it;
- convolution; data movement (fusions of only concatenate, pad, slice,
  copy, transpose, reshape, broadcast: the patches of the matmul conv forms
  and their gradients); collective (the cross-device sums of BatchNorm
  statistics and gradients, including the wait for the other devices);
  reduction (BatchNorm statistics, losses); elementwise (the rest).

Made for the CPU, where it answers "how far is each matmul from the
machine's peak, and how much time is spent outside the matmuls"
(docs/performance.md). With several local CPU devices the times and FLOPs
are summed over them. On GPUs and TPUs use TensorBoard's profiler (xprof)
instead.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import jax
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchmark_train  # noqa: E402

from glcic_jax import config as config_lib  # noqa: E402
from glcic_jax.startup import huge_pages  # noqa: E402

# --config, --phase, --steps, --warmup and --json are benchmark_train's flags.
flags.DEFINE_integer("top", 25, "How many single ops to list.")
FLAGS = flags.FLAGS

MOVE_OPS = {
  "parameter",
  "constant",
  "concatenate",
  "pad",
  "slice",
  "dynamic-slice",
  "dynamic-update-slice",
  "copy",
  "transpose",
  "bitcast",
  "reshape",
  "broadcast",
  "tuple",
  "get-tuple-element",
}
COLLECTIVE_OPS = {
  "all-reduce",
  "all-reduce-start",
  "all-gather",
  "reduce-scatter",
  "all-to-all",
  "collective-permute",
}
_INSTR = re.compile(
  r"^\s*(?:ROOT )?%(\S+) = (\([^=]*?\)|\w+\[[\d,]*\](?:\{[^}]*\})?) "
  r"([\w-]+)\((.*)$",
  re.M,
)
_COMPUTATION = re.compile(r"^%(\S+) \(.*?\{\n(.*?)\n\}", re.M | re.S)


def _int_list(pattern: str, text: str) -> list[int]:
  return [int(v) for v in re.search(pattern, text).group(1).split(",") if v]


def _dims(shape: str) -> list[int]:
  m = re.match(r"\w+\[([\d,]*)\]", shape)
  return [int(d) for d in m.group(1).split(",") if d] if m else []


class HloIndex:
  """Instructions of a compiled module's text by name: opcode, shape and
  operands, and the bodies of the computations that fusions call."""

  def __init__(self, text: str):
    self.instr = {}
    for name, shape, opcode, rest in _INSTR.findall(text):
      self.instr[name] = (shape, opcode, rest)
    self.bodies = {}
    for name, body in _COMPUTATION.findall(text):
      self.bodies[name] = [m[0] for m in _INSTR.findall(body)]

  def _ops(self, name: str) -> list[str]:
    """The instruction itself, or every instruction of a fusion's body."""
    shape, opcode, rest = self.instr[name]
    m = re.search(r"calls=%([\w.-]+)", rest)
    if opcode == "fusion" and m and m.group(1) in self.bodies:
      return self.bodies[m.group(1)]
    return [name]

  def _dot(self, name: str) -> tuple[float, str]:
    """FLOPs of one dot, and its form as "NT MxKxN": N when an operand is
    read as stored, T when the library reads it transposed."""
    shape, _, rest = self.instr[name]
    lhs, rhs = re.findall(r"%([\w.-]+)", rest.split(")")[0])[:2]
    lc = _int_list(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    rc = _int_list(r"rhs_contracting_dims=\{([\d,]*)\}", rest)
    lhs_dims = _dims(self.instr[lhs][0])
    rank_r = len(_dims(self.instr[rhs][0]))
    k = math.prod(lhs_dims[i] for i in lc)
    out = _dims(shape)
    form = ("N" if lc == [len(lhs_dims) - 1] else "T") + (
      "N" if rc == [rank_r - 2] else "T"
    )
    size = "x".join(map(str, [*out[:-1], k, out[-1]]))
    return 2.0 * math.prod(out) * k, f"{form} {size}"

  def describe(self, name: str) -> dict:
    """kind, FLOPs (dots only) and a short description of one op."""
    opcode = self.instr[name][1]
    ops = self._ops(name)
    opcodes = {self.instr[o][1] for o in ops}
    dots = [o for o in ops if self.instr[o][1] == "dot"]
    info = {"kind": "elementwise", "flops": 0.0, "what": opcode}
    if dots:
      facts = [self._dot(d) for d in dots]
      flops = sum(f for f, _ in facts)
      forms = [form for _, form in facts]
      asynchronous = opcode == "dot"
      info.update(
        kind="matmul, asynchronous" if asynchronous else "matmul",
        flops=flops,
        what="; ".join(forms),
      )
    elif opcodes & COLLECTIVE_OPS:
      info.update(kind="collective", what=f"{opcode} -> {self.instr[name][0]}")
    elif "convolution" in opcodes:
      info.update(
        kind="convolution", what=f"convolution -> {self.instr[name][0]}"
      )
    elif opcodes <= MOVE_OPS:
      moved = "/".join(sorted(opcodes - {"parameter", "bitcast"}))
      info.update(
        kind="data movement", what=f"{moved} -> {self.instr[name][0]}"
      )
    elif opcodes & {"reduce", "reduce-window"}:
      info.update(kind="reduction", what=f"reduce -> {self.instr[name][0]}")
    else:
      info["what"] = f"{opcode} -> {self.instr[name][0]}"
    return info


def op_events(trace_dir: str, known: set[str]) -> list[tuple[int, int, str]]:
  """(start, end, HLO instruction) of every op event in the trace, in
  picoseconds on one clock for all threads."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2

  (path,) = Path(trace_dir).glob("plugins/profile/*/*.xplane.pb")
  space = xplane_pb2.XSpace()
  space.ParseFromString(path.read_bytes())
  events = []
  for plane in space.planes:
    for line in plane.lines:
      for ev in line.events:
        name = plane.event_metadata[ev.metadata_id].name
        if name in known:
          start = line.timestamp_ns * 1000 + ev.offset_ps
          events.append((start, start + ev.duration_ps, name))
  return events


def op_seconds(events: list[tuple[int, int, str]]) -> dict[str, float]:
  """Total seconds of each HLO instruction's events."""
  totals: dict[str, float] = collections.Counter()
  for start, end, name in events:
    totals[name] += (end - start) * 1e-12
  return totals


def busy_seconds(events: list[tuple[int, int, str]]) -> float:
  """Seconds during which at least one op ran: the union of the events.

  The runtime runs independent ops side by side (the weight transforms at
  the start of a step, say, next to the first convolution), and each
  event lasts as long as its op had to share the cores, so the events sum
  to more than this (64px generator step: 339 ms of events, 281 ms
  busy).
  """
  busy, run_start, run_end = 0, None, None
  for start, end, _ in sorted(events):
    if run_end is None or start > run_end:
      if run_end is not None:
        busy += run_end - run_start
      run_start, run_end = start, end
    else:
      run_end = max(run_end, end)
  if run_end is not None:
    busy += run_end - run_start
  return busy * 1e-12


def main(argv):
  del argv
  if jax.default_backend() != "cpu":
    raise app.UsageError(
      "profile_step.py reads XLA's CPU runtime events; on "
      "GPUs and TPUs use TensorBoard's profiler."
    )
  config = FLAGS.config
  config_lib.check_config(config)
  run, info = benchmark_train.jax_step(
    config, benchmark_train.PHASES[FLAGS.phase]
  )
  wall = benchmark_train.interleaved({"jax": run}, FLAGS.steps, FLAGS.warmup)[
    "jax"
  ]
  hlo = HloIndex(info["compiled"].as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(FLAGS.steps):
        run()
    events = op_events(trace_dir, set(hlo.instr))
  seconds = op_seconds(events)
  busy = 1e3 * busy_seconds(events) / FLAGS.steps
  # Every local device runs the same partitioned program: events and FLOPs
  # are summed over them, like `info["executed_flops"]`.
  devices = jax.local_device_count()
  ops = []
  for name, s in seconds.items():
    d = hlo.describe(name)
    d["flops"] *= devices
    ops.append({"op": name, "ms_per_step": 1e3 * s / FLAGS.steps, **d})
  kinds: dict[str, dict] = {}
  for o in ops:
    k = kinds.setdefault(o["kind"], {"ms_per_step": 0.0, "gflop_per_step": 0.0})
    k["ms_per_step"] += o["ms_per_step"]
    k["gflop_per_step"] += o["flops"] * 1e-9
  traced = sum(k["ms_per_step"] for k in kinds.values())
  step_ms = 1e3 * statistics.median(wall)
  ops.sort(key=lambda o: -o["ms_per_step"])

  print(f"\nTop {FLAGS.top} ops (ms per step):")
  for o in ops[: FLAGS.top]:
    rate = ""
    if o["kind"] == "matmul" and o["ms_per_step"] > 0:
      rate = f" {o['flops'] / o['ms_per_step'] * 1e-6:.0f} GFLOP/s"
    print(f"{o['ms_per_step']:8.2f}  {o['kind']:22s} {o['what'][:90]}{rate}")
  print(
    f"\n{FLAGS.phase} step, batch {info['batch']}: {step_ms:.1f} ms "
    f"(median untraced), traced op time {traced:.1f} ms per step, "
    f"{busy:.1f} ms with an op running (ops run side by side share the "
    "cores, and each one's time includes that)"
  )
  print("| kind | ms/step | share of traced | GFLOP/step | GFLOP/s |")
  print("|---|---|---|---|---|")
  for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]["ms_per_step"]):
    rate = "n/a"
    if kind == "matmul" and k["ms_per_step"] > 0:
      rate = f"{k['gflop_per_step'] / k['ms_per_step'] * 1e3:.0f}"
    gf = f"{k['gflop_per_step']:.1f}" if k["gflop_per_step"] else ""
    print(
      f"| {kind} | {k['ms_per_step']:.1f} | "
      f"{100 * k['ms_per_step'] / traced:.0f}% | {gf} | {rate} |"
    )
  print(
    "Asynchronous matmuls' events end when Eigen takes them over: their "
    "work overlaps the ops after them and is not in the ms column."
  )
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(
        {
          "phase": FLAGS.phase,
          "batch": info["batch"],
          "step_ms_median": step_ms,
          "traced_ms_per_step": traced,
          "busy_ms_per_step": busy,
          "devices": devices,
          "xla_flops_per_step": info["executed_flops"],
          "kinds": kinds,
          "ops": ops,
        },
        f,
        indent=1,
      )


if __name__ == "__main__":
  huge_pages.reexec_with_huge_pages()  # as benchmark_train's steps run
  flags.mark_flags_as_required(["config"])
  app.run(main)
