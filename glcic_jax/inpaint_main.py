"""glcic-inpaint: complete your own images with a trained generator.

  glcic-inpaint --workdir=/ckpt/gl_places --input photo.jpg [more.png dir/]
      (--mask mask.png | --bbox 40,60,100,90 [--bbox ...] | --random_bbox)
      --output out/ [--blend poisson]

Any image size (padded to a multiple of 4, cropped back); any number of
holes of any shape in the mask (white / non-zero = hole). Writes
`out/<name>.png` (the completion: outside the holes exactly the input) and
`out/<name>_compare.png` (input with holes | completion). `--checkpoint
gl.pth` takes an mmagic file instead of a workdir. `--blend poisson`
applies the paper's post-processing (off by default, as in mmagic).
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from glcic_jax import inference, inpainting, interop

FLAGS = flags.FLAGS
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _define_flags() -> None:
  """Defined when the command runs, so importing this module is harmless."""
  flags.DEFINE_string("workdir", None, "glcic-jax workdir with checkpoints.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_string("checkpoint", None, "mmagic .pth/.safetensors instead.")
  flags.DEFINE_enum(
    "channel_order",
    "bgr",
    interop.CHANNEL_ORDERS,
    "Channel order of --checkpoint's weights (mmagic: bgr).",
  )
  flags.DEFINE_multi_string("input", None, "Image files or folders.")
  flags.DEFINE_string("mask", None, "PNG mask, same size as every input.")
  flags.DEFINE_multi_string("bbox", None, "Hole top,left,height,width.")
  flags.DEFINE_bool("random_bbox", False, "One mmagic-style random hole.")
  flags.DEFINE_integer("seed", 0, "Seed for --random_bbox.")
  flags.DEFINE_string("output", None, "Output folder.")
  flags.DEFINE_enum("blend", "none", ["none", "poisson"], "Post-processing.")
  flags.mark_flags_as_required(["input", "output"])


def list_inputs(inputs: list[str]) -> list[str]:
  """Files as given, folders expanded to their images (sorted)."""
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
    else:
      paths.append(item)
  return paths


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
  if sum([mask is not None, bool(bboxes), random_bbox]) != 1:
    raise ValueError("give exactly one of --mask, --bbox or --random_bbox")
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


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if bool(FLAGS.workdir) == bool(FLAGS.checkpoint):
    raise app.UsageError("give exactly one of --workdir or --checkpoint")
  completer = inference.load_generator(
    FLAGS.workdir or FLAGS.checkpoint,
    step=FLAGS.step,
    channel_order=FLAGS.channel_order,
  )
  written = inpaint_files(
    completer,
    FLAGS.input,
    FLAGS.output,
    mask=FLAGS.mask,
    bboxes=FLAGS.bbox,
    random_bbox=FLAGS.random_bbox,
    seed=FLAGS.seed,
    blend=FLAGS.blend,
  )
  for path in written:
    print(path)


def run() -> None:
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
