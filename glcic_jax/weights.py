"""Weights in and out of a workdir: an mmagic checkpoint (a file or a URL)
imported as a workdir every command accepts; a workdir's checkpoint
exported as mmagic's state_dict or as a deployable generator (ONNX,
StableHLO, PyTorch: `generator_export`). The layouts themselves are
`interop`'s.

Files exported here record the config and step they came from in their
metadata, so importing one needs no `--config`; a file whose shapes fit no
given config gets an error that says which shapes (and which of the
project's configs) would fit.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import re
from typing import Any

import jax
import numpy as np

from glcic_jax import (
  checkpointing,
  downloads,
  files,
  generator_export,
  interop,
  train_state,
  workdir_lock,
)
from glcic_jax import config as config_lib

# The metadata key of the config (JSON) in files exported by glcic-jax.
CONFIG_KEY = "glcic_jax_config"
_CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def read_file(
  checkpoint: str, *, allow_pickle: bool = False, offline: bool = False
) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
  """(local path, state_dict, meta) of a weights file or URL (downloaded
  into the cache first: `downloads`)."""
  if downloads.is_url(checkpoint):
    checkpoint = downloads.fetch(checkpoint, offline=offline)
  sd, meta = interop.read_weights(checkpoint, allow_pickle=allow_pickle)
  return checkpoint, sd, meta


def saved_config(meta: dict[str, Any]):
  """The config a glcic-jax export recorded, or None."""
  text = meta.get(CONFIG_KEY)
  return config_lib.from_saved(json.loads(text)) if text else None


def match_config(
  sd: dict[str, np.ndarray],
  config: Any,
  channel_order: str,
  *,
  with_discs: bool = True,
):
  """(generator variables, disc variables or None) of `sd` in `config`'s
  shapes; a mismatch is a ValueError saying which shapes would fit."""
  template = train_state.abstract_state(config)
  try:
    return interop.gl_variables(
      sd,
      template.generator_variables(),
      template.disc_variables() if with_discs else None,
      channel_order,
    )
  except interop.StateDictMismatchError as e:
    problems = str(e).splitlines()[1:]
    shapes = problems and not any(
      "dtype" in p or "finite" in p for p in problems
    )
    if not shapes:
      raise
    raise ValueError(
      f"{_shapes_hint(sd, config)} ({len(problems)} tensors do not fit "
      f"config {config.name}; the first: {problems[0].strip()})"
    ) from e


def _shapes_hint(sd: dict[str, np.ndarray], config: Any) -> str:
  """Which config the file's shapes call for, as flags (and the project's
  configs that have them)."""
  shapes = inferred_shapes(sd)
  if not shapes:
    return f"The file does not hold Global&Local networks of {config.name}."
  overrides = " ".join(f"--config.{k}={v}" for k, v in sorted(shapes.items()))
  fitting = [
    f"--config={os.path.relpath(path)}"
    for path in sorted(glob.glob(os.path.join(_CONFIGS, "*.py")))
    if _has_shapes(path, shapes)
  ]
  which = f"{' or '.join(fitting)}, or " if fitting else ""
  return (
    f"The file's networks have other shapes than config {config.name}'s: "
    f"pass {which}a config with {overrides}"
  )


def inferred_shapes(sd: dict[str, np.ndarray]) -> dict[str, int]:
  """The config fields (dotted) the tensors' shapes determine."""
  enc1 = sd.get("generator.encoder.enc1.conv.weight")
  if enc1 is None:
    return {}
  shapes = {"model.generator_channels": int(np.shape(enc1)[0])}
  for disc, size_field in (("global", "image_size"), ("local", "local_size")):
    convs = sorted(
      int(m.group(1))
      for k in sd
      if (m := re.fullmatch(rf"disc\.{disc}_disc\.conv(\d+)\.conv\.weight", k))
    )
    fc = sd.get(f"disc.{disc}_disc.fc.linear.weight")
    if not convs or fc is None:
      continue
    widths = [
      np.shape(sd[f"disc.{disc}_disc.conv{i}.conv.weight"])[0] for i in convs
    ]
    side = math.isqrt(np.shape(fc)[1] // widths[-1])
    shapes[f"model.{disc}_num_convs"] = len(convs)
    shapes[size_field] = side * 2 ** len(convs)
    shapes["model.disc_base_channels"] = int(widths[0])
    shapes["model.disc_max_channels"] = int(max(widths))
    shapes["model.disc_fc_features"] = int(np.shape(fc)[0])
  return shapes


def _has_shapes(path: str, shapes: dict[str, int]) -> bool:
  try:
    spec = importlib.util.spec_from_file_location("_glcic_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    return all(config_lib.get_field(config, k) == v for k, v in shapes.items())
  except Exception:  # noqa: BLE001  a config that does not load fits nothing
    return False


def import_checkpoint(
  checkpoint: str,
  workdir: str,
  config: Any = None,
  *,
  channel_order: str | None = None,
  step: int | None = None,
  allow_pickle: bool = False,
  offline: bool = False,
) -> dict[str, Any]:
  """An mmagic `.pth`/`.safetensors` (a path or URL) -> a new workdir
  holding it as checkpoint `step`, with the networks `config` describes.
  Unset, `config`, `channel_order` and `step` come from the file's own
  metadata where glcic-jax wrote it, else the paper's config, 'bgr' and 0.
  mmagic's files hold no optimiser states: a run resumed from the workdir
  starts Adam afresh. Returns a summary."""
  existing = checkpointing.existing_steps(workdir)
  if existing:
    raise FileExistsError(
      f"{workdir} already holds checkpoints {existing}; import into a new "
      "workdir"
    )
  path, sd, meta = read_file(
    checkpoint, allow_pickle=allow_pickle, offline=offline
  )
  config = config or saved_config(meta) or config_lib.get_base_config()
  channel_order = channel_order or str(meta.get("channel_order", "bgr"))
  step = int(meta.get("iter", 0)) if step is None else step
  g_vars, d_vars = match_config(sd, config, channel_order)
  rng = jax.random.PRNGKey(config.seed)
  state = train_state.create_state(g_vars, d_vars, rng, config)
  state = state.replace(step=np.int32(step))
  provenance = {
    "imported_from": str(checkpoint),
    "channel_order": channel_order,
  }
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
    ckpt.save(state, config, meta=provenance, force=True)
  return {
    "tensors": len(sd),
    "generator_parameters": train_state.parameter_count(g_vars["params"]),
    "disc_parameters": train_state.parameter_count(d_vars["params"]),
    "channel_order": channel_order,
    "step": step,
    "workdir": workdir,
    "path": path,
    "config": config.name,
  }


def _check_output(output: str, fmt: str) -> None:
  suffixes = {
    "mmagic": (".pth", ".safetensors"),
    "onnx": (".onnx",),
    "torch": (".pth",),
    "stablehlo": (".stablehlo",),
  }[fmt]
  if not output.endswith(suffixes):
    raise ValueError(
      f"--output for --format {fmt} must end in {' or '.join(suffixes)}: "
      f"{output}"
    )
  folder = os.path.dirname(output) or "."
  if not files.is_dir(folder):
    raise FileNotFoundError(f"the output folder {folder} does not exist")


def export_checkpoint(
  workdir: str,
  output: str,
  *,
  step: int | None = None,
  channel_order: str = "bgr",
  fmt: str = "mmagic",
) -> dict[str, Any]:
  """A workdir's checkpoint `step` (default: the latest) -> `output` in
  `fmt`: mmagic's state_dict (`.pth` or `.safetensors`, both networks, in
  `channel_order`) or a deployable generator (`generator_export`).
  Returns a summary."""
  _check_output(output, fmt)
  if fmt != "mmagic":
    variables, config, restored = checkpointing.restore_generator(workdir, step)
    meta = {
      "source": os.fspath(workdir),
      "step": restored,
      "config": config.name,
    }
    summary = generator_export.export_generator(
      variables, config.model, output, fmt, meta
    )
    return dict(summary, step=restored)
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
  meta = {
    "iter": restored_step,
    "channel_order": channel_order,
    "config": config.name,
    CONFIG_KEY: json.dumps(config.to_dict()),
  }
  interop.write_state_dict(output, sd, meta)
  learned = [k for k in sd if "running" not in k and "num_batches" not in k]
  return {
    "format": fmt,
    "tensors": len(sd),
    "parameters": sum(int(np.size(sd[k])) for k in learned),
    "step": restored_step,
    "channel_order": channel_order,
  }


def export_file(
  checkpoint: str,
  output: str,
  *,
  fmt: str,
  config: Any = None,
  channel_order: str | None = None,
  allow_pickle: bool = False,
  offline: bool = False,
) -> dict[str, Any]:
  """An mmagic weights file (a path or URL) -> a deployable generator in
  `output`, without a workdir."""
  if fmt == "mmagic":
    raise ValueError("--checkpoint files are mmagic's format already")
  _check_output(output, fmt)
  path, sd, meta = read_file(
    checkpoint, allow_pickle=allow_pickle, offline=offline
  )
  config = config or saved_config(meta) or config_lib.get_base_config()
  channel_order = channel_order or str(meta.get("channel_order", "bgr"))
  g_vars, _ = match_config(
    {k: v for k, v in sd.items() if k.startswith(interop.GENERATOR_PREFIX)},
    config,
    channel_order,
    with_discs=False,
  )
  step = int(meta.get("iter", 0))
  summary = generator_export.export_generator(
    g_vars,
    config.model,
    output,
    fmt,
    {"source": os.path.basename(path), "step": step, "config": config.name},
  )
  return dict(summary, step=step)
