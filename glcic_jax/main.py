"""glcic-train: trains Global&Local from a config.

  glcic-train --config=configs/demo.py --workdir=/tmp/demo \\
      [--config.total_steps=100 ...]

This file is intentionally thin: the loop lives in `train.py`
(`train_and_evaluate`), which tests and notebooks import directly.
Multi-host: pass --coordinator_address/--num_processes/--process_id, or
--distributed to let `jax.distributed.initialize()` detect the cluster
(TPU pods, SLURM, ...).
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from glcic_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config", None, "Training config file (configs/*.py).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and images go here.")
flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (multi-host runs)."
)
flags.DEFINE_integer("num_processes", None, "Number of processes.")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.DEFINE_bool(
  "distributed", False, "Call jax.distributed.initialize() with auto-detection."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # TensorFlow only feeds data: keep it off the accelerators JAX uses.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")

  import jax

  if FLAGS.coordinator_address or FLAGS.distributed:
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  logging.info(
    "JAX process %d/%d, %d local / %d global devices (%s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )
  from glcic_jax import train

  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def run() -> None:
  """Console-script entry point."""
  cli.run_app(main, __name__)


if __name__ == "__main__":
  run()
