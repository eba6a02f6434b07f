"""glcic-export: a glcic-jax checkpoint -> mmagic's PyTorch state_dict.

  glcic-export --workdir /ckpt/gl_places [--step 500000] \\
      --output gl_places.pth [--channel_order bgr]

`.pth` files hold {'state_dict': ..., 'meta': ...} as mmagic's releases do
and load with `torch.load(weights_only=True)`; `.safetensors` files hold
the same tensors. Any config's shapes export; only the paper config's load
into mmagic's GLInpaintor (`load_state_dict(strict=True)`).
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app, flags

from glcic_jax import checkpointing, cli, interop

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Flags are defined when the command runs, not on import, so the
  library functions here can be imported beside other absl programs."""
  flags.DEFINE_string("workdir", None, "glcic-jax workdir with checkpoints.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_string("output", None, "Output file: .pth or .safetensors.")
  flags.DEFINE_enum(
    "channel_order",
    "bgr",
    interop.CHANNEL_ORDERS,
    "Channel order the exported weights expect: 'bgr' for mmagic (its "
    "pipeline feeds BGR images), 'rgb' to keep glcic-jax's order.",
  )
  flags.mark_flags_as_required(["workdir", "output"])


def export_checkpoint(
  workdir: str, output: str, *, step: int | None = None, channel_order="bgr"
) -> dict:
  """Restores a checkpoint and writes it as an mmagic state_dict."""
  if not output.endswith((".pth", ".safetensors")):
    raise ValueError(f"--output must end in .pth or .safetensors: {output}")
  config = checkpointing.load_config(workdir, step)
  abstract = checkpointing.abstract_state_from_config(config)
  with checkpointing.Checkpointer(
    workdir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
  ) as ckpt:
    state, _ = ckpt.restore(abstract, step)
  state = jax.device_get(state)
  sd = interop.gl_state_dict(
    state.generator_variables(), state.disc_variables(), channel_order
  )
  restored_step = int(state.step)
  interop.write_state_dict(
    output,
    sd,
    {
      "iter": restored_step,
      "channel_order": channel_order,
      "config": config.name,
    },
  )
  return {
    "tensors": len(sd),
    "parameters": int(
      sum(
        np.size(v)
        for k, v in sd.items()
        if "running" not in k and "num_batches" not in k
      )
    ),
    "step": restored_step,
    "channel_order": channel_order,
  }


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  s = export_checkpoint(
    FLAGS.workdir,
    FLAGS.output,
    step=FLAGS.step,
    channel_order=FLAGS.channel_order,
  )
  print(
    f"Exported step {s['step']} of {FLAGS.workdir} to {FLAGS.output}: "
    f"{s['tensors']} tensors, {s['parameters']:,} parameters, channel "
    f"order RGB -> {s['channel_order']}."
  )


def run() -> None:
  _define_flags()
  cli.run_app(main, __name__)


if __name__ == "__main__":
  run()
