"""glcic-export: a glcic-jax checkpoint -> mmagic's state_dict, or a
generator ready to deploy (ONNX, StableHLO, PyTorch).

  glcic-export --workdir /ckpt/gl_places [--step 500000] \\
      --output gl_places.pth [--channel_order bgr]
  glcic-export --workdir /ckpt/gl_places --format onnx --output gl.onnx
  glcic-export --checkpoint gl_places.pth --format torch --output gl_g.pth

mmagic (the default): `.pth` files hold {'state_dict': ..., 'meta': ...} as
mmagic's releases do and load with `torch.load(weights_only=True)`;
`.safetensors` files hold the same tensors. Any config's shapes export;
only the paper config's load into mmagic's GLInpaintor
(`load_state_dict(strict=True)`). The metadata records the config and
step, so `glcic-import` needs no --config to bring the file back.

onnx, stablehlo, torch: the generator alone, as the whole completion an
app needs: image [N, 3, H, W] RGB 0..255 and mask [N, 1, H, W] (1 = hole)
-> the completed image [N, 3, H, W] RGB 0..255, known pixels unchanged;
N, H, W free, H and W multiples of 4 (glcic_jax/generator_export.py).
From a workdir, or from an mmagic file (--checkpoint, a path or URL; its
shapes from --config or its metadata, else the paper's).
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "workdir", None, "glcic-jax workdir with checkpoints.", **fv
  )
  flags.DEFINE_string(
    "checkpoint",
    None,
    "An mmagic .pth/.safetensors file or URL instead (not with "
    "--format mmagic).",
    **fv,
  )
  flags.DEFINE_integer(
    "step", None, "Checkpoint step (default: the latest).", **fv
  )
  flags.DEFINE_enum(
    "format",
    "mmagic",
    ["mmagic", "onnx", "stablehlo", "torch"],
    "What to write.",
    **fv,
  )
  flags.DEFINE_string(
    "output",
    None,
    "Output file: .pth or .safetensors (mmagic), .onnx, .stablehlo (with "
    "its .json beside it) or .pth (torch).",
    **fv,
  )
  flags.DEFINE_enum(
    "channel_order",
    None,
    ["bgr", "rgb"],
    "mmagic format: the channel order the exported weights expect, 'bgr' "
    "for mmagic (the default: its pipeline feeds BGR images), 'rgb' to "
    "keep glcic-jax's. --checkpoint: the order of the file's weights "
    "(default: its metadata, else bgr). Deployable formats take RGB.",
    **fv,
  )
  launch.define_config_flag(
    flag_values, "Network shapes of --checkpoint (default: its own).", sys_argv
  )
  flags.DEFINE_bool(
    "offline", False, "Use only the download cache for a URL.", **fv
  )
  flags.mark_flags_as_required(["output"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  fv = flag_values
  if bool(fv.workdir) == bool(fv.checkpoint):
    raise app.UsageError("give exactly one of --workdir or --checkpoint")
  from glcic_jax import weights

  if fv.checkpoint:
    s = weights.export_file(
      fv.checkpoint,
      fv.output,
      fmt=fv.format,
      config=fv.config,
      channel_order=fv.channel_order,
      offline=fv.offline,
    )
  else:
    s = weights.export_checkpoint(
      fv.workdir,
      fv.output,
      step=fv.step,
      channel_order=fv.channel_order or "bgr",
      fmt=fv.format,
    )
  source = fv.workdir or fv.checkpoint
  if fv.format == "mmagic":
    print(
      f"Exported step {s['step']} of {source} to {fv.output}: "
      f"{s['tensors']} tensors, {s['parameters']:,} parameters, channel "
      f"order RGB -> {s['channel_order']}."
    )
  else:
    print(
      f"Exported the generator of step {s['step']} of {source} to "
      f"{fv.output} ({fv.format}, {s['bytes']:,} bytes, {s['seconds']:.1f} s)."
    )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main)


if __name__ == "__main__":
  run()
