"""Saving and restoring a workdir's `GANState`s with orbax.

Each step directory is an orbax
Composite of three items: `state` (the `GANState` pytree; the static
optimisers are rebuilt from the config), `config` (`config.to_dict()` as
JSON, so eval/inpaint/export rebuild the networks from the workdir alone)
and `meta` (JSON: step, input position, format version, provenance).

Resuming must survive a checkpoint that a crash or a full disk left broken:
`Checkpointer.restore_latest` falls back to older steps and moves the broken
ones aside (renamed, never deleted) so that orbax's step listing and later
saves of the same step numbers work again. A failed read is retried first
(`reads`). With several processes, process 0's step listing is the one all follow, and a
step counts as restored only when every process restored it, so all resume
from the same step or all fail with the same error.
"""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization import type_handler_registry

from glcic_jax import config as config_lib
from glcic_jax import multihost, train_state
from glcic_jax.checkpointing import integrity, reads
from glcic_jax.checkpointing import meta as checkpoint_meta
from glcic_jax.checkpointing.reads import CheckpointError

FORMAT_VERSION = checkpoint_meta.FORMAT_VERSION
# Suffix of a step directory that failed to restore and was moved aside. The
# name no longer parses as a step, so orbax neither lists nor prunes it.
CORRUPT_SUFFIX = ".corrupt-"


_GENERATOR_KEYS = ("g_params", "g_batch_stats")
_BARRIERS = itertools.count()
_CONFIG_ITEM = {"config": ocp.args.JsonRestore()}
_META_ITEM = ocp.args.JsonRestore()

# Every array of the state is replicated over the mesh. orbax's default
# "replica-parallel" save copies slices from several replicas through one
# small compiled program per array shape, which made a restarted run's first
# save take seconds; one replica's copy is faster at every size this model
# has (docs/performance.md, "Checkpoints"). Registered for all of orbax (its
# StandardSave takes no per-item handler), otherwise as orbax's default,
# with the array metadata store it writes; neither has a public name.
type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
  jax.Array,
  ocp.type_handlers.ArrayHandler(
    use_replica_parallel=False,
    array_metadata_store=array_metadata_store.Store(),
  ),
  override=True,
  ignore_warnings=True,  # replacing orbax's own handler is the point
)


