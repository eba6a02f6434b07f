"""Completing image files: every check first, then each file through the
engine, never a user's file overwritten.

`plan` does what can fail cheaply before a model is loaded: it lists the
inputs, reads a single mask once (fitted to every image's size, read from
the headers) or pairs each image with the mask of the same name in a mask
folder, and refuses an output that would land on an input (the same file,
or an output folder that is, or is inside, an input folder: a rerun would
take the comparisons for new inputs). `run` completes the files one by one
with the `engine`, with a progress bar; an unreadable file, or one without
its mask, is skipped and reported at the end.

Outputs keep the input's format (`<name>.<ext>`: PNG stays lossless, a
JPEG is written as a JPEG of quality 95) unless `output_format='png'`;
`<name>_compare.png` beside it shows the input with its holes and the
completion.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

from glcic_jax import files
from glcic_jax.data import IMAGE_EXTENSIONS
from glcic_jax.inpaint import compositing, images, masks, poisson
from glcic_jax.inpaint import engine as engine_lib

OUTPUT_FORMATS = ("input", "png")
# Formats written as such; others (GIF) become PNG.
_KEPT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass
class Plan:
  """What `run` will read and write."""

  inputs: list[str]
  output: str
  mask: np.ndarray | None  # [H, W] bool: one mask for every image
  masks_by_input: dict[str, str]  # from --mask_dir: input -> its mask file
  bboxes: list[masks.BBox]
  random_bbox: bool
  output_format: str = "input"
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
  """What a run wrote and which inputs failed, with the reasons."""

  written: list[str]
  failed: list[tuple[str, str]]


def output_paths(path: str, output: str, output_format: str = "input"):
  """(`output/<name>.<ext>`, `output/<name>_compare.png`) for an input."""
  name, extension = os.path.splitext(os.path.basename(path))
  extension = extension.lower()
  if output_format == "png" or extension not in _KEPT:
    extension = ".png"
  return (
    os.path.join(output, f"{name}{extension}"),
    os.path.join(output, f"{name}_compare.png"),
  )


def _absolute(path: str) -> str:
  return path if files.is_remote(path) else os.path.realpath(path)


def _check_output(inputs, paths, output: str, output_format: str) -> None:
  if files.as_path(output).exists() and not files.is_dir(output):
    raise ValueError(f"--output {output} is a file, not a folder")
  out = _absolute(output)
  for item in inputs:
    if files.is_dir(item):
      folder = _absolute(item)
      if out == folder or out.startswith(folder.rstrip("/") + "/"):
        raise ValueError(
          f"--output {output} is inside the input folder {item}: the "
          "completions would sit among the inputs (and a rerun would take "
          "them for inputs). Choose a folder outside it."
        )
  taken = {_absolute(p) for p in paths}
  for path in paths:
    for target in output_paths(path, output, output_format):
      if _absolute(target) in taken:
        raise ValueError(
          f"--output {output} would overwrite the input {target}; choose "
          "another folder."
        )


def _masks_by_stem(mask_dir: str) -> dict[str, str]:
  if not files.is_dir(mask_dir):
    raise FileNotFoundError(f"--mask_dir {mask_dir} is not a folder")
  found = {}
  for path in sorted(files.list_dir(mask_dir)):
    stem, extension = os.path.splitext(os.path.basename(path))
    if extension.lower() in IMAGE_EXTENSIONS:
      found.setdefault(stem, path)
  return found


def plan(
  inputs: Sequence[str],
  output: str,
  *,
  mask: str | None = None,
  mask_dir: str | None = None,
  bboxes: Sequence[str] | None = None,
  random_bbox: bool = False,
  output_format: str = "input",
) -> Plan:
  """Checks everything that can be checked without a model; raises
  ValueError / FileNotFoundError naming the path or flag at fault."""
  if mask is not None and mask_dir is not None:
    raise ValueError("give one of --mask or --mask_dir, not both")
  masks.check_hole_source(
    mask if mask_dir is None else mask_dir, bboxes, random_bbox
  )
  if output_format not in OUTPUT_FORMATS:
    raise ValueError(f"output format must be one of {OUTPUT_FORMATS}")
  paths = images.list_inputs(inputs)
  _check_output(inputs, paths, output, output_format)
  boxes = [masks.parse_bbox(b) for b in bboxes or ()]
  job = Plan(list(paths), output, None, {}, boxes, random_bbox, output_format)
  if mask is not None:
    job.mask = images.read_mask(mask)[..., 0] > 0
    for path in paths:
      size = images.upright_size(path)
      if size is not None:
        masks.fit_to(job.mask, size, f"mask {mask} (for {path})")
  if mask_dir is not None:
    available = _masks_by_stem(mask_dir)
    for path in paths:
      stem = os.path.splitext(os.path.basename(path))[0]
      if stem in available:
        job.masks_by_input[path] = available[stem]
      else:
        job.skipped.append((path, f"no mask named {stem}.* in {mask_dir}"))
    job.inputs = [p for p in paths if p in job.masks_by_input]
  return job


def _hole_of(job: Plan, path: str, image: np.ndarray, rng) -> np.ndarray:
  if job.mask is not None:
    return masks.fit_to(job.mask, image.shape, "mask")
  if path in job.masks_by_input:
    source = job.masks_by_input[path]
    hole = images.read_mask(source)[..., 0] > 0
    return masks.fit_to(hole, image.shape, f"mask {source}")
  if job.bboxes:
    return masks.mask_from_bboxes(image.shape, job.bboxes)[..., 0] > 0
  return masks.random_bbox_mask(image.shape, rng)[..., 0] > 0


def run(
  completer,
  job: Plan,
  *,
  seed: int = 0,
  blend: str = "none",
  strategy: str = "auto",
  size: int | None = None,
  progress: bool = False,
) -> Report:
  """Completes every planned input; see the module docstring."""
  from tqdm import tqdm

  engine = engine_lib.Engine(completer)
  rng = np.random.default_rng(seed)
  report = Report([], list(job.skipped))
  started = time.time()
  for path in tqdm(
    job.inputs, desc="completing", unit="image", disable=not progress
  ):
    try:
      image = images.read_image(path)
      hole = _hole_of(job, path, image, rng)
      completed, _ = engine.complete(image, hole, strategy=strategy, size=size)
    except (ValueError, OSError) as e:
      logging.warning("Skipped %s: %s", path, e)
      report.failed.append((path, str(e)))
      continue
    if blend == "poisson":
      completed = poisson.poisson_blend(image, completed, hole[..., None])
    out, compare_path = output_paths(path, job.output, job.output_format)
    images.save_image(out, completed)
    compare = compositing.side_by_side(
      [compositing.masked_preview(image, hole), completed], gap=4
    )
    images.save_png(compare_path, compare)
    report.written.append(out)
  logging.info(
    "Completed %d of %d images in %.1f s; %d skipped.",
    len(report.written),
    len(job.inputs) + len(job.skipped),
    time.time() - started,
    len(report.failed),
  )
  return report


def complete_files(
  completer,
  inputs: Sequence[str],
  output: str,
  *,
  mask: str | None = None,
  bboxes: Sequence[str] | None = None,
  random_bbox: bool = False,
  seed: int = 0,
  blend: str = "none",
  **options,
) -> Report:
  """`plan` then `run`: for notebooks, where the model is already loaded.
  `options`: `mask_dir`, `output_format` (plan), `strategy`, `size` (run)."""
  run_options = {
    k: options.pop(k) for k in ("strategy", "size") if k in options
  }
  job = plan(
    inputs, output, mask=mask, bboxes=bboxes, random_bbox=random_bbox, **options
  )
  return run(completer, job, seed=seed, blend=blend, **run_options)
