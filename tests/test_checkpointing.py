"""Checkpointing with real orbax on tmp_path: round trips, pruning, recovery.

The states are real `GANState`s of the tiny config whose every leaf is
filled with distinct random values (a fresh init has all-zero Adam moments,
which would make a round trip that drops them look correct).
"""

from __future__ import annotations

import json
import logging
import os
import re

import jax
import numpy as np
import pytest

from glcic_jax import checkpointing, sharding, train_state
from glcic_jax import config as config_lib


def tiny_config():
  c = config_lib.get_base_config()
  c.image_size = 32
  c.local_size = 16
  c.model.generator_channels = 4
  c.model.disc_base_channels = 4
  c.model.disc_max_channels = 8
  c.model.global_num_convs = 3
  c.model.local_num_convs = 2
  c.model.disc_fc_features = 8
  return c


@pytest.fixture(scope="module")
def config():
  return tiny_config()


@pytest.fixture(scope="module")
def abstract(config):
  return train_state.abstract_state(config)


def random_state(
  abstract: train_state.GANState, step: int, seed: int = 0, mesh=None
) -> train_state.GANState:
  """A GANState of `abstract`'s structure with random values in every leaf."""
  rs = np.random.RandomState(seed)

  def fill(x):
    if np.issubdtype(x.dtype, np.floating):
      value = rs.standard_normal(x.shape).astype(x.dtype)
    else:
      value = rs.randint(1, 2**31 - 1, x.shape).astype(x.dtype)
    return value

  state = jax.tree.map(fill, abstract).replace(step=np.int32(step))
  target = (
    sharding.replicated(mesh)
    if mesh is not None
    else jax.sharding.SingleDeviceSharding(jax.devices()[0])
  )
  return jax.device_put(state, target)


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def make(workdir, *, save_every=1, keep=3, async_save=True):
  return checkpointing.Checkpointer(
    workdir, save_every=save_every, keep=keep, async_save=async_save
  )


def save_steps(workdir, abstract, config, steps, *, keep=3):
  with make(workdir, keep=keep) as ckpt:
    for s in steps:
      assert ckpt.save(random_state(abstract, s, seed=s), config)


def test_round_trip_replicated_on_8_device_mesh(tmp_path, config):
  mesh = sharding.create_mesh()
  assert mesh.devices.size == 8
  abstract = train_state.abstract_state(config, mesh)
  state = random_state(abstract, step=7, mesh=mesh)
  expected = jax.device_get(state)
  assert expected.rng.dtype == np.uint32 and expected.rng.shape == (2,)

  with make(tmp_path / "w", save_every=7, async_save=True) as ckpt:
    assert ckpt.save(state, config, meta={"data_position": 7})
    # Async save must have copied the arrays off the devices already: the
    # train loop donates the state to the next step right after saving.
    jax.tree.map(lambda x: x.delete(), state)

  with make(tmp_path / "w") as ckpt:
    assert ckpt.all_steps() == [7]
    restored, meta = ckpt.restore(abstract)

  assert_trees_equal(jax.device_get(restored), expected)
  assert restored.g_tx is abstract.g_tx and restored.d_tx is abstract.d_tx
  want = sharding.replicated(mesh)
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding == want, leaf.sharding
  assert meta["step"] == 7 and meta["data_position"] == 7


def test_keep_newest_and_save_every(tmp_path, abstract, config):
  with make(tmp_path, save_every=2, keep=2, async_save=False) as ckpt:
    saved = [
      ckpt.save(random_state(abstract, s, seed=s), config) for s in range(1, 11)
    ]
    assert saved == [s % 2 == 0 for s in range(1, 11)]
    assert ckpt.all_steps() == [8, 10]
    # Off-interval, only when forced.
    assert not ckpt.save(random_state(abstract, 11), config)
    assert ckpt.save(random_state(abstract, 11), config, force=True)
    assert ckpt.all_steps() == [10, 11]
  assert sorted(os.listdir(tmp_path)) == ["10", "11"]
  assert checkpointing.existing_steps(tmp_path) == [10, 11]


def test_never_overwrites_an_existing_or_later_step(tmp_path, abstract, config):
  save_steps(tmp_path, abstract, config, [4])
  with make(tmp_path) as ckpt:
    assert not ckpt.save(random_state(abstract, 4, seed=99), config, force=True)
    assert not ckpt.save(random_state(abstract, 3, seed=99), config, force=True)
    assert ckpt.all_steps() == [4]
    restored, _ = ckpt.restore(abstract, 4)
  assert_trees_equal(restored, random_state(abstract, 4, seed=4))