class Checkpointer:
  """Saves and restores `GANState`s in a workdir; all processes call it.

  `workdir` is local or any path `etils.epath` understands. `save` writes
  steps that are multiples of `save_every` (or forced); the newest `keep`
  are kept. With `async_save` the files are written in a background thread
  after `save` has copied the arrays to host memory (so the caller may
  donate them); `close` blocks until they are final. Read-only uses never
  create the workdir, so a mistyped `--workdir` is an error, not a folder.
  """

  def __init__(
    self,
    workdir: str | epath.PathLike,
    *,
    save_every: int,
    keep: int,
    async_save: bool = True,
  ):
    if save_every < 1 or keep < 1:
      raise ValueError(f"save_every ({save_every}) and keep ({keep}) < 1")
    # orbax refuses relative paths (raised late, from the async save thread):
    # make local ones absolute; leave URLs such as gs://bucket/run alone.
    if "://" not in os.fspath(workdir):
      workdir = os.path.abspath(os.fspath(workdir))
    self._workdir = epath.Path(workdir)
    self._save_every = int(save_every)
    self._options = ocp.CheckpointManagerOptions(
      save_interval_steps=self._save_every,
      preservation_policy=ocp.checkpoint_managers.LatestN(int(keep)),
      create=True,
      enable_async_checkpointing=async_save,
    )
    self._manager: ocp.CheckpointManager | None = None

  def _open(self, create: bool) -> ocp.CheckpointManager | None:
    """The orbax manager; None if the workdir is absent and not `create`."""
    if self._manager is None:
      if not create and not self._workdir.exists():
        return None
      self._manager = ocp.CheckpointManager(
        self._workdir, options=self._options
      )
    return self._manager

  def all_steps(self) -> list[int]:
    """Steps with a finished checkpoint, ascending ([] if no workdir)."""
    manager = self._open(create=False)
    return sorted(manager.all_steps()) if manager else []

  def save(
    self,
    state: train_state.GANState,
    config: ml_collections.ConfigDict,
    *,
    meta: Mapping[str, Any] | None = None,
    force: bool = False,
  ) -> bool:
    """Saves `state` at its step if due (multiple of save_every) or forced;
    returns whether it did. A step at or before the workdir's latest is
    never written: that would overwrite a checkpoint, or be pruned at once.
    `meta` adds to the recorded metadata (e.g. an import's provenance).
    """
    step = int(state.step)
    if not force and step % self._save_every:
      return False
    manager = self._open(create=True)
    latest = manager.latest_step()
    if latest is not None and step <= latest:
      log = logging.info if step == latest else logging.warning
      log(
        "Not saving step %d in %s: it already holds step %d; existing "
        "checkpoints are kept as they are.",
        step,
        self._workdir,
        latest,
      )
      return False
    config_dict = checkpoint_meta.json_ready(config.to_dict(), "config")
    meta_dict = checkpoint_meta.json_ready(
      checkpoint_meta.full_meta(step, meta), "meta"
    )
    meta_dict["checksums"] = integrity.checksums(state)
    saved = manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(config_dict),
        meta=ocp.args.JsonSave(meta_dict),
      ),
      force=True,
    )
    if saved:
      logging.info("Saving checkpoint step %d in %s.", step, self._workdir)
    return bool(saved)

  def restore(
    self, abstract_state: train_state.GANState, step: int | None = None
  ) -> tuple[train_state.GANState, dict[str, Any]]:
    """Restores `step` (default: the latest) as `(state, meta)`.

    `abstract_state` (`train_state.abstract_state`) gives shapes, dtypes
    and the shardings the arrays come back with.

    Raises:
      FileNotFoundError: no such step (the message lists those there are).
      CheckpointError: the step exists but could not be read, or what was
        read differs from its checksums or holds NaN or inf.
      ValueError: the checkpoint was written in a newer format.
    """
    step = self._existing_step(step)
    args = dict(
      state=ocp.args.StandardRestore(abstract_state),
      meta=ocp.args.JsonRestore(),
    )
    restored = self._read(step, "Checkpoint", args)
    meta = dict(restored.meta)
    checkpoint_meta.check_format(meta, step, self._workdir)
    self._verify(step, restored.state, meta)
    return restored.state, meta

  def _verify(self, step: int, tree: Any, meta: Mapping[str, Any]) -> None:
    """CheckpointError if `tree` differs from the checksums in `meta` or
    holds NaN or inf."""
    found = integrity.problems(tree, meta.get("checksums"))
    if found:
      more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
      raise CheckpointError(
        f"Checkpoint step {step} in {self._workdir} is damaged: "
        f"{found[0]}{more}."
      )

  def restore_latest(
    self, abstract_state: train_state.GANState
  ) -> tuple[train_state.GANState, dict[str, Any]] | None:
    """Restores the newest readable checkpoint; None if there is none.

    An unreadable checkpoint is logged and skipped for the one before it.
    Once an older one restores (which shows the abstract state fits this
    workdir), the unreadable newer ones are renamed `<step>.corrupt-<time>`
    so that training can save those steps again. If none restores, nothing
    is moved and a `CheckpointError` names the workdir and the errors.
    """
    steps = multihost.process0_steps(self.all_steps())
    if not steps:
      return None
    failures: list[tuple[int, Exception]] = []
    for step in reversed(steps):
      try:
        result, error = self.restore(abstract_state, step), None
      except (CheckpointError, FileNotFoundError) as e:
        result, error = None, e
      if not multihost.everywhere(error is None):
        if error is None:
          error = CheckpointError(
            f"step {step} restored here but not on another process"
          )
        logging.warning(
          "Checkpoint step %d in %s is unreadable; trying the one before. "
          "Error: %s",
          step,
          self._workdir,
          reads.short_error(error),
        )
        failures.append((step, error))
        continue
      if failures:
        self._move_aside([s for s, _ in failures])
      logging.info("Restored checkpoint step %d from %s.", step, self._workdir)
      return result
    details = "; ".join(
      f"step {s}: {reads.short_error(e)}" for s, e in failures
    )
    raise CheckpointError(
      f"None of the checkpoints {steps} in {self._workdir} could be "
      f"restored (if the config changed since they were written, restore "
      f"with the one saved in the workdir). Errors: {details}"
    ) from failures[0][1]

  def _existing_step(self, step: int | None) -> int:
    """`step`, or the latest if None; FileNotFoundError listing the steps."""
    steps = self.all_steps()
    if step is None and steps:
      return steps[-1]
    if step is None or step not in steps:
      where = "" if self._workdir.exists() else " (no such directory)"
      which = "" if step is None else f" for step {step}"
      raise FileNotFoundError(
        f"No checkpoint{which} in {self._workdir}{where}; available steps: "
        f"{steps or 'none'}"
      )
    return step

  def _read(self, step: int, what: str, items: dict[str, Any]) -> Any:
    """Restores `items` of an existing step; failures as CheckpointError.

    Each process reads alone: orbax's own restore ends in a barrier of all
    processes, where a process whose read failed (and that goes on to retry
    or to the step before) would leave the others waiting for ever. The
    callers agree on the outcome afterwards (`restore_latest`).
    """
    return reads.read_step(self._workdir, step, what, items)

  def _move_aside(self, steps: list[int]) -> None:
    """Renames broken step directories so orbax no longer lists them."""
    manager = self._open(create=False)
    manager.wait_until_finished()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    if jax.process_index() == 0:
      for step in steps:
        src = self._workdir / str(step)
        dst = self._workdir / f"{step}{CORRUPT_SUFFIX}{stamp}"
        src.rename(dst)
        logging.warning(
          "Moved unreadable checkpoint %s aside to %s (not deleted; remove "
          "it when no longer needed).",
          src,
          dst,
        )
    # Barrier names must be unique and equal on all processes.
    ocp.multihost.sync_global_processes(
      f"glcic_jax_move_aside_{'_'.join(map(str, steps))}_{next(_BARRIERS)}"
    )
    manager.reload()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    if self._manager is not None:
      self._manager.wait_until_finished()
      self._manager.close()
      self._manager = None

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()


