"""Evaluation as mmagic's test step does it, data-parallel on the mesh.

Shared by `glcic-eval` and the periodic evaluation inside training. Each
image gets a fixed crop and hole (the evaluation pipeline seeds them by
image index), the generator runs in eval mode (running statistics), the
output is composited into the known pixels (fake_img = gt*(1-mask) +
G(x)*mask) and l1 error / PSNR / SSIM are taken per image on the [0, 255]
floats `metrics.to_pixels` gives, then averaged over real (non-padding)
images.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from glcic_jax import batches, checkpointing, files, metrics, models, sharding


@dataclasses.dataclass
class EvalResult:
  """Mean metrics over the evaluated images, and a grid to look at."""

  l1_error: float
  psnr: float
  ssim: float
  num_images: int
  skipped_files: int
  grid: np.ndarray  # uint8 rows of gt | masked input | completion

  def scalars(self) -> dict[str, float]:
    return {
      "l1_error": self.l1_error,
      "psnr": self.psnr,
      "ssim": self.ssim,
      "num_images": self.num_images,
    }

  def record(self, *, step: int, seed: int, source: str) -> dict[str, Any]:
    """What the JSON file holds: the scalars and where they came from."""
    return dict(
      self.scalars(),
      checkpoint_step=step,
      seed=seed,
      source=source,
      skipped_files=self.skipped_files,
    )


def composite_completion(generator, g_vars, image, mask) -> jax.Array:
  """mmagic's test step: eval-mode generator on the masked image, its
  output kept inside the hole only (fake_img)."""
  x = models.network_input(image, mask)
  fake = generator.apply(g_vars, x, train=False).astype(jnp.float32)
  return image * (1.0 - mask) + fake * mask


def _eval_step(generator, g_vars, batch, *, shown: int):
  batch = batches.expand(batch)
  image, mask = batch["image"], batch["mask"]
  fake_img = composite_completion(generator, g_vars, image, mask)
  per_image = metrics.batch_metrics(
    metrics.to_pixels(image), metrics.to_pixels(fake_img), mask
  )
  preview = (image[:shown], mask[:shown], fake_img[:shown])
  return per_image, batch["valid"], preview


@functools.cache
def _jitted_eval_step(generator: models.Generator, mesh: Mesh, shown: int):
  """One compiled step per (network, mesh, grid size): periodic evaluation
  during training reuses it instead of tracing and compiling every time."""

  def eval_step(g_vars, batch):  # named so in profiles and HLO dumps
    return _eval_step(generator, g_vars, batch, shown=shown)

  return jax.jit(
    eval_step,
    out_shardings=sharding.replicated(mesh),
  )


def _on_mesh(tree: Any, mesh: Mesh) -> Any:
  """`tree` replicated on `mesh`; arrays already there (training's state)
  are used as they are instead of a round trip through the host."""
  target = sharding.replicated(mesh)
  leaves = jax.tree.leaves(tree)
  if all(
    isinstance(x, jax.Array) and x.sharding.is_equivalent_to(target, x.ndim)
    for x in leaves
  ):
    return tree
  return sharding.put_replicated(jax.device_get(tree), mesh)


def completion_grid(image, mask, completion) -> np.ndarray:
  """uint8 rows of gt | masked input (holes white) | completion, from
  [-1, 1] NHWC arrays."""
  image, mask = np.asarray(image), np.asarray(mask)
  masked = image * (1.0 - mask) + mask
  rows = np.concatenate([image, masked, np.asarray(completion)], axis=2)
  grid = np.concatenate(list(rows), axis=0)
  return np.round((grid + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def evaluate(
  generator: models.Generator,
  generator_variables: Any,
  config: ml_collections.ConfigDict,
  mesh: Mesh,
  *,
  data_config: ml_collections.ConfigDict | None = None,
  num_batches: int = -1,
  grid_examples: int = 8,
) -> EvalResult:
  """Evaluates a generator on `config.eval_data` (or `data_config`).

  The global batch is `config.per_device_batch_size` x the mesh's devices;
  the last one is padded and the padding ignored. `num_batches=-1` goes
  through the whole source. Every process must call this (collectives).
  """
  global_batch = config.per_device_batch_size * mesh.devices.size
  # TensorFlow only when an evaluation runs (training on the synthetic
  # source needs none).
  from glcic_jax.data import pipeline as input_pipeline

  pipeline = input_pipeline.create_eval_dataset(
    config,
    global_batch_size=global_batch,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    data_config=data_config,
  )
  step = _jitted_eval_step(generator, mesh, grid_examples)
  g_vars = _on_mesh(generator_variables, mesh)
  accumulator = metrics.MetricAccumulator()
  shown, pending = None, None
  for i, local in enumerate(pipeline):
    if 0 <= num_batches <= i:
      break
    batch = sharding.global_batch(
      {k: local[k] for k in ("image", "bbox", "valid")}, mesh
    )
    per_image, valid, preview = step(g_vars, batch)
    if shown is None:  # only the first batch's examples go to the grid
      keep = np.asarray(jax.device_get(valid))[:grid_examples] > 0
      shown = [np.asarray(a)[keep] for a in jax.device_get(preview)]
    # Fetch the previous batch's numbers while this one runs on the devices.
    if pending is not None:
      accumulator.update(*jax.device_get(pending))
    pending = (per_image, valid)
  if pending is not None:
    accumulator.update(*jax.device_get(pending))
  if accumulator.count == 0:
    raise ValueError(
      f"no images evaluated ({(data_config or config.eval_data).source} "
      f"source, num_batches={num_batches})"
    )
  means = accumulator.result()
  return EvalResult(
    l1_error=means["l1_error"],
    psnr=means["psnr"],
    ssim=means["ssim"],
    num_images=int(accumulator.count),
    skipped_files=pipeline.skipped_files(),
    grid=completion_grid(*shown),
  )


def write_results(
  result: EvalResult,
  workdir_or_path: str | os.PathLike,
  *,
  step: int,
  seed: int,
  source: str = "",
  writer: Any = None,
) -> str:
  """Writes the numbers where people and scripts look for them.

  A `.json` path is written as given; anything else is a workdir and gets
  `<workdir>/eval/step_<step>.json`. The grid goes beside the JSON as a
  PNG, and with a clu `writer` the scalars and the grid go to TensorBoard
  too. Files are written by process 0 only (all processes may call this).

  Returns the JSON path.
  """
  path = os.fspath(workdir_or_path)
  if not path.endswith(".json"):
    path = os.path.join(path, "eval", f"step_{step}.json")
  if writer is not None:
    writer.write_scalars(
      step, {f"eval/{k}": v for k, v in result.scalars().items()}
    )
    writer.write_images(step, {"eval/gt_masked_completion": result.grid[None]})
  if jax.process_index() != 0:
    return path
  record = result.record(step=step, seed=seed, source=source)
  files.write_text(path, files.json_text(record))
  from glcic_jax.inpaint import images  # PIL only where files are written

  images.save_png(path[: -len(".json")] + ".png", result.grid)
  return path


def evaluate_checkpoint(
  workdir: str,
  *,
  step: int | None = None,
  config: ml_collections.ConfigDict | None = None,
  split: str | None = None,
  output: str | None = None,
  num_batches: int = -1,
  mesh: Mesh | None = None,
  writer: Any = None,
) -> dict[str, Any]:
  """Restores the generator of `step` (default: latest) and evaluates it.

  The network shapes always come from the checkpoint's saved config, so a
  `config` written for another model size cannot mis-shape the restore;
  `config` (default: the saved one) only picks the data, batch and seed.
  Every process must call this. Returns the record written to the JSON
  file, with its path under `json_path`.
  """
  if output and not output.endswith(".json"):
    raise ValueError(f"--output must name a .json file, got {output}")
  # Before the evaluation, not after it.
  folder = os.path.dirname(output) if output else os.path.join(workdir, "eval")
  if jax.process_index() == 0:
    files.check_writable(folder or ".", "the evaluation results")
  g_vars, saved, restored_step = checkpointing.restore_generator(workdir, step)
  config = (config or saved).copy_and_resolve_references()
  config.model = saved.model
  if split:
    config.eval_data.tfds_split = split
    config.eval_data.skimage_split = split
  generator, _ = models.build_models(
    config.model, batch_per_device=config.per_device_batch_size
  )
  mesh = mesh or sharding.create_mesh()
  result = evaluate(generator, g_vars, config, mesh, num_batches=num_batches)
  source = config.eval_data.source
  path = write_results(
    result,
    output or workdir,
    step=restored_step,
    seed=config.seed,
    source=source,
    writer=writer,
  )
  record = result.record(step=restored_step, seed=config.seed, source=source)
  return dict(record, json_path=path)
