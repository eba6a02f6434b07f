"""How long XLA takes to compile the programs of a training run.

  python scripts/benchmark_compile.py --config=configs/tiny.py
  python scripts/benchmark_compile.py --config=configs/gl_places.py

Why: every training process compiles an init program and three step
programs before its first step, and a restarted process or each process of
a multi-process run does it again unless the persistent compilation cache
has them. On a CPU that is most of a short run (and of the test suite).
One row per program, each compiled on 1 device, `--repeats` times from a
fresh lowering with JAX's caches cleared (median), next to a baseline
compiled in the same run:
- init: the same variables drawn with JAX's default, partitionable
  threefry (`partitionable_init` below);
- steps: XLA's native convolutions (`make_steps(conv_forms="native")`)
  instead of the CPU conv forms (Winograd, row and patch matmuls), which
  trade compile time for step time. On GPUs and TPUs the two are the same
  program.
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from glcic_jax import models, train_state
from glcic_jax import train_steps as ts

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config.", lock_config=True)
flags.DEFINE_integer("repeats", 3, "Compiles of each program (median).")
flags.DEFINE_integer("batch", 0, "Batch of the step programs (0: config's).")


def compile_seconds(fn, *args, repeats: int) -> float:
  """Median time of `jax.jit(fn).lower(*args).compile()`, compile only."""
  times = []
  for _ in range(repeats):
    jax.clear_caches()
    lowered = jax.jit(fn).lower(*args)
    start = time.perf_counter()
    lowered.compile()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def partitionable_init(config, rng):
  """`train_state.init_state` with JAX's default, partitionable threefry."""
  init_rng, state_rng = jax.random.split(rng)
  generator, discs = models.build_models(config.model, conv_forms="native")
  size, local = config.image_size, config.local_size
  g_rng, d_rng = jax.random.split(init_rng)
  with jax.threefry_partitionable(True):
    g_vars = generator.init(g_rng, jnp.zeros((1, size, size, 4)), train=False)
    d_vars = discs.init(
      d_rng,
      jnp.zeros((1, size, size, 3)),
      jnp.zeros((1, local, local, 3)),
      train=False,
    )
  return train_state.create_state(dict(g_vars), dict(d_vars), state_rng, config)


def abstract_batch(config, n: int) -> dict:
  size = config.image_size
  return {
    "image": jax.ShapeDtypeStruct((n, size, size, 3), jnp.float32),
    "mask": jax.ShapeDtypeStruct((n, size, size, 1), jnp.float32),
    "local_bbox": jax.ShapeDtypeStruct((n, 4), jnp.int32),
  }


def main(argv):
  del argv
  config, repeats = FLAGS.config, FLAGS.repeats
  n = FLAGS.batch or config.per_device_batch_size
  key = jax.random.PRNGKey(0)
  rows = [
    (
      "init",
      compile_seconds(
        functools.partial(train_state.init_state, config), key, repeats=repeats
      ),
      compile_seconds(
        functools.partial(partitionable_init, config), key, repeats=repeats
      ),
    )
  ]
  state = jax.eval_shape(functools.partial(train_state.init_state, config), key)
  batch = abstract_batch(config, n)
  native_steps = ts.make_steps(config, conv_forms="native")
  for phase, step in ts.make_steps(config).items():
    ours = compile_seconds(step, state, batch, repeats=repeats)
    native = compile_seconds(native_steps[phase], state, batch, repeats=repeats)
    rows.append((f"{phase} step", ours, native))
  print(
    f"config {config.name}: {config.image_size}px, batch {n}, "
    f"{jax.devices()[0].device_kind}, median of {repeats}"
  )
  print(
    f"{'program':>20s} {'glcic-jax s':>12s} {'baseline s':>11s} {'ratio':>6s}"
  )
  for name, ours, base in rows:
    print(f"{name:>20s} {ours:12.2f} {base:11.2f} {ours / base:6.2f}")
  print(
    "baseline: init with the partitionable threefry; steps with XLA's "
    "native convs. ratio = glcic-jax / baseline (below 1: faster to compile)"
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
