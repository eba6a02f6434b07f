"""glcic-inpaint: complete your own images with a trained generator.

  glcic-inpaint --workdir=/ckpt/gl_places --input photo.jpg [more.png dir/]
      (--mask mask.png | --bbox 40,60,100,90 [--bbox ...] | --random_bbox)
      --output out/ [--blend poisson] [--seed S]

Any image size (padded to a multiple of 4, cropped back); any number of
holes of any shape in the mask (white / non-zero = hole). Writes
`out/<name>.png` (the completion: outside the holes exactly the input) and
`out/<name>_compare.png` (input with holes | completion). `--checkpoint
gl.pth` takes an mmagic file instead of a workdir (the paper's network
shapes, or those of `--config`). `--blend poisson` applies the paper's
post-processing (off by default, as in mmagic).
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from glcic_jax import cli, inference, inpainting, interop

FLAGS = flags.FLAGS
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def define_flags(
  flag_values: flags.FlagValues = FLAGS, sys_argv: list[str] | None = None
) -> None:
  """Defined when the command runs, so importing this module is harmless;
  `flag_values`/`sys_argv` let a test parse a command line of its own."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "glcic-jax workdir (checkpoints).", **fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).", **fv)
  flags.DEFINE_string(
    "checkpoint", None, "mmagic .pth/.safetensors file instead.", **fv
  )
  flags.DEFINE_enum(
    "channel_order",
    "bgr",
    interop.CHANNEL_ORDERS,
    "Channel order of --checkpoint's weights (mmagic: bgr).",
    **fv,
  )
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Network shapes of --checkpoint (default: the paper's).",
    lock_config=True,
    sys_argv=sys_argv,
    **fv,
  )
  flags.DEFINE_bool(
    "allow_pickle",
    False,
    "Unpickle arbitrary objects in --checkpoint (only for trusted files).",
    **fv,
  )
  flags.DEFINE_multi_string(
    "input",
    None,
    "Image files or folders (more may follow as arguments).",
    **fv,
  )
  flags.DEFINE_string(
    "mask", None, "Mask image, same size as the inputs.", **fv
  )
  flags.DEFINE_multi_string("bbox", None, "Hole top,left,height,width.", **fv)
  flags.DEFINE_bool("random_bbox", False, "One mmagic-style random hole.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed for --random_bbox.", **fv)
  flags.DEFINE_string("output", None, "Output folder.", **fv)
  flags.DEFINE_enum(
    "blend", "none", ["none", "poisson"], "Post-processing.", **fv
  )
  flags.mark_flags_as_required(["input", "output"], **fv)


def list_inputs(inputs: list[str]) -> list[str]:
  """Files as given, folders expanded to their images (sorted).

  Fails before any work if a path is missing or two inputs would write the
  same `<name>.png`.
  """
  paths = []
  for item in inputs:
    if os.path.isdir(item):
      found = sorted(
        os.path.join(item, f)
        for f in os.listdir(item)
        if f.lower().endswith(_IMAGE_SUFFIXES)
      )
      if not found:
        raise FileNotFoundError(f"no images in folder {item}")
      paths += found
    elif os.path.exists(item):
      paths.append(item)
    else:
      raise FileNotFoundError(f"no such input file or folder: {item}")
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"several inputs would be written as {twice} (.png)")
  return paths


def check_hole_source(
  mask: str | None, bboxes: list[str] | None, random_bbox: bool
) -> None:
  """Exactly one way to say where the holes are; boxes parse."""
  if sum([mask is not None, bool(bboxes), random_bbox]) != 1:
    raise ValueError("give exactly one of --mask, --bbox or --random_bbox")
  for spec in bboxes or []:
    inpainting.parse_bbox(spec)


def inpaint_files(
  completer: inference.Completer,
  inputs: list[str],
  output: str,
  *,
  mask: str | None = None,
  bboxes: list[str] | None = None,
  random_bbox: bool = False,
  seed: int = 0,
  blend: str = "none",
) -> list[str]:
  """Completes every input; returns the paths of the completions written."""
  check_hole_source(mask, bboxes, random_bbox)
  rng = np.random.default_rng(seed)
  written = []
  for path in list_inputs(inputs):
    image = inpainting.read_image(path)
    if mask is not None:
      hole = inpainting.read_mask(mask, image.shape)
    elif bboxes:
      boxes = [inpainting.parse_bbox(b) for b in bboxes]
      hole = inpainting.mask_from_bboxes(image.shape, boxes)
    else:
      hole = inpainting.random_bbox_mask(image.shape, rng)
    completed = completer.complete(image, hole)
    if blend == "poisson":
      completed = inpainting.poisson_blend(image, completed, hole)
    name = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(output, f"{name}.png")
    inpainting.save_png(out, completed)
    compare = inpainting.side_by_side(
      [inpainting.masked_preview(image, hole), completed], gap=4
    )
    inpainting.save_png(os.path.join(output, f"{name}_compare.png"), compare)
    written.append(out)
  return written


def main(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> None:
  fv = flag_values
  inputs = fv.input + argv[1:]  # `--input a.jpg b.jpg dir/` works too
  if bool(fv.workdir) == bool(fv.checkpoint):
    raise app.UsageError("give exactly one of --workdir or --checkpoint")
  if fv.config is not None and fv.workdir:
    raise app.UsageError("--config is for --checkpoint files only")
  # Cheap mistakes first, before a model is loaded and compiled.
  try:
    check_hole_source(fv.mask, fv.bbox, fv.random_bbox)
    list_inputs(inputs)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  completer = inference.load_generator(
    fv.workdir or fv.checkpoint,
    step=fv.step,
    channel_order=fv.channel_order,
    config=fv.config,
    allow_pickle=fv.allow_pickle,
  )
  written = inpaint_files(
    completer,
    inputs,
    fv.output,
    mask=fv.mask,
    bboxes=fv.bbox,
    random_bbox=fv.random_bbox,
    seed=fv.seed,
    blend=fv.blend,
  )
  for path in written:
    print(path)


def run() -> None:
  define_flags()
  cli.run_app(main, __name__)


if __name__ == "__main__":
  run()
