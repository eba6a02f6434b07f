"""Export time and completion latency of the deployable generators.

  python scripts/benchmark_export.py [--size=512] [--runs=10] [--channels=64]

Exports the paper generator (random weights; the time does not depend on
them) to ONNX, StableHLO and the PyTorch file, then times one completion
of a --size x --size image (batch 1) in each runtime on this machine's CPU,
beside the JAX `Completer` (the CPU forms of the convolutions) in the same
run: median and best of --runs after one warm-up call. Prints a table and
each runtime's latency relative to JAX's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glcic_jax import config as config_lib  # noqa: E402
from glcic_jax import generator_export, models, torch_generator  # noqa: E402
from glcic_jax.inpaint import completer as inference  # noqa: E402


def timed(fn, runs: int) -> tuple[float, float]:
  """(median, best) seconds of `fn()` over `runs`, after one warm-up."""
  fn()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), min(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--runs", type=int, default=10)
  parser.add_argument("--channels", type=int, default=64)
  args = parser.parse_args()
  config = config_lib.get_base_config()
  config.model.generator_channels = args.channels
  generator, _ = models.build_models(config.model, conv_forms="native")
  variables = generator.init(
    jax.random.key(0), np.zeros((1, 64, 64, 4), np.float32), train=False
  )
  rng = np.random.default_rng(0)
  size = args.size
  image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
  hole = np.zeros((size, size), np.float32)
  hole[size // 4 : size // 2, size // 3 : size // 2] = 1
  nchw = image.transpose(2, 0, 1)[None].astype(np.float32)
  mask = hole[None, None]

  rows = []
  with tempfile.TemporaryDirectory() as folder:
    paths = {}
    for fmt, suffix in generator_export.SUFFIXES.items():
      paths[fmt] = os.path.join(folder, f"gl{suffix}")
      summary = generator_export.export_generator(
        variables, config.model, paths[fmt], fmt, {"source": "benchmark"}
      )
      print(
        f"export {fmt}: {summary['seconds']:.1f} s, {summary['bytes']:,} bytes",
        flush=True,
      )

    completer = inference.Completer(
      models.build_models(config.model)[0], variables, config, 0
    )
    rows.append(
      (
        "JAX Completer (CPU forms)",
        *timed(lambda: completer.complete(image, hole), args.runs),
      )
    )

    import onnxruntime

    session = onnxruntime.InferenceSession(
      paths["onnx"], providers=["CPUExecutionProvider"]
    )
    feed = {"image": nchw, "mask": mask}
    rows.append(
      ("ONNX Runtime (CPU)", *timed(lambda: session.run(None, feed), args.runs))
    )

    exported = jax.export.deserialize(
      bytearray(open(paths["stablehlo"], "rb").read())
    )
    rows.append(
      (
        "StableHLO (jax.export, CPU)",
        *timed(lambda: np.asarray(exported.call(nchw, mask)), args.runs),
      )
    )

    import torch

    module = torch_generator.load(paths["torch"])
    inputs = torch.from_numpy(nchw), torch.from_numpy(mask)

    def run_torch():
      with torch.no_grad():
        module(*inputs)

    rows.append(("PyTorch module (CPU)", *timed(run_torch, args.runs)))

  base = rows[0][1]
  print(
    f"\n{size}x{size}, batch 1, generator width {args.channels}, "
    f"{os.cpu_count()} CPU cores, {args.runs} runs\n"
  )
  print("| runtime | median s | best s | latency / JAX's |")
  print("|---|---|---|---|")
  for name, median, best in rows:
    print(f"| {name} | {median:.3f} | {best:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
  main()
