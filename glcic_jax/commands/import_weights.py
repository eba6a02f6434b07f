"""glcic-import: an mmagic Global&Local checkpoint -> a glcic-jax workdir.

  glcic-import --checkpoint gl_256x256_8x12_places_20200619-52a040a8.pth \\
      --workdir /ckpt/gl_places_mmagic [--channel_order bgr] \\
      [--config configs/gl_places.py] [--step 500000]
  glcic-import --checkpoint https://download.openmmlab.com/.../gl_...pth \\
      --workdir /ckpt/gl_places_mmagic [--offline]

Writes a checkpoint that every other command accepts (glcic-train resumes
from it, glcic-eval evaluates it, glcic-inpaint completes with it,
glcic-export writes it back). A URL is downloaded once into a cache
(resumed if cut, refused if its SHA-256 does not begin with the hex digits
its name ends in: glcic_jax/downloads.py). The networks' shapes, channel
order and step come from the flags, else from the file's own metadata
(files exported by glcic-jax record them), else the paper's config, bgr
and step 0. Optimiser states are not in mmagic's release files, so a
resumed run starts Adam afresh.
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "checkpoint", None, "mmagic .pth or .safetensors file, or its URL.", **fv
  )
  flags.DEFINE_string(
    "workdir", None, "New workdir for the imported checkpoint.", **fv
  )
  launch.define_config_flag(
    flag_values,
    "Config giving the network shapes (default: the file's own, else the "
    "paper's).",
    sys_argv,
  )
  flags.DEFINE_enum(
    "channel_order",
    None,
    ["bgr", "rgb"],
    "Image channel order the file's weights expect: 'bgr' for mmagic's "
    "files (its pipeline loads images as BGR); the weights are permuted so "
    "that glcic-jax feeds RGB. 'rgb' copies them unchanged. Default: the "
    "file's metadata, else bgr.",
    **fv,
  )
  flags.DEFINE_integer(
    "step",
    None,
    "Step number to record the imported weights at (default: the file's "
    "`iter`, else 0).",
    **fv,
  )
  flags.DEFINE_bool(
    "offline", False, "Use only the download cache for a URL.", **fv
  )
  flags.DEFINE_bool(
    "allow_pickle",
    False,
    "Unpickle arbitrary objects in a .pth (torch.load weights_only=False). "
    "Unpickling can run any code the file's author put in it: use only for "
    "files you trust, when the default safe loader refuses one.",
    **fv,
  )
  flags.mark_flags_as_required(["checkpoint", "workdir"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from glcic_jax import weights

  fv = flag_values
  summary = weights.import_checkpoint(
    fv.checkpoint,
    fv.workdir,
    fv.config,
    channel_order=fv.channel_order,
    step=fv.step,
    allow_pickle=fv.allow_pickle,
    offline=fv.offline,
  )
  print(
    f"Imported {summary['tensors']} tensors from {summary['path']} "
    f"(config {summary['config']}): "
    f"generator {summary['generator_parameters']:,} and discriminators "
    f"{summary['disc_parameters']:,} trainable parameters, channel order "
    f"{summary['channel_order']} -> RGB, as step {summary['step']} in "
    f"{summary['workdir']}."
  )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main)


if __name__ == "__main__":
  run()
