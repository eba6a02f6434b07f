"""Throughput as big_vision and MaxText users read it: images/s per device,
model TFLOP/s per device, and the fraction of the device's peak.

Model FLOPs are XLA's count of the step's arithmetic with the native
convolutions, taken from the lowered (unpartitioned) program before any
pass rewrites it: the CPU's Winograd and matmul forms execute fewer or
other operations, and the count must not depend on the machine. Peaks
are the vendors' dense figures per chip (no sparsity).
"""

from __future__ import annotations

import contextlib
import os

import jax
import ml_collections
from absl import logging

from glcic_jax import batches, train_state
from glcic_jax import train_steps as ts

# Dense TFLOP/s per chip (bfloat16, float32), from the data sheets;
# float32 is the non-tensor-core rate on GPUs (None: not published).
# Matched in order against `device_kind`, so "H100 PCIe" before "H100".
PEAK_TFLOPS: tuple[tuple[str, float, float | None], ...] = (
  ("H100 PCIe", 756.0, 51.2),
  ("H100", 989.4, 66.9),
  ("H200", 989.4, 66.9),
  ("B200", 2250.0, 80.0),
  ("A100", 312.0, 19.5),
  ("L4", 121.0, 30.3),
  ("TPU v6 lite", 918.0, None),
  ("TPU v6e", 918.0, None),
  ("TPU v5 lite", 197.0, None),
  ("TPU v5e", 197.0, None),
  ("TPU v5p", 459.0, None),
  ("TPU v5", 459.0, None),
  ("TPU v4", 275.0, None),
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The chip's dense peak for `dtype` ('bfloat16' or 'float32'), or None
  where it is not in the table (the CPU, unknown chips)."""
  for name, bf16, fp32 in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return bf16 if dtype == "bfloat16" else fp32
  return None


def step_flops(config: ml_collections.ConfigDict, phase: str, n: int) -> float:
  """Model FLOPs of one step of `phase` on a global batch of n (forward,
  backward and the optimiser), as XLA counts the native step."""
  step = batches.on_shipped(
    ts.make_steps(config, conv_forms="native")[phase], f"{phase}_step"
  )
  lowered = jax.jit(step).lower(
    train_state.abstract_state(config),
    batches.spec(config.image_size, n),
  )
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


class Meter:
  """Per-interval throughput of the loop, with FLOPs counted once per
  phase on first use."""

  def __init__(self, config: ml_collections.ConfigDict, num_devices: int):
    self.config = config
    self.num_devices = num_devices
    self.global_batch = config.per_device_batch_size * num_devices
    kind = jax.devices()[0].device_kind
    self.peak = peak_tflops(kind, config.compute_dtype)
    self._flops: dict[str, float] = {}

  def flops(self, phase: str) -> float:
    if phase not in self._flops:
      self._flops[phase] = step_flops(self.config, phase, self.global_batch)
    return self._flops[phase]

  def scalars(
    self, steps_by_phase: dict[str, int], seconds: float
  ) -> dict[str, float]:
    """images/s (all and per device), model TFLOP/s per device and, where
    the peak is known, its fraction (`mfu`)."""
    seconds = max(seconds, 1e-9)
    steps = sum(steps_by_phase.values())
    flops = sum(self.flops(p) * n for p, n in steps_by_phase.items())
    out = {
      "steps_per_second": steps / seconds,
      "images_per_second": steps * self.global_batch / seconds,
      "images_per_second_per_device": (
        steps * self.global_batch / seconds / self.num_devices
      ),
      "tflops_per_device": flops / seconds / self.num_devices / 1e12,
    }
    if self.peak:
      out["mfu"] = out["tflops_per_device"] / self.peak
    return out


class Trace:
  """A `jax.profiler` trace of config.profile_steps = (first step, count)
  under the workdir (`plugins/profile/`, what TensorBoard's profile plugin
  opens), written by process 0."""

  def __init__(self, profile_steps, workdir: str):
    self.first, self.count = (int(x) for x in profile_steps)
    self.workdir, self.active = workdir, False

  def annotate(self, step: int):
    if not self.active:
      return contextlib.nullcontext()
    return jax.profiler.StepTraceAnnotation("train", step_num=step)

  def before(self, step: int) -> None:
    if self.count > 0 and step == self.first and jax.process_index() == 0:
      jax.profiler.start_trace(self.workdir)
      self.active = True

  def after(self, step: int, state) -> None:
    if self.active and step >= self.first + self.count - 1:
      self.stop(state)

  def stop(self, state) -> None:
    if self.active:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      logging.info(
        "Profile of steps %d-%d written to %s (tensorboard --logdir %s).",
        self.first,
        self.first + self.count - 1,
        os.path.join(self.workdir, "plugins", "profile"),
        self.workdir,
      )
