"""XLA's CPU matmul against PyTorch's on the shapes the CPU conv forms use.

  python scripts/benchmark_matmul.py

Why: on the CPU backend `glcic_jax.cpu` computes most convs as
matmuls, so XLA's matrix multiply is what they can reach at best (whether
it or PyTorch's matmul is faster depends on the CPU: docs/performance.md).
This prints
GFLOP/s of `a @ b` in JAX and in PyTorch (same shapes, float32, same
process, interleaved rounds, medians) and the ratio JAX/PyTorch.
"""

from __future__ import annotations

import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_train import host_cpu, interleaved  # noqa: E402

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
    times = interleaved(
      {
        "jax": lambda ja=ja, jb=jb: matmul(ja, jb).block_until_ready(),
        "torch": lambda ta=ta, tb=tb: ta @ tb,
      },
      steps=10,
      warmup=3,
    )
    tj, tt = (statistics.median(times[k]) for k in ("jax", "torch"))
    flops = 2 * m * k * n
    print(
      f"{f'{m} x {k} x {n}':>22s} {flops / tj / 1e9:9.1f} "
      f"{flops / tt / 1e9:10.1f} {tt / tj:6.2f}"
    )
  print("ratio = JAX speed / PyTorch speed")


if __name__ == "__main__":
  main()