def test_config_and_meta_saved_and_loaded(tmp_path, abstract, config):
  meta = {"data_position": 123, "channel_order": "bgr", "imported_from": "x"}
  # Host numpy leaves and a numpy step, as glcic-import builds its state.
  host_state = jax.device_get(random_state(abstract, 5, seed=5))
  host_state = host_state.replace(step=np.int32(5))
  with make(tmp_path) as ckpt:
    assert ckpt.save(host_state, config, meta=meta, force=True)
    other = config.copy_and_resolve_references()
    other.model.disc_fc_features = 16
    ckpt.save(random_state(abstract, 6, seed=6), other, force=True)
    _, got = ckpt.restore(abstract, 5)

  for k, v in meta.items():
    assert got[k] == v
  assert got["step"] == 5 and got["format"] == checkpointing.FORMAT_VERSION
  assert got["glcic_jax_version"]
  assert checkpointing.load_config(tmp_path, 5).to_dict() == config.to_dict()
  latest = checkpointing.load_config(tmp_path)
  assert latest.model.disc_fc_features == 16

  variables, loaded, step = checkpointing.restore_generator(tmp_path, 5)
  assert step == 5 and loaded.to_dict() == config.to_dict()
  expected = random_state(abstract, 5, seed=5).generator_variables()
  assert_trees_equal(variables, expected)


def test_non_json_config_fails_before_writing(tmp_path, abstract, config):
  with make(tmp_path) as ckpt:
    with pytest.raises(TypeError, match="meta is not JSON"):
      ckpt.save(random_state(abstract, 1), config, meta={"x": object()})
    assert ckpt.all_steps() == []


def _truncate_array_file(step_dir):
  data = sorted((step_dir / "state" / "ocdbt.process_0" / "d").iterdir())
  for f in data:
    f.write_bytes(b"")


def _delete_array_file(step_dir):
  data = sorted((step_dir / "state" / "ocdbt.process_0" / "d").iterdir())
  for f in data:
    f.unlink()


def _overwrite_bytes(step_dir):
  """A few bytes changed in the middle of every array file, as a bad disk
  or a broken copy leaves them: tensorstore reads them without an error."""
  for f in (step_dir / "state" / "ocdbt.process_0" / "d").iterdir():
    data = bytearray(f.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(
      b ^ 0x5A for b in data[middle : middle + 4]
    )
    f.write_bytes(bytes(data))


def _half_written(step_dir):
  for f in (step_dir / "state").iterdir():
    if f.is_file():
      f.unlink()


@pytest.mark.parametrize(
  "corrupt",
  [_truncate_array_file, _delete_array_file, _half_written, _overwrite_bytes],
)
def test_corrupt_latest_falls_back_and_training_goes_on(
  tmp_path, abstract, config, caplog, corrupt
):
  save_steps(tmp_path, abstract, config, [1, 2, 3])
  corrupt(tmp_path / "3")

  with caplog.at_level(logging.WARNING), make(tmp_path) as ckpt:
    state, meta = ckpt.restore_latest(abstract)
    assert int(state.step) == 2 and meta["step"] == 2
    assert_trees_equal(state, random_state(abstract, 2, seed=2))
    warnings = [r.getMessage() for r in caplog.records]
    assert any("step 3" in w and "unreadable" in w for w in warnings), warnings
    # Step 3 is moved aside, not deleted; saving step 3 again works.
    assert ckpt.all_steps() == [1, 2]
    assert ckpt.save(random_state(abstract, 3, seed=33), config)
    assert ckpt.all_steps() == [1, 2, 3]
  aside = [p for p in os.listdir(tmp_path) if p.startswith("3.corrupt-")]
  assert len(aside) == 1

  # A fresh manager (orbax's own listing) sees the new step 3, restores it.
  with make(tmp_path) as ckpt:
    state, _ = ckpt.restore_latest(abstract)
  assert_trees_equal(state, random_state(abstract, 3, seed=33))


def test_interrupted_save_leftover_is_ignored_and_replaced(
  tmp_path, abstract, config
):
  save_steps(tmp_path, abstract, config, [1])
  leftover = tmp_path / "2.orbax-checkpoint-tmp"
  (leftover / "state").mkdir(parents=True)
  (leftover / "state" / "junk").write_bytes(b"half")
  with make(tmp_path) as ckpt:
    assert ckpt.all_steps() == [1]
    state, _ = ckpt.restore_latest(abstract)
    assert int(state.step) == 1
    assert ckpt.save(random_state(abstract, 2, seed=2), config)
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]
  with make(tmp_path) as ckpt:
    state, _ = ckpt.restore_latest(abstract)
  assert_trees_equal(state, random_state(abstract, 2, seed=2))


