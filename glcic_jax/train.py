"""The training loop: `train_and_evaluate(config, workdir)`.

Importable and testable; `commands/train.py` is a thin absl wrapper around
it. The loop picks mmagic's phase for each step
(`train_steps.phase_for_step`), runs the jitted step on the device mesh,
logs one line per interval and TensorBoard summaries through clu,
checkpoints through `checkpointing`, and resumes exactly where a previous
run stopped: state, step and input position (one global batch per step)
come back from the latest good checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from glcic_jax import (
  batches,
  checkpointing,
  evaluate,
  input_feed,
  models,
  sharding,
  step_metrics,
  summaries,
  throughput,
  train_log,
  train_state,
  workdir_lock,
)
from glcic_jax import config as config_lib
from glcic_jax import train_steps as ts
from glcic_jax.startup import huge_pages

# XLA's CPU backend runs bf16 convolutions and dots in float32, with
# conversions around each (docs/performance.md, "Mixed precision").
BF16_ON_CPU_HINT = (
  "compute_dtype='bfloat16' on the CPU: XLA's CPU backend runs bf16 "
  "convolutions and matmuls in float32 with conversions around each, so "
  "this run is slower than with float32 (docs/performance.md). bfloat16 "
  "is meant for GPUs and TPUs."
)


# Raised when a step's losses are not finite (kept here for callers).
NonFiniteLossError = step_metrics.NonFiniteLossError


def _init_on_mesh(config, mesh, abstract) -> train_state.GANState:
  """Initialises the state directly replicated on the mesh (every process
  computes the same values from the config's seed)."""
  init = jax.jit(
    functools.partial(train_state.init_state, config),
    out_shardings=sharding.state_sharding(mesh, abstract),
  )
  return init(jax.random.PRNGKey(config.seed))


def _preview(generator, g_vars, batch, n: int = 4):
  """Eval-mode completions of the first n examples (replicated output)."""
  batch = batches.expand({k: v[:n] for k, v in batch.items()})
  image, mask = batch["image"], batch["mask"]
  completion = evaluate.composite_completion(generator, g_vars, image, mask)
  return image, mask, completion


class _Preemption:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

  def __init__(self):
    self.signal: int | None = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      with contextlib.suppress(ValueError):  # not the main thread
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving and stopping.", signum)
    self.signal = signum

  def stopping(self) -> bool:
    return self.signal is not None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _check_resumable(meta, global_batch: int, mesh, workdir) -> None:
  """Resuming on another topology (elastic) keeps the input position only
  with the global batch the checkpoint was trained with: refuse otherwise,
  before any work, saying which per-device batch resumes it."""
  saved = meta.get("global_batch_size")
  if saved is None or int(saved) == global_batch:
    return
  devices = mesh.devices.size
  fits = (
    f"--config.per_device_batch_size={saved // devices}"
    if saved % devices == 0
    else f"a device count dividing {saved}"
  )
  raise ValueError(
    f"The checkpoint in {workdir} was trained with a global batch of "
    f"{saved}; this run's is {global_batch} (config.per_device_batch_size "
    f"x {devices} devices). Resume with {fits}, so that the input goes on "
    f"from the same position."
  )


def _open_feed(config, mesh, global_batch: int, start: int, source=None):
  """This process's batches from `start` on, fed to the devices ahead of
  the steps. TensorFlow is imported only for the sources that need it."""
  if config.data.source == "synthetic":
    from glcic_jax.data import synthetic

    local = synthetic.batches(
      config, mesh, global_batch_size=global_batch, start_step=start
    )
    skipped = lambda: 0  # noqa: E731
  else:
    from glcic_jax.data import pipeline as input_pipeline

    local = input_pipeline.create_train_dataset(
      config,
      global_batch_size=global_batch,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      start_step=start,
      source=source,
    )
    skipped = local.skipped_files
  return input_feed.DeviceFeed(
    local,
    mesh,
    depth=config.device_prefetch,
    skipped_files=skipped,
    stall_seconds=config.data.input_timeout_s,
    describe_stall=functools.partial(_describe_stall, local),
  )


def _describe_stall(local, k: int) -> str:
  """What a stalled batch reads, the blocking file first if there is one."""
  names = local.files_of_batch(k) if hasattr(local, "files_of_batch") else []
  if names:
    from glcic_jax.data import sources

    blocking = sources.blocking_files(names)
    if blocking:
      return (
        f"it reads {blocking[0]}, which is not a regular file (a FIFO or a "
        "device, whose read never returns): remove it from the source."
      )
    return (
      f"it reads {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}; a "
      "read that never returns (a hung network mount?) stalls it. "
      "config.data.input_timeout_s sets this limit."
    )
  return "config.data.input_timeout_s sets this limit."


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> train_state.GANState:
  """Trains until `config.total_steps` (or a signal), resuming if possible.

  Returns the final state. Raises `NonFiniteLossError` when a loss turns
  NaN/inf; checkpoints written before that step are kept.
  """
  config_lib.check_config(config)
  if jax.default_backend() == "cpu":
    hint = huge_pages.missing_huge_pages_hint()
    if hint:
      logging.warning("%s", hint)
    if config.compute_dtype == "bfloat16":
      logging.warning("%s", BF16_ON_CPU_HINT)
  mesh = sharding.create_mesh()
  global_batch = config.per_device_batch_size * mesh.devices.size
  sharding.check_batch_size(global_batch, mesh)
  # Every configured source is opened (and so checked) before the workdir
  # is created or locked, and long before the first evaluation needs it.
  train_source = _open_sources(config)
  with workdir_lock.WorkdirLock(workdir, "glcic-train"):
    return _train(config, workdir, mesh, global_batch, train_source)


def _open_sources(config):
  """The training source (None for the synthetic one), after checking that
  the evaluation source opens too when the run evaluates."""
  if config.data.source == "synthetic" and config.eval_every <= 0:
    return None
  from glcic_jax.data import sources

  where = dict(
    process_index=jax.process_index(), process_count=jax.process_count()
  )
  train_source = None
  if config.data.source != "synthetic":
    train_source = sources.open_source(config.data, **where, section="data")
  if config.eval_every > 0:
    sources.open_source(config.eval_data, **where, section="eval_data")
  return train_source


def _train(config, workdir, mesh, global_batch: int, train_source):
  """The run itself, with the workdir locked."""
  writer = summaries.tensorboard_writer(workdir)
  ckpt = checkpointing.Checkpointer(
    workdir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
  )
  abstract = train_state.abstract_state(config, mesh)
  restored = ckpt.restore_latest(abstract)
  if restored is None:
    state = _init_on_mesh(config, mesh, abstract)
  else:
    state, meta = restored
    _check_resumable(meta, global_batch, mesh, workdir)
  start = saved = int(state.step)
  if start >= config.total_steps:
    logging.warning(
      "Nothing to train: %s holds step %d and config.total_steps is %d; "
      "raise --config.total_steps to train on.",
      workdir,
      start,
      config.total_steps,
    )
    ckpt.close()
    return state
  train_log.log_start(config, mesh, state, global_batch, start)

  feed = _open_feed(config, mesh, global_batch, start, train_source)
  steps = {
    phase: sharding.jit_step(
      batches.on_shipped(fn, f"{phase}_step"), mesh, state
    )
    for phase, fn in ts.make_steps(config).items()
  }
  generator, _ = models.build_models(
    config.model,
    ts.compute_dtype(config),
    batch_per_device=config.per_device_batch_size,
  )
  preview = jax.jit(
    functools.partial(_preview, generator),
    out_shardings=sharding.replicated(mesh),
  )
  meter = throughput.Meter(config, mesh.devices.size)
  interval = step_metrics.Interval()
  trace = throughput.Trace(config.profile_steps, workdir)

  def save(done: int) -> None:
    nonlocal saved
    interval.drain()  # never a non-finite state on disk
    meta = {"data_position": done, "global_batch_size": global_batch}
    ckpt.save(state, config, meta=meta, force=True)
    saved = done

  # Leaving the block (normally or by an error) waits for async saves.
  with ckpt, feed, _Preemption() as preemption, summaries.flushing(writer):
    for step in range(start, config.total_steps):
      phase = ts.phase_for_step(step, config.schedule)
      batch = feed.next(should_stop=preemption.stopping)
      if batch is None:  # a signal while waiting for input
        break
      trace.before(step)
      with trace.annotate(step):
        state, metrics = steps[phase](state, batch)
      interval.add(step, phase, metrics)
      trace.after(step, state)
      done = step + 1

      if done % config.log_every == 0 or done == config.total_steps:
        interval.drain()
        seconds = time.time() - interval.start_time
        scalars = {k: float(np.mean(v)) for k, v in interval.averages.items()}
        scalars |= meter.scalars(interval.steps, seconds)
        scalars["skipped_files"] = feed.skipped_files()
        scalars["phase"] = ts.PHASES.index(phase)
        writer.write_scalars(done, scalars)
        train_log.log_interval(done, config.total_steps, scalars)
        interval = step_metrics.Interval()

      if config.image_every > 0 and done % config.image_every == 0:
        shown = jax.device_get(preview(state.generator_variables(), batch))
        grid = evaluate.completion_grid(*shown)
        writer.write_images(done, {"train/gt_masked_completion": grid[None]})

      if (
        done % config.checkpoint_every == 0
        or preemption.stopping()
        or done == config.total_steps
      ):
        save(done)
      # After the save, and not fatal: a failing evaluation costs no
      # training; it is tried again at the next interval.
      if config.eval_every > 0 and done % config.eval_every == 0:
        interval.drain()
        try:
          _evaluate(generator, state, config, mesh, workdir, writer, done)
        except Exception as e:  # noqa: BLE001  reported, training goes on
          logging.error(
            "Evaluation at step %d failed; training goes on and evaluates "
            "again at step %d. %s: %s",
            done,
            done + config.eval_every,
            type(e).__name__,
            e,
          )
      if preemption.stopping():
        break
    trace.stop(state)
    if preemption.stopping():
      if int(state.step) > saved:
        save(int(state.step))
      trained = saved > start or restored is not None
      held = "saved" if trained else "none to save: no step trained"
      logging.warning(
        "Stopped by signal at step %d; checkpoint %s.", int(state.step), held
      )
  return state


def _evaluate(generator, state, config, mesh, workdir, writer, step) -> None:
  """Periodic evaluation: metrics to TensorBoard and eval/step_N.json, the
  grid of held-out completions to `workdir/completions.png`."""
  result = evaluate.evaluate(
    generator,
    state.generator_variables(),
    config,
    mesh,
    num_batches=config.eval_num_batches,
  )
  path = evaluate.write_results(
    result,
    workdir,
    step=step,
    seed=config.seed,
    source=config.eval_data.source,
    writer=writer,
  )
  grid = os.path.join(workdir, "completions.png")
  if jax.process_index() == 0:
    from glcic_jax.inpaint import images

    images.save_png(grid, result.grid)
  logging.info(
    "Evaluation at step %d on %d images: l1 error %.3f, PSNR %.3f, SSIM "
    "%.4f (%s, %s)",
    step,
    result.num_images,
    result.l1_error,
    result.psnr,
    result.ssim,
    path,
    grid,
  )
