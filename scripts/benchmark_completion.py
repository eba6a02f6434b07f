"""Completing photos of random sizes: compilations, latency, memory.

  python scripts/benchmark_completion.py [--channels=64] [--trained=256]
      [--photos=20] [--strategies=auto,original] [--big=6000x4000]

A generator of the paper's widths (random weights: time and memory do not
depend on them) trained at --trained px completes --photos photos of
random sizes (300 to 1600 px a side, a 60-160 px hole each), once per
strategy: the number of programs compiled (shape buckets), and the
latency p50/p95 after a warm-up pass over the same photos. First, one
--big photo (24 MP) with a 120 x 120 hole under the default strategy: its
time and the process's peak memory (measured before anything larger ran),
beside what `original` would need by the engine's estimate.
`--strategies=auto,original --channels=16` shows the buckets of
`original` in CPU time that stays reasonable.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glcic_jax import config as config_lib  # noqa: E402
from glcic_jax import models  # noqa: E402
from glcic_jax.inpaint import completer as inference  # noqa: E402
from glcic_jax.inpaint import engine as engine_lib  # noqa: E402


def _rss_mib() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return 0.0


class PeakMemory:
  """The largest resident set size while the block runs, sampled every
  5 ms (the process's lifetime peak would include earlier work)."""

  def __enter__(self):
    self.start = self.peak = _rss_mib()
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._done.wait(0.005):
      self.peak = max(self.peak, _rss_mib())

  def __exit__(self, *exc):
    self._done.set()
    self._thread.join()


def _photo(rng, height: int, width: int) -> np.ndarray:
  """Smooth random colours (a photo's statistics matter little here)."""
  small = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3))
  rows = np.linspace(0, small.shape[0] - 1, height).astype(int)
  cols = np.linspace(0, small.shape[1] - 1, width).astype(int)
  return small[rows][:, cols].astype(np.uint8)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--channels", type=int, default=64)
  parser.add_argument("--trained", type=int, default=256)
  parser.add_argument("--photos", type=int, default=20)
  parser.add_argument("--strategies", default="auto")
  parser.add_argument("--big", default="6000x4000")
  args = parser.parse_args()
  config = config_lib.get_base_config()
  config.image_size = args.trained
  config.model.generator_channels = args.channels
  generator, _ = models.build_models(config.model)
  variables = generator.init(
    jax.random.key(0),
    np.zeros((1, args.trained, args.trained, 4), np.float32),
    train=False,
  )
  completer = inference.Completer(generator, variables, config, 0)
  engine = engine_lib.Engine(completer)
  rng = np.random.default_rng(0)
  jobs = []
  for _ in range(args.photos):
    height, width = (int(s) for s in rng.integers(300, 1601, 2))
    side = int(rng.integers(60, 161))
    top = int(rng.integers(0, height - side))
    left = int(rng.integers(0, width - side))
    hole = np.zeros((height, width), bool)
    hole[top : top + side, left : left + side] = True
    jobs.append((_photo(rng, height, width), hole))

  width, height = (int(s) for s in args.big.split("x"))
  image = _photo(rng, height, width)
  hole = np.zeros((height, width), bool)
  hole[height // 2 : height // 2 + 120, width // 3 : width // 3 + 120] = True
  compiled_at_start = completer._apply._cache_size()
  seconds = []
  for _ in range(2):  # the first call compiles the trained-size program
    with PeakMemory() as memory:
      started = time.perf_counter()
      _, report = engine.complete(image, hole)
      seconds.append(time.perf_counter() - started)
  estimate = engine.estimate_bytes(height, width) / 2**30
  print(
    f"{width}x{height} ({width * height / 1e6:.0f} MP), 120x120 hole: "
    f"{report.strategy} in {seconds[0]:.2f} s (compiling), {seconds[1]:.2f} "
    f"s warm; resident memory {memory.start:.0f} MiB before, peak "
    f"{memory.peak:.0f} MiB during the warm call (the photo alone: "
    f"{image.nbytes / 2**20:.0f} MiB); `original` would need about "
    f"{estimate:.1f} GiB by the engine's estimate\n"
  )

  print(
    f"generator width {args.channels}, trained at {args.trained} px, "
    f"{len(jobs)} photos of 300-1600 px, {os.cpu_count()} CPU cores\n"
  )
  # auto's programs count the 24 MP photo's too (the same one).
  print("| strategy | programs compiled | first pass s | p50 s | p95 s |")
  print("|---|---|---|---|---|")
  for strategy in args.strategies.split(","):
    before = completer._apply._cache_size()
    started = time.perf_counter()
    for image, hole in jobs:
      engine.complete(image, hole, strategy=strategy)
    first = time.perf_counter() - started
    compiled = completer._apply._cache_size() - (
      compiled_at_start if strategy == "auto" else before
    )
    times = []
    for image, hole in jobs:
      started = time.perf_counter()
      engine.complete(image, hole, strategy=strategy)
      times.append(time.perf_counter() - started)
    p50, p95 = np.percentile(times, [50, 95])
    print(f"| {strategy} | {compiled} | {first:.1f} | {p50:.3f} | {p95:.3f} |")


if __name__ == "__main__":
  main()
