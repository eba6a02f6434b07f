"""Metrics read at the log interval, checked for the first bad step."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from glcic_jax import step_metrics


def test_drain_averages_by_phase_and_names_the_first_non_finite_step():
  interval = step_metrics.Interval()
  interval.add(0, "generator", {"loss": jnp.float32(1.0)})
  interval.add(1, "generator", {"loss": jnp.float32(3.0)})
  interval.add(2, "joint", {"loss": jnp.float32(5.0)})
  interval.drain()
  assert interval.averages == {
    "generator/loss": [1.0, 3.0],
    "joint/loss": [5.0],
  }
  assert interval.steps == {"generator": 2, "joint": 1}
  for step, value in ((3, 1.0), (4, float("nan")), (5, float("inf"))):
    interval.add(step, "joint", {"loss": jnp.float32(value)})
  with pytest.raises(step_metrics.NonFiniteLossError, match="step 4"):
    interval.drain()
