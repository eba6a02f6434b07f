"""glcic-eval: l1 error / PSNR / SSIM of a checkpoint, as mmagic reports them.

  glcic-eval --workdir=/ckpt/gl_places [--step N] [--config=configs/gl_places.py]
      [--split validation] [--output results.json]

The networks' shapes come from the config saved in the checkpoint (our own
or one written by glcic-import); `--config` (optional) names the evaluation
data and batch size. Holes and crops are fixed per image index and seed, so
two evaluations of a checkpoint give identical numbers. Writes the JSON
(default `<workdir>/eval/step_<N>.json`), a PNG grid beside it and
TensorBoard scalars, and prints the numbers. Over several hosts, run it on
every host as glcic-train is run.
"""

from __future__ import annotations

import contextlib
import os

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "Workdir holding the checkpoints.", **fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).", **fv)
  launch.define_config_flag(
    flag_values,
    "Config naming the eval data (default: the checkpoint's saved one).",
    sys_argv,
  )
  flags.DEFINE_string(
    "split", None, "Overrides eval_data.tfds_split / skimage_split.", **fv
  )
  flags.DEFINE_string(
    "output", None, "JSON path (default: workdir/eval/step_N.json).", **fv
  )
  flags.DEFINE_integer(
    "num_batches", -1, "Evaluate only this many global batches (-1: all).", **fv
  )
  flags.DEFINE_string(
    "tensorboard_dir",
    None,
    "TensorBoard events go here (default: workdir/eval without --output, "
    "none with it).",
    **fv,
  )
  flags.mark_flags_as_required(["workdir"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from glcic_jax import checkpointing, evaluate, summaries

  fv = flag_values
  if not checkpointing.existing_steps(fv.workdir):  # before any file is made
    raise app.UsageError(f"No checkpoint in {fv.workdir}")
  events = fv.tensorboard_dir
  if events is None and fv.output is None:
    events = os.path.join(fv.workdir, "eval")
  writer = summaries.tensorboard_writer(events) if events else None
  with summaries.flushing(writer) if writer else contextlib.nullcontext():
    record = evaluate.evaluate_checkpoint(
      fv.workdir,
      step=fv.step,
      config=fv.config,
      split=fv.split,
      output=fv.output,
      num_batches=fv.num_batches,
      writer=writer,
    )
  print(
    f"step {record['checkpoint_step']}, {record['num_images']} images "
    f"({record['source']}): l1 error {record['l1_error']:.3f}, "
    f"PSNR {record['psnr']:.3f}, SSIM {record['ssim']:.4f} -> "
    f"{record['json_path']}"
  )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main, on_mesh=True, reads_data=True)


if __name__ == "__main__":
  run()
