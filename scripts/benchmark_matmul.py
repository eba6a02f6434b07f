"""XLA's CPU matmul against PyTorch's on the shapes the CPU conv forms use.

  python scripts/benchmark_matmul.py

Why: on the CPU backend `glcic_jax.conv_layers` computes every conv as a
matmul, so XLA's matrix multiply bounds the JAX step there. This prints
GFLOP/s of `a @ b` in JAX and in PyTorch (same shapes, float32, same
process, interleaved rounds, medians) and the ratio JAX/PyTorch.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_train import host_cpu  # noqa: E402

# (M, K, N): a square reference, then im2col/row-patch shapes of the demo
# (16-32 channels) and of the paper model at 64-256px.
SHAPES = [
  (4096, 4096, 4096),
  (32768, 144, 16),
  (32768, 16, 144),
  (8192, 288, 32),
  (2048, 576, 64),
  (16384, 384, 384),
  (65536, 192, 96),
]


def median_seconds(fns, rounds: int = 10, warmup: int = 3):
  for _ in range(warmup):
    for fn in fns:
      fn()
  times = [[] for _ in fns]
  for _ in range(rounds):
    for i, fn in enumerate(fns):
      t0 = time.perf_counter()
      fn()
      times[i].append(time.perf_counter() - t0)
  return [statistics.median(t) for t in times]


def main() -> None:
  rng = np.random.default_rng(0)
  matmul = jax.jit(lambda a, b: a @ b)
  print(
    f"device: {jax.devices()[0].device_kind} ({host_cpu()}); torch threads "
    f"{torch.get_num_threads()}"
  )
  print(
    f"{'M x K x N':>22s} {'JAX GF/s':>9s} {'torch GF/s':>10s} {'ratio':>6s}"
  )
  for m, k, n in SHAPES:
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tj, tt = median_seconds(
      [
        lambda ja=ja, jb=jb: matmul(ja, jb).block_until_ready(),
        lambda ta=ta, tb=tb: ta @ tb,
      ]
    )
    flops = 2 * m * k * n
    print(
      f"{f'{m} x {k} x {n}':>22s} {flops / tj / 1e9:9.1f} "
      f"{flops / tt / 1e9:10.1f} {tt / tj:6.2f}"
    )
  print("ratio = JAX speed / PyTorch speed")


if __name__ == "__main__":
  main()
