"""A markdown table of `benchmark_train.py --json` results, one row each.

  python scripts/benchmark_table.py results/*.json

For docs/performance.md: the step of each phase and precision, JAX and
PyTorch images/s from the same run, their ratio, the fraction of the
matmul peak measured in that run, the allocators' peak memory (JAX /
PyTorch, GPUs and TPUs) and the JAX step's buffers as XLA planned them
(every backend). Whole-loop results (`--loop`) get a second table: the
loop's images/s against its bare step's, and their ratio.
"""

from __future__ import annotations

import json
import sys


def _gib(n: int | None) -> str:
  return f"{n / 2**30:.1f}" if n else "n/a"


def row(r: dict) -> str:
  torch_ips = r.get("torch_images_per_second")
  cells = [
    f"{r['device_kind']} x{r['devices']}",
    r["phase"],
    r["compute_dtype"],
    f"{r['image_size']}px, {r['per_device_batch_size']}/device",
    f"{r['images_per_second']:.1f}",
    f"{torch_ips:.1f}" if torch_ips else "n/a",
    f"{r['jax_speedup_over_torch']:.2f}x" if torch_ips else "n/a",
    f"{r['flops_per_image'] / 1e9:.3g}",
    f"{100 * r['fraction_of_peak']:.0f}%",
    f"{_gib(r['peak_memory_bytes'])} / {_gib(r.get('torch_peak_memory_bytes'))}",
    _gib((r.get("compiled_memory") or {}).get("total")),
  ]
  return "| " + " | ".join(cells) + " |"


def loop_row(r: dict) -> str:
  cells = [
    f"{r['device_kind']}",
    r["phase"],
    r.get("compute_dtype", "?"),
    f"{r.get('image_size', '?')}px, {r['global_batch_size']} a step",
    r["source"],
    f"{r['loop_steps']}, checkpoint every {r['checkpoint_every']}",
    f"{r['loop_images_per_second']:.1f}",
    f"{r['step_images_per_second_before']:.1f} / "
    f"{r['step_images_per_second_after']:.1f}",
    f"{r['loop_efficiency']:.3f}",
  ]
  return "| " + " | ".join(cells) + " |"


def main(paths: list[str]) -> None:
  results = []
  for path in paths:
    with open(path) as f:
      results.append(json.load(f))
  steps = [r for r in results if not r.get("loop")]
  loops = [r for r in results if r.get("loop")]
  print(
    "| device | phase | precision | size, batch | JAX img/s | PyTorch img/s"
    " | JAX/PyTorch | GFLOP/img | % of matmul peak | peak GiB JAX / PyTorch"
    " | JAX planned GiB |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in steps:
    print(row(r))
  if loops:  # benchmark_train.py --loop
    print()
    print(
      "| device | phase | precision | size, batch | source | steps"
      " | loop img/s | bare step img/s before / after | loop efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in loops:
      print(loop_row(r))


if __name__ == "__main__":
  main(sys.argv[1:])