def test_all_corrupt_is_a_clear_error_and_moves_nothing(
  tmp_path, abstract, config
):
  save_steps(tmp_path, abstract, config, [1, 2])
  for step in ("1", "2"):
    _truncate_array_file(tmp_path / step)
  with make(tmp_path) as ckpt:
    with pytest.raises(
      checkpointing.CheckpointError, match=re.escape(str(tmp_path))
    ):
      ckpt.restore_latest(abstract)
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]


def test_wrong_config_restores_nothing_and_moves_nothing(
  tmp_path, abstract, config
):
  save_steps(tmp_path, abstract, config, [1, 2])
  wider = tiny_config()
  wider.model.generator_channels = 8
  other = train_state.abstract_state(wider)
  with make(tmp_path) as ckpt:
    with pytest.raises(checkpointing.CheckpointError, match="None of"):
      ckpt.restore_latest(other)
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]


def test_missing_step_lists_available_steps(tmp_path, abstract, config):
  save_steps(tmp_path, abstract, config, [1, 2])
  with make(tmp_path) as ckpt:
    with pytest.raises(FileNotFoundError, match=r"step 5 .*\[1, 2\]"):
      ckpt.restore(abstract, 5)
  with pytest.raises(FileNotFoundError, match=r"\[1, 2\]"):
    checkpointing.load_config(tmp_path, 5)


def test_empty_or_missing_workdir(tmp_path, abstract):
  missing = tmp_path / "missing"
  with make(missing) as ckpt:
    assert ckpt.restore_latest(abstract) is None
    assert ckpt.all_steps() == []
    with pytest.raises(FileNotFoundError, match="no such directory"):
      ckpt.restore(abstract)
  assert not missing.exists()  # reading never creates the workdir
  assert checkpointing.existing_steps(missing) == []

  for workdir in (tmp_path, missing):
    with pytest.raises(FileNotFoundError, match=re.escape(str(workdir))):
      checkpointing.load_config(workdir)
    with pytest.raises(FileNotFoundError, match=re.escape(str(workdir))):
      checkpointing.restore_generator(workdir)


def test_relative_workdir_saves_and_restores(tmp_path, monkeypatch, config):
  """orbax needs absolute paths; `glcic-train --workdir=runs/demo` is not."""
  monkeypatch.chdir(tmp_path)
  state = jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0)))
  with checkpointing.Checkpointer("runs/x", save_every=1, keep=2) as ckpt:
    assert ckpt.save(state, config, force=True)
  assert checkpointing.existing_steps("runs/x") == [0]
  assert (tmp_path / "runs" / "x" / "0").is_dir()


def test_overwritten_bytes_are_caught_by_the_checksums(
  tmp_path, abstract, config
):
  save_steps(tmp_path, abstract, config, [1])
  _overwrite_bytes(tmp_path / "1")
  with make(tmp_path) as ckpt:
    with pytest.raises(
      checkpointing.CheckpointError, match="step 1 .* damaged: .*checksum"
    ):
      ckpt.restore(abstract, 1)


def test_the_generator_alone_is_verified_too(tmp_path, abstract, config):
  """glcic-eval, -inpaint and -export read only the generator: its arrays
  are checked against the checksums recorded for them."""
  save_steps(tmp_path, abstract, config, [1])
  meta_file = tmp_path / "1" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  name = "g_params/encoder/enc1/conv/kernel"
  meta["checksums"][name] = "0" * 16
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpointing.CheckpointError, match=re.escape(name)):
    checkpointing.restore_generator(tmp_path)


def test_a_non_finite_state_is_refused_at_restore(tmp_path, abstract, config):
  good = random_state(abstract, 1, seed=1)
  params = jax.tree.map(np.array, good.g_params)  # writable copies
  jax.tree.leaves(params)[0].flat[0] = np.nan
  bad = random_state(abstract, 2, seed=2).replace(g_params=params)
  with make(tmp_path) as ckpt:
    assert ckpt.save(good, config) and ckpt.save(bad, config)
  with make(tmp_path) as ckpt:
    with pytest.raises(checkpointing.CheckpointError, match="NaN or inf"):
      ckpt.restore(abstract, 2)
    state, _ = ckpt.restore_latest(abstract)
  assert int(state.step) == 1
