"""Throughput figures: the peak table and the model FLOPs of a step."""

from __future__ import annotations

import pytest

from glcic_jax import throughput
from glcic_jax import train_steps as ts
from tests.test_train import tiny


@pytest.mark.parametrize(
  "kind, dtype, peak",
  [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4),
    ("NVIDIA H100 PCIe", "bfloat16", 756.0),
    ("NVIDIA H200", "float32", 66.9),
    ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v4", "float32", None),
    ("cpu", "float32", None),
  ],
)
def test_peaks_by_device_kind(kind, dtype, peak):
  assert throughput.peak_tflops(kind, dtype) == peak


def test_step_flops_grow_with_the_batch_and_the_phase():
  config = tiny()
  g2 = throughput.step_flops(config, ts.PHASE_G, 2)
  g4 = throughput.step_flops(config, ts.PHASE_G, 4)
  joint = throughput.step_flops(config, ts.PHASE_JOINT, 2)
  assert g2 > 0
  # The convolutions scale with the batch; Adam's few FLOPs do not.
  assert 1.9 < g4 / g2 <= 2.0
  assert joint > 1.1 * g2  # plus the discriminators, forward and backward


def test_meter_reports_per_device_rates_and_the_fraction_of_peak():
  meter = throughput.Meter(tiny(), num_devices=8)
  meter._flops = {ts.PHASE_G: 4e12}  # a known count instead of XLA's
  meter.peak = 100.0
  out = meter.scalars({ts.PHASE_G: 10}, seconds=2.0)
  assert out["images_per_second"] == 10 * 16 / 2.0
  assert out["images_per_second_per_device"] == 10 * 16 / 2.0 / 8
  assert out["tflops_per_device"] == pytest.approx(4 * 10 / 2.0 / 8)
  assert out["mfu"] == pytest.approx(out["tflops_per_device"] / 100.0)
