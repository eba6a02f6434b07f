"""glcic-inpaint: complete your own images with a trained generator.

  glcic-inpaint --workdir=/ckpt/gl_places --input photo.jpg [more.png dir/]
      (--mask mask.png | --mask_dir masks/ | --bbox 40,60,100,90 [--bbox ...]
       | --random_bbox) --output out/ [--strategy auto] [--blend poisson]

Photos of any size, completed at the scale the model was trained at
(--strategy): `crop` (the default for photos larger than 1.5x the trained
size) completes each hole in a window around it, scaled to the trained
size, and pastes back only the hole: memory and time follow the holes,
not the photo. `resize` scales the whole photo to the trained size (for
holes covering much of it); `original` completes it as it is (exact for
photos near the trained size; refused with an estimate when it would not
fit in memory). --size completes at another scale (warned about).

Holes of any shape (white / non-zero = hole): one --mask for every image
(scaled to each image when only the resolution differs), or --mask_dir
with a mask per image, matched by file name (`photo.jpg` <- `photo.png`).
Writes `out/<name>.<ext>` in the input's format (outside the holes the
input's pixels; a JPEG is re-encoded at quality 95: --output_format=png
keeps them exact) and `out/<name>_compare.png` (input with holes |
completion), with a progress bar. An output folder inside an input folder,
or one that would overwrite an input, is refused before any work. An
unreadable input (or one without its mask) is skipped, the others are
completed, and the command ends with the list and a non-zero status.
`--checkpoint gl.pth` takes an mmagic file or URL instead of a workdir
(its shapes from its metadata, --config, or the paper's). `--blend poisson`
applies the paper's post-processing (off by default, as in mmagic).
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "glcic-jax workdir (checkpoints).", **fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).", **fv)
  flags.DEFINE_string(
    "checkpoint", None, "mmagic .pth/.safetensors file instead.", **fv
  )
  launch.define_channel_order_flag(
    flag_values,
    "Channel order of --checkpoint's weights (mmagic: bgr).",
  )
  launch.define_config_flag(
    flag_values,
    "Network shapes of --checkpoint (default: the paper's).",
    sys_argv,
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
    "mask", None, "Mask image for every input (non-zero = hole).", **fv
  )
  flags.DEFINE_string(
    "mask_dir", None, "Folder of masks named as the inputs.", **fv
  )
  flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "crop", "resize", "original"],
    "How large photos are completed (see above).",
    **fv,
  )
  flags.DEFINE_integer(
    "size",
    None,
    "Network side to complete at (default: the trained size).",
    lower_bound=4,
    **fv,
  )
  flags.DEFINE_enum(
    "output_format",
    "input",
    ["input", "png"],
    "Write each completion in its input's format, or as PNG.",
    **fv,
  )
  flags.DEFINE_multi_string("bbox", None, "Hole top,left,height,width.", **fv)
  flags.DEFINE_bool("random_bbox", False, "One mmagic-style random hole.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed for --random_bbox.", **fv)
  flags.DEFINE_string("output", None, "Output folder.", **fv)
  flags.DEFINE_enum(
    "blend", "none", ["none", "poisson"], "Post-processing.", **fv
  )
  flags.mark_flags_as_required(["input", "output"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  fv = flag_values
  inputs = fv.input + argv[1:]  # `--input a.jpg b.jpg dir/` works too
  if bool(fv.workdir) == bool(fv.checkpoint):
    raise app.UsageError("give exactly one of --workdir or --checkpoint")
  if fv.config is not None and fv.workdir:
    raise app.UsageError("--config is for --checkpoint files only")
  from glcic_jax.inpaint import completer, file_jobs

  # Everything that can fail cheaply fails before a model is loaded.
  try:
    job = file_jobs.plan(
      inputs,
      fv.output,
      mask=fv.mask,
      bboxes=fv.bbox,
      random_bbox=fv.random_bbox,
    )
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  loaded = completer.load_generator(
    fv.workdir or fv.checkpoint,
    step=fv.step,
    channel_order=fv.channel_order,
    config=fv.config,
    allow_pickle=fv.allow_pickle,
  )
  report = file_jobs.run(
    loaded,
    job,
    seed=fv.seed,
    blend=fv.blend,
    strategy=fv.strategy,
    size=fv.size,
    progress=True,
  )
  for path in report.written:
    print(path)
  print(f"Wrote {len(report.written)} completions to {fv.output}.")
  if report.failed:
    for path, reason in report.failed:
      print(f"Skipped {path}: {reason}")
    total = len(report.written) + len(report.failed)
    raise RuntimeError(
      f"{len(report.failed)} of {total} inputs could not be completed "
      f"(listed above), the first: {report.failed[0][0]}"
    )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main)


if __name__ == "__main__":
  run()
