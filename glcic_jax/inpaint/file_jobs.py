"""Completing image files: every check first, then each file, never a
user's file overwritten.

`plan` does what can fail cheaply before a model is loaded: it lists the
inputs, reads the mask once, compares it with every image's size (read
from the headers), and refuses an output that would land on an input (the
same file, or an output folder that is, or is inside, an input folder: a
rerun would take the comparisons for new inputs). `run` completes the
files one by one; an unreadable one is skipped and reported at the end.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from glcic_jax import files
from glcic_jax.inpaint import compositing, images, masks, poisson


@dataclasses.dataclass
class Plan:
  """What `run` will read and write."""

  inputs: list[str]
  output: str
  mask: np.ndarray | None  # float32 [H, W, 1], 1 = hole
  bboxes: list[masks.BBox]
  random_bbox: bool


@dataclasses.dataclass
class Report:
  """What a run wrote and which inputs failed, with the reasons."""

  written: list[str]
  failed: list[tuple[str, str]]


def output_paths(path: str, output: str) -> tuple[str, str]:
  """(`output/<name>.png`, `output/<name>_compare.png`) for an input."""
  name = os.path.splitext(os.path.basename(path))[0]
  return (
    os.path.join(output, f"{name}.png"),
    os.path.join(output, f"{name}_compare.png"),
  )


def _absolute(path: str) -> str:
  return path if files.is_remote(path) else os.path.realpath(path)


def _check_output(inputs: Sequence[str], paths: Sequence[str], output: str):
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
    for target in output_paths(path, output):
      if _absolute(target) in taken:
        raise ValueError(
          f"--output {output} would overwrite the input {target}; choose "
          "another folder."
        )


def plan(
  inputs: Sequence[str],
  output: str,
  *,
  mask: str | None = None,
  bboxes: Sequence[str] | None = None,
  random_bbox: bool = False,
) -> Plan:
  """Checks everything that can be checked without a model; raises
  ValueError / FileNotFoundError naming the path or flag at fault."""
  masks.check_hole_source(mask, bboxes, random_bbox)
  paths = images.list_inputs(inputs)
  _check_output(inputs, paths, output)
  boxes = [masks.parse_bbox(b) for b in bboxes or ()]
  hole = None
  if mask is not None:
    hole = images.read_mask(mask)
    for path in paths:
      size = images.upright_size(path)
      if size is not None and size != hole.shape[:2]:
        raise ValueError(
          f"mask {mask} is {hole.shape[0]}x{hole.shape[1]} (HxW) but the "
          f"image {path} is {size[0]}x{size[1]}"
        )
  return Plan(list(paths), output, hole, boxes, random_bbox)


def run(completer, job: Plan, *, seed: int = 0, blend: str = "none") -> Report:
  """Completes every planned input into `output/<name>.png`, with
  `output/<name>_compare.png` beside it (input with holes | completion).
  An input that cannot be read or completed is logged, skipped and
  listed in the report."""
  rng = np.random.default_rng(seed)
  report = Report([], [])
  for path in job.inputs:
    try:
      image = images.read_image(path)
      if job.mask is not None:
        hole = job.mask
      elif job.bboxes:
        hole = masks.mask_from_bboxes(image.shape, job.bboxes)
      else:
        hole = masks.random_bbox_mask(image.shape, rng)
    except (ValueError, OSError) as e:
      logging.warning("Skipped %s: %s", path, e)
      report.failed.append((path, str(e)))
      continue
    completed = completer.complete(image, hole)
    if blend == "poisson":
      completed = poisson.poisson_blend(image, completed, hole)
    out, compare_path = output_paths(path, job.output)
    images.save_png(out, completed)
    compare = compositing.side_by_side(
      [compositing.masked_preview(image, hole), completed], gap=4
    )
    images.save_png(compare_path, compare)
    report.written.append(out)
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
) -> Report:
  """`plan` then `run`: for notebooks, where the model is already loaded."""
  job = plan(inputs, output, mask=mask, bboxes=bboxes, random_bbox=random_bbox)
  return run(completer, job, seed=seed, blend=blend)
