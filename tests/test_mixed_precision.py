"""compute_dtype='bfloat16': bf16 convolutions, float32 params, statistics
and losses; close to float32, and a short run trains."""

from __future__ import annotations

import glob
import logging
import re

import jax
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from glcic_jax import sharding, train, train_state
from glcic_jax import train_steps as ts
from tests.test_train_steps import load_config, random_batch


def _config(dtype):
  config = load_config("tiny")
  config.compute_dtype = dtype
  config.eval_every = 0
  return config


def test_bf16_step_close_to_float32():
  """bf16 keeps 8 mantissa bits (relative rounding 2**-9 = 0.2%); through
  ~20 layers the losses stay within 3% of float32. Only the joint step:
  it computes every loss of the other two phases and updates both networks
  (the other steps, compiled twice each, added 30-40 s to the suite)."""
  phase = ts.PHASE_JOINT
  batch = random_batch(_config("float32"), 8, seed=2)
  state = train_state.init_state(_config("float32"), jax.random.PRNGKey(2))
  out = {}
  for dtype in ("float32", "bfloat16"):
    step = jax.jit(ts.make_steps(_config(dtype))[phase])
    new, metrics = step(state, batch)
    out[dtype] = (jax.device_get(new), jax.device_get(metrics))
  new16, m16 = out["bfloat16"]
  _, m32 = out["float32"]
  for leaf in jax.tree.leaves(
    (new16.g_params, new16.d_params, new16.g_opt_state)
  ):
    if hasattr(leaf, "dtype") and leaf.dtype.kind == "f":
      assert leaf.dtype == np.float32
  for k in ("loss_l1_hole", "fake_loss", "real_loss", "loss_g_fake"):
    if k in m32:
      assert m16[k].dtype == np.float32
      np.testing.assert_allclose(m16[k], m32[k], rtol=3e-2, err_msg=k)


def test_bf16_convolutions_really_run_in_bf16():
  config = _config("bfloat16")
  state = train_state.init_state(config, jax.random.PRNGKey(0))
  step = ts.make_steps(config)[ts.PHASE_G]
  hlo = jax.jit(step).lower(state, random_batch(config, 2)).as_text()
  # On the CPU backend the convs are matmuls (glcic_jax/cpu); either way
  # every conv and matmul of the step must be bf16.
  ops = [
    line
    for line in hlo.splitlines()
    if "stablehlo.convolution" in line or "stablehlo.dot_general" in line
  ]
  assert len(ops) >= 14  # one per generator conv at least
  assert all("bf16" in line and "f32" not in line for line in ops), ops


def test_short_bf16_run_trains(tmp_path, caplog):
  """A short bf16 run lowers the L1 loss; on the CPU it warns that bf16 is
  slower there."""
  config = _config("bfloat16")
  config.total_steps = 24
  config.schedule.iter_tc = 100  # G-only, so the L1 trend is clean
  config.log_every = 8
  config.image_every = 0
  config.checkpoint_every = 24
  losses = []
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, str(tmp_path))
  warned = [r.getMessage() for r in caplog.records]
  assert train.BF16_ON_CPU_HINT in warned, warned

  acc = event_accumulator.EventAccumulator(
    glob.glob(str(tmp_path / "events.out.tfevents.*"))[0],
    size_guidance={"tensors": 0},
  )
  acc.Reload()
  for e in acc.Tensors("generator/loss_l1_hole"):
    losses.append(float(tf.make_ndarray(e.tensor_proto)))
  assert len(losses) == 3 and all(np.isfinite(losses))
  assert losses[-1] < losses[0], losses


def _all_reduce_types(hlo: str) -> list[str]:
  """The element types of every all-reduce of a compiled HLO module."""
  pattern = re.compile(r"= (\(?[a-z0-9]+\[[^=]*?) all-reduce(?:-start)?\(")
  return [m[1] for m in map(pattern.search, hlo.splitlines()) if m is not None]


def _partitioned_hlo(compile_step, tmp_path) -> str:
  """The HLO module right after SPMD partitioning, before the backend's own
  passes: what a GPU or TPU compiler receives (the CPU's later passes turn
  bfloat16 all-reduces into float32 ones by themselves)."""
  compile_step(
    {"xla_dump_to": str(tmp_path), "xla_dump_hlo_pass_re": "spmd-partitioning"}
  )
  (path,) = tmp_path.glob("*after_spmd-partitioning*.txt")
  return path.read_text()


@pytest.mark.parametrize("forms", ["native", "cpu"])
def test_bf16_gradients_are_all_reduced_in_float32(forms, tmp_path):
  """As PyTorch DDP does: with bf16 convolutions, every cross-device sum of
  the partitioned joint step (conv, fc and bias gradients, BatchNorm
  statistics, losses) is float32. The native forms, which GPUs and TPUs
  run, from the partitioned module; the CPU forms, which only the CPU runs,
  from the compiled CPU program."""
  config = _config("bfloat16")
  mesh = sharding.create_mesh()
  state = train_state.init_state(config, jax.random.PRNGKey(0))
  step = ts.make_steps(config, conv_forms=forms)[ts.PHASE_JOINT]
  batch = random_batch(config, 2 * mesh.size)
  lowered = sharding.jit_step(step, mesh, state).lower(state, batch)
  if forms == "native":
    hlo = _partitioned_hlo(
      lambda options: lowered.compile(compiler_options=options), tmp_path
    )
  else:
    hlo = lowered.compile().as_text()
  types = _all_reduce_types(hlo)
  assert len(types) >= 40, types  # every parameter's gradient among them
  assert not [t for t in types if "bf16" in t], types
