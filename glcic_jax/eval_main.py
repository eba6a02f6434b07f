"""glcic-eval: l1 error / PSNR / SSIM of a checkpoint, as mmagic reports them.

  glcic-eval --workdir=/ckpt/gl_places [--step N] [--config=configs/gl_places.py]
      [--split validation] [--output results.json]

The networks' shapes come from the config saved in the checkpoint (our own
or one written by glcic-import); `--config` (optional) names the evaluation
data and batch size. Holes and crops are fixed per image index and seed, so
two evaluations of a checkpoint give identical numbers. Writes the JSON
(default `<workdir>/eval/step_<N>.json`), a PNG grid beside it and
TensorBoard scalars, and prints the numbers.
"""

from __future__ import annotations

import json
import os

import jax
from absl import app, flags
from clu import metric_writers
from ml_collections import config_flags

from glcic_jax import checkpointing, evaluate, models, sharding

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defined when the command runs, so importing this module is harmless."""
  flags.DEFINE_string("workdir", None, "Workdir holding the checkpoints.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config naming the eval data (default: saved one).",
    lock_config=True,
  )
  flags.DEFINE_string(
    "split", None, "Overrides eval_data.tfds_split / skimage_split."
  )
  flags.DEFINE_string("output", None, "JSON path (default: workdir/eval/).")
  flags.DEFINE_integer(
    "num_batches", -1, "Evaluate only this many global batches (-1: all)."
  )
  flags.mark_flags_as_required(["workdir"])


def run_evaluation(
  workdir: str,
  *,
  step: int | None = None,
  config=None,
  split: str | None = None,
  output: str | None = None,
  num_batches: int = -1,
) -> dict:
  """Restores the generator of `step` and evaluates it; returns the record."""
  g_vars, saved, restored_step = checkpointing.restore_generator(workdir, step)
  config = (config or saved).copy_and_resolve_references()
  config.model = saved.model  # shapes always from the checkpoint
  if split:
    config.eval_data.tfds_split = split
    config.eval_data.skimage_split = split
  generator, _ = models.build_models(config.model)
  mesh = sharding.create_mesh()
  result = evaluate.evaluate(
    generator, g_vars, config, mesh, num_batches=num_batches
  )
  writer = metric_writers.create_default_writer(
    os.path.join(workdir, "eval"), just_logging=jax.process_index() > 0
  )
  path = evaluate.write_results(
    result,
    workdir,
    step=restored_step,
    seed=config.seed,
    source=config.eval_data.source,
    writer=writer,
  )
  writer.flush()
  with open(path) as f:
    record = json.load(f)
  if output and jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
      json.dump(record, f, indent=2)
  return record


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  record = run_evaluation(
    FLAGS.workdir,
    step=FLAGS.step,
    config=FLAGS.config,
    split=FLAGS.split,
    output=FLAGS.output,
    num_batches=FLAGS.num_batches,
  )
  print(
    f"step {record['checkpoint_step']}, {record['num_images']} images "
    f"({record['source']}): l1 error {record['l1_error']:.3f}, "
    f"PSNR {record['psnr']:.3f}, SSIM {record['ssim']:.4f}"
  )


def run() -> None:
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
