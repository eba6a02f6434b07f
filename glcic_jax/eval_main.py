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

import os
from typing import Any

import jax
import ml_collections
from absl import app, flags
from clu import metric_writers
from jax.sharding import Mesh
from ml_collections import config_flags

from glcic_jax import checkpointing, cli, evaluate, models, sharding

FLAGS = flags.FLAGS


def define_flags(
  flag_values: flags.FlagValues = FLAGS, sys_argv: list[str] | None = None
) -> None:
  """Defined when the command runs, so importing this module is harmless;
  `flag_values`/`sys_argv` let a test parse a command line of its own."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "Workdir holding the checkpoints.", **fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).", **fv)
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config naming the eval data (default: the checkpoint's saved one).",
    lock_config=True,
    sys_argv=sys_argv,
    **fv,
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
  flags.mark_flags_as_required(["workdir"], **fv)


def run_evaluation(
  workdir: str,
  *,
  step: int | None = None,
  config: ml_collections.ConfigDict | None = None,
  split: str | None = None,
  output: str | None = None,
  num_batches: int = -1,
  mesh: Mesh | None = None,
) -> dict[str, Any]:
  """Restores the generator of `step` (default: latest) and evaluates it.

  The network shapes always come from the checkpoint's saved config, so a
  `config` written for another model size cannot mis-shape the restore;
  `config` (default: the saved one) only picks the data, batch and seed.
  Returns the record written to the JSON file.
  """
  if output and not output.endswith(".json"):
    raise ValueError(f"--output must name a .json file, got {output}")
  g_vars, saved, restored_step = checkpointing.restore_generator(workdir, step)
  config = (config or saved).copy_and_resolve_references()
  config.model = saved.model
  if split:
    config.eval_data.tfds_split = split
    config.eval_data.skimage_split = split
  generator, _ = models.build_models(config.model)
  mesh = mesh or sharding.create_mesh()
  result = evaluate.evaluate(
    generator, g_vars, config, mesh, num_batches=num_batches
  )
  writer = metric_writers.create_default_writer(
    os.path.join(workdir, "eval"), just_logging=jax.process_index() > 0
  )
  with metric_writers.ensure_flushes(writer):
    path = evaluate.write_results(
      result,
      output or workdir,
      step=restored_step,
      seed=config.seed,
      source=config.eval_data.source,
      writer=writer,
    )
  record = dict(
    result.scalars(),
    checkpoint_step=restored_step,
    seed=config.seed,
    source=config.eval_data.source,
    skipped_files=result.skipped_files,
    json_path=path,
  )
  return record


def main(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  fv = flag_values
  record = run_evaluation(
    fv.workdir,
    step=fv.step,
    config=fv.config,
    split=fv.split,
    output=fv.output,
    num_batches=fv.num_batches,
  )
  print(
    f"step {record['checkpoint_step']}, {record['num_images']} images "
    f"({record['source']}): l1 error {record['l1_error']:.3f}, "
    f"PSNR {record['psnr']:.3f}, SSIM {record['ssim']:.4f} -> "
    f"{record['json_path']}"
  )


def run() -> None:
  define_flags()
  cli.run_app(main, __name__)


if __name__ == "__main__":
  run()
