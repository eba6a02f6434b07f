"""glcic-export: a glcic-jax checkpoint -> mmagic's PyTorch state_dict.

  glcic-export --workdir /ckpt/gl_places [--step 500000] \\
      --output gl_places.pth [--channel_order bgr]

`.pth` files hold {'state_dict': ..., 'meta': ...} as mmagic's releases do
and load with `torch.load(weights_only=True)`; `.safetensors` files hold
the same tensors. Any config's shapes export; only the paper config's load
into mmagic's GLInpaintor (`load_state_dict(strict=True)`).
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(flag_values: flags.FlagValues) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "workdir", None, "glcic-jax workdir with checkpoints.", **fv
  )
  flags.DEFINE_integer(
    "step", None, "Checkpoint step (default: the latest).", **fv
  )
  flags.DEFINE_string(
    "output", None, "Output file: .pth or .safetensors.", **fv
  )
  launch.define_channel_order_flag(
    flag_values,
    "Channel order the exported weights expect: 'bgr' for mmagic (its "
    "pipeline feeds BGR images), 'rgb' to keep glcic-jax's order.",
  )
  flags.mark_flags_as_required(["workdir", "output"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from glcic_jax import weights

  fv = flag_values
  s = weights.export_checkpoint(
    fv.workdir, fv.output, step=fv.step, channel_order=fv.channel_order
  )
  print(
    f"Exported step {s['step']} of {fv.workdir} to {fv.output}: "
    f"{s['tensors']} tensors, {s['parameters']:,} parameters, channel "
    f"order RGB -> {s['channel_order']}."
  )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main)


if __name__ == "__main__":
  run()
