"""glcic-import: an mmagic Global&Local checkpoint -> a glcic-jax workdir.

  glcic-import --checkpoint gl_256x256_8x12_places_20200619-52a040a8.pth \\
      --workdir /ckpt/gl_places_mmagic [--channel_order bgr] \\
      [--config configs/gl_places.py] [--step 500000]

Writes a checkpoint that every other command accepts (glcic-train resumes
from it, glcic-eval evaluates it, glcic-inpaint completes with it,
glcic-export writes it back). The networks' shapes come from --config
(default: the paper's). Optimiser states are not in mmagic's release files,
so a resumed run starts Adam afresh.
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "checkpoint", None, "mmagic .pth or .safetensors file.", **fv
  )
  flags.DEFINE_string(
    "workdir", None, "New workdir for the imported checkpoint.", **fv
  )
  launch.define_config_flag(
    flag_values,
    "Config giving the network shapes (default: the paper's).",
    sys_argv,
  )
  launch.define_channel_order_flag(
    flag_values,
    "Image channel order the file's weights expect: 'bgr' for mmagic's "
    "files (its pipeline loads images as BGR); the weights are permuted so "
    "that glcic-jax feeds RGB. 'rgb' copies them unchanged.",
  )
  flags.DEFINE_integer(
    "step", 0, "Step number to record the imported weights at.", **fv
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
  )
  print(
    f"Imported {summary['tensors']} tensors from {fv.checkpoint}: "
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