def existing_steps(workdir: str | epath.PathLike) -> list[int]:
  """Checkpoint steps in `workdir` ([] if it does not exist); creates nothing."""
  with Checkpointer(workdir, save_every=1, keep=1) as ckpt:
    return ckpt.all_steps()


def load_config(
  workdir: str | epath.PathLike, step: int | None = None
) -> ml_collections.ConfigDict:
  """The config saved with `step` (default: the latest) in `workdir`."""
  with Checkpointer(workdir, save_every=1, keep=1) as ckpt:
    step = ckpt._existing_step(step)
    restored = ckpt._read(step, "The config of checkpoint", _CONFIG_ITEM)
  return config_lib.from_saved(restored.config)


def restore_generator(
  workdir: str | epath.PathLike, step: int | None = None
) -> tuple[dict[str, Any], ml_collections.ConfigDict, int]:
  """`({"params": ..., "batch_stats": ...}, config, step)` of a workdir's
  generator, on the default device: for eval and inpaint, which need
  neither the discriminators nor the optimiser states."""
  with Checkpointer(workdir, save_every=1, keep=1) as ckpt:
    step = ckpt._existing_step(step)
    what = "The generator of checkpoint"
    items = ckpt._read(step, what, {**_CONFIG_ITEM, "meta": _META_ITEM})
    config = config_lib.from_saved(items.config)
    abstract = train_state.abstract_state(config)
    target = {k: getattr(abstract, k) for k in _GENERATOR_KEYS}
    state = ocp.args.PyTreeRestore(
      target,
      restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True,
    )
    restored = ckpt._read(step, what, {"state": state}).state
    ckpt._verify(step, restored, items.meta)
  params, stats = (restored[k] for k in _GENERATOR_KEYS)
  return {"params": params, "batch_stats": stats}, config, step
