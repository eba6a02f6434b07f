"""glcic-train: trains Global&Local from a config, resuming where it stopped.

  glcic-train --config=configs/demo.py --workdir=runs/demo \\
      [--config.total_steps=100 ...]

Writes checkpoints, TensorBoard logs (`tensorboard --logdir W`), evaluations
(`W/eval/`) and `W/completions.png` into the workdir; run the same command
again to resume from its latest checkpoint. A typo in an override
(`--config.totl_steps=5`) is an error. Over several hosts, run it on every
host with --distributed, or with --coordinator_address, --num_processes and
--process_id.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  launch.define_config_flag(
    flag_values,
    "Training config file (configs/*.py); --config.x=y overrides a field.",
    sys_argv,
  )
  flags.DEFINE_string(
    "workdir", None, "Checkpoints, logs and images go here.", **fv
  )
  flags.mark_flags_as_required(["config", "workdir"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from glcic_jax import train, train_log

  started = time.time()
  workdir = flag_values.workdir
  state = train.train_and_evaluate(flag_values.config, workdir)
  grid = os.path.join(workdir, "completions.png")
  seen = f"; see {grid}" if os.path.exists(grid) else ""
  logging.info(
    "Done: step %d in %s; checkpoints, TensorBoard logs and evaluations "
    "are in %s%s",
    int(state.step),
    train_log.minutes_and_seconds(time.time() - started),
    workdir,
    seen,
  )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main, on_mesh=True, reads_data=True)


if __name__ == "__main__":
  run()
