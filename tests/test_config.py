"""The configs: one holes section for training and evaluation, an eval data
section without training-only fields, variants that state only what
differs from mmagic's base, and workdirs saved in the older layout."""

from __future__ import annotations

import re

import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from glcic_jax import checkpointing, evaluate
from glcic_jax import config as config_lib
from glcic_jax.data import holes
from tests.inpaint.test_completer import tiny_state
from tests.test_train_steps import load_config


def _differences(config) -> set[str]:
  base = traverse_util.flatten_dict(config_lib.get_base_config().to_dict())
  ours = traverse_util.flatten_dict(config.to_dict())
  assert set(ours) == set(base)  # no field added or lost
  return {".".join(k) for k in ours if ours[k] != base[k]}


def test_sections_and_defaults():
  config = config_lib.get_base_config()
  spec = holes.HoleSpec.from_config(config)
  assert spec == holes.HoleSpec()  # mmagic's random_bbox at 256x256
  assert "shuffle" in config.data and "shuffle" not in config.eval_data
  for field in ("max_bbox_shape", "max_consecutive_unreadable"):
    assert field not in config.eval_data


def test_paper_variants_state_only_what_differs_from_the_base():
  sources = {
    f"{section}.{field}"
    for section in ("data", "eval_data")
    for field in ("source", "data_root", "image_list")
  }
  assert _differences(load_config("gl_places")) == {
    "name",
    "total_steps",
    "checkpoint_every",
    *sources,
  }
  assert _differences(load_config("gl_celeba")) == {
    "name",
    "total_steps",
    "checkpoint_every",
    "schedule.iter_tc",
    "schedule.iter_td",
    *sources,
  }


def _old_layout(config: ml_collections.ConfigDict) -> dict:
  """`config` as checkpoints recorded it before the holes section: hole
  fields and the training-only fields in both data sections."""
  old = config.to_dict()
  hole_fields = old.pop("holes")
  for section in ("data", "eval_data"):
    old[section].update(hole_fields)
  old["eval_data"].update(
    shuffle=False,
    shuffle_buffer=10_000,
    max_consecutive_unreadable=4,
    deterministic=True,
  )
  return old


def test_old_workdir_reads_and_evaluates_as_a_new_one(tmp_path):
  config, state = tiny_state()
  old = _old_layout(config)
  assert config_lib.from_saved(old).to_dict() == config.to_dict()
  new_dir, old_dir = str(tmp_path / "new"), str(tmp_path / "old")
  for workdir, saved in ((new_dir, config), (old_dir, old)):
    with checkpointing.Checkpointer(workdir, save_every=1, keep=1) as ckpt:
      ckpt.save(state.replace(step=np.int32(3)), _Recorded(saved), force=True)
  assert checkpointing.load_config(old_dir).to_dict() == config.to_dict()
  got, want = (evaluate.evaluate_checkpoint(w) for w in (old_dir, new_dir))
  for key in ("l1_error", "psnr", "ssim", "num_images"):
    assert got[key] == want[key]


class _Recorded:
  """What `Checkpointer.save` records of a config: its `to_dict()`."""

  def __init__(self, config):
    self._dict = config if isinstance(config, dict) else config.to_dict()

  def to_dict(self) -> dict:
    return self._dict


@pytest.mark.parametrize(
  ("field", "value", "message"),
  [
    ("log_every", 0, "log_every=0 must be >= 1"),
    ("keep_checkpoints", 0, "keep_checkpoints=0 must be >= 1"),
    ("eval_every", -1, "eval_every=-1 must be >= 0"),
    ("eval_num_batches", 0, "eval_num_batches=0 must be -1 (all) or >= 1"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate=0.0 must be > 0"),
    ("optimizer.b2", 1.0, "optimizer.b2=1.0 must be < 1"),
    ("holes.max_bbox_shape", 0, "holes.max_bbox_shape=0 must be >= 1"),
    ("data.crop_size", 0, "data.crop_size=0 must be >= 1"),
    ("eval_data.max_image_pixels", -5, "eval_data.max_image_pixels=-5"),
    ("data.num_parallel_calls", 0, "data.num_parallel_calls=0 must be -1"),
    ("eval_data.source", "synthetic", "eval_data.source='synthetic'"),
    ("data.source", "folder", "data.data_root is empty: source 'folder'"),
    ("eval_data.source", "image_list", "eval_data.image_list is empty"),
  ],
)
def test_every_bad_field_is_named_before_any_work(field, value, message):
  config = config_lib.get_base_config()
  section, _, name = field.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.check_config(config)


def test_all_problems_are_listed_at_once():
  config = config_lib.get_base_config()
  config.log_every = 0
  config.data.crop_size = 0
  with pytest.raises(ValueError, match="log_every=0.*; data.crop_size=0"):
    config_lib.check_config(config)


def test_saved_configs_get_the_sections_new_fields():
  saved = config_lib.get_base_config().to_dict()
  del saved["data"]["max_image_pixels"], saved["eval_data"]["max_image_pixels"]
  config = config_lib.from_saved(saved)
  assert config.data.max_image_pixels == config.eval_data.max_image_pixels > 0
  assert "shuffle" not in config.eval_data
