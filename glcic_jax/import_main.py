"""glcic-import: an mmagic Global&Local checkpoint -> a glcic-jax workdir.

  glcic-import --checkpoint gl_256x256_8x12_places_20200619-52a040a8.pth \\
      --workdir /ckpt/gl_places_mmagic [--channel_order bgr] \\
      [--config configs/gl_places.py] [--step 500000]

Writes an orbax checkpoint that every other command accepts (glcic-train
resumes from it, glcic-eval evaluates it, glcic-inpaint completes with it,
glcic-export writes it back). The networks' shapes come from --config
(default: the paper's). Optimiser states are not in mmagic's release files,
so a resumed run starts Adam afresh.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from glcic_jax import checkpointing, cli, config_base, interop, train_state

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Flags are defined when the command runs, not on import, so the
  library functions here can be imported beside other absl programs."""
  flags.DEFINE_string("checkpoint", None, "mmagic .pth or .safetensors file.")
  flags.DEFINE_string("workdir", None, "New workdir for the orbax checkpoint.")
  config_flags.DEFINE_config_file(
    "config", None, "Config giving the network shapes.", lock_config=True
  )
  flags.DEFINE_enum(
    "channel_order",
    "bgr",
    interop.CHANNEL_ORDERS,
    "Image channel order the file's weights expect: 'bgr' for mmagic's "
    "files (its pipeline loads images as BGR); the weights are permuted so "
    "that glcic-jax feeds RGB. 'rgb' copies them unchanged.",
  )
  flags.DEFINE_integer(
    "step", 0, "Step number to record the imported weights at."
  )
  flags.DEFINE_bool(
    "allow_pickle",
    False,
    "Unpickle arbitrary objects in a .pth (torch.load weights_only=False). "
    "Unpickling can run any code the file's author put in it: use only for "
    "files you trust, when the default safe loader refuses one.",
  )
  flags.mark_flags_as_required(["checkpoint", "workdir"])


def import_checkpoint(
  checkpoint: str,
  workdir: str,
  config=None,
  *,
  channel_order: str = "bgr",
  step: int = 0,
  allow_pickle: bool = False,
) -> dict:
  """Reads, converts and saves; returns a summary of what was done."""
  config = config or config_base.get_base_config()
  existing = checkpointing.existing_steps(workdir)
  if existing:
    raise FileExistsError(
      f"{workdir} already holds checkpoints {existing}; import into a new "
      "workdir"
    )
  sd = interop.read_state_dict(checkpoint, allow_pickle=allow_pickle)
  template = checkpointing.abstract_state_from_config(config)
  g_vars, d_vars = interop.gl_variables(
    sd,
    template.generator_variables(),
    template.disc_variables(),
    channel_order,
  )
  state = train_state.create_state(
    g_vars, d_vars, jax.random.PRNGKey(config.seed), config
  ).replace(step=np.int32(step))
  meta = {
    "imported_from": str(checkpoint),
    "channel_order": channel_order,
  }
  with checkpointing.Checkpointer(
    workdir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
  ) as ckpt:
    ckpt.save(state, config, meta=meta, force=True)
  count = lambda t: sum(int(np.size(x)) for x in jax.tree.leaves(t))  # noqa: E731
  return {
    "tensors": len(sd),
    "generator_parameters": count(g_vars["params"]),
    "disc_parameters": count(d_vars["params"]),
    "channel_order": channel_order,
    "step": step,
    "workdir": workdir,
  }


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summary = import_checkpoint(
    FLAGS.checkpoint,
    FLAGS.workdir,
    FLAGS.config,
    channel_order=FLAGS.channel_order,
    step=FLAGS.step,
    allow_pickle=FLAGS.allow_pickle,
  )
  print(
    f"Imported {summary['tensors']} tensors from {FLAGS.checkpoint}: "
    f"generator {summary['generator_parameters']:,} and discriminators "
    f"{summary['disc_parameters']:,} trainable parameters, channel order "
    f"{summary['channel_order']} -> RGB, as step {summary['step']} in "
    f"{summary['workdir']}."
  )


def run() -> None:
  _define_flags()
  cli.run_app(main, __name__)


if __name__ == "__main__":
  run()
