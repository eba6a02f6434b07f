"""Weights in and out of a workdir: an mmagic checkpoint imported as a
workdir every command accepts, a workdir's checkpoint exported as mmagic's
state_dict. The layouts themselves are `interop`'s."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from glcic_jax import checkpointing, interop, train_state, workdir_lock
from glcic_jax import config as config_lib


def import_checkpoint(
  checkpoint: str,
  workdir: str,
  config: Any = None,
  *,
  channel_order: str = "bgr",
  step: int = 0,
  allow_pickle: bool = False,
) -> dict[str, Any]:
  """An mmagic `.pth`/`.safetensors` -> a new workdir holding it as
  checkpoint `step`, with the networks `config` (default: the paper's)
  describes. mmagic's files hold no optimiser states: a run resumed from
  the workdir starts Adam afresh. Returns a summary."""
  config = config or config_lib.get_base_config()
  existing = checkpointing.existing_steps(workdir)
  if existing:
    raise FileExistsError(
      f"{workdir} already holds checkpoints {existing}; import into a new "
      "workdir"
    )
  sd = interop.read_state_dict(checkpoint, allow_pickle=allow_pickle)
  template = train_state.abstract_state(config)
  g_vars, d_vars = interop.gl_variables(
    sd,
    template.generator_variables(),
    template.disc_variables(),
    channel_order,
  )
  rng = jax.random.PRNGKey(config.seed)
  state = train_state.create_state(g_vars, d_vars, rng, config)
  state = state.replace(step=np.int32(step))
  meta = {"imported_from": str(checkpoint), "channel_order": channel_order}
  # The workdir is created (and locked) only once the file has been read
  # and matched: a failed import leaves nothing behind.
  with (
    workdir_lock.WorkdirLock(workdir, "glcic-import"),
    checkpointing.Checkpointer(
      workdir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
    ) as ckpt,
  ):
    if ckpt.all_steps():
      raise FileExistsError(f"{workdir} got checkpoints while importing")
    ckpt.save(state, config, meta=meta, force=True)
  return {
    "tensors": len(sd),
    "generator_parameters": train_state.parameter_count(g_vars["params"]),
    "disc_parameters": train_state.parameter_count(d_vars["params"]),
    "channel_order": channel_order,
    "step": step,
    "workdir": workdir,
  }


def export_checkpoint(
  workdir: str,
  output: str,
  *,
  step: int | None = None,
  channel_order: str = "bgr",
) -> dict[str, Any]:
  """A workdir's checkpoint `step` (default: the latest) -> mmagic's
  state_dict in `output` (`.pth` or `.safetensors`). Returns a summary."""
  if not output.endswith((".pth", ".safetensors")):
    raise ValueError(f"--output must end in .pth or .safetensors: {output}")
  config = checkpointing.load_config(workdir, step)
  with checkpointing.Checkpointer(
    workdir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
  ) as ckpt:
    state, _ = ckpt.restore(train_state.abstract_state(config), step)
  state = jax.device_get(state)
  sd = interop.gl_state_dict(
    state.generator_variables(), state.disc_variables(), channel_order
  )
  restored_step = int(state.step)
  meta = {"iter": restored_step, "channel_order": channel_order}
  interop.write_state_dict(output, sd, dict(meta, config=config.name))
  learned = [k for k in sd if "running" not in k and "num_batches" not in k]
  return {
    "tensors": len(sd),
    "parameters": sum(int(np.size(sd[k])) for k in learned),
    "step": restored_step,
    "channel_order": channel_order,
  }
