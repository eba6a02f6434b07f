"""The fields every glcic-jax config has, with mmagic's Global&Local values.

Config files under `configs/` call `get_base_config()` and override what
differs, as the Flax examples' variant configs import `default.py`. Keeping
the base inside the package lets those files import it without path
tricks. `from_saved` reads the config a checkpoint recorded, including
those written before the `holes` section existed.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from glcic_jax.data.holes import HoleSpec

# Activation and conv precisions (params, Adam and BatchNorm statistics stay
# float32): see train_steps.compute_dtype.
COMPUTE_DTYPES = ("float32", "bfloat16")
# Fields of the training data section that evaluation has no use for.
_TRAIN_ONLY_DATA_FIELDS = (
  "shuffle",
  "shuffle_buffer",
  "max_consecutive_unreadable",
  "deterministic",
  "input_timeout_s",
)
_HOLE_FIELDS = ("max_bbox_shape", "max_bbox_delta", "min_margin")


def get_model_config() -> ml_collections.ConfigDict:
  """Network shapes. Defaults are the paper's / mmagic's base_gl.py."""
  m = ml_collections.ConfigDict()
  m.generator_channels = 64  # enc1 width; the rest scale with it
  m.disc_base_channels = 64  # conv i of a discriminator: min(base*2^i, max)
  m.disc_max_channels = 512
  m.global_num_convs = 6  # 256 -> 4x4
  m.local_num_convs = 5  # 128 -> 4x4
  m.disc_fc_features = 1024  # each discriminator's fc output
  return m


def get_holes_config() -> ml_collections.ConfigDict:
  """mmagic's random_bbox, for training and evaluation alike: holes of
  max_bbox_shape - U{0 .. max_bbox_delta // 2} a side, at least
  min_margin from the border (`data.holes.HoleSpec` holds the defaults)."""
  spec = HoleSpec()
  h = ml_collections.ConfigDict()
  h.max_bbox_shape = spec.max_bbox_shape[0]
  h.max_bbox_delta = spec.max_bbox_delta[0]
  h.min_margin = spec.min_margin[0]
  return h


def get_eval_data_config() -> ml_collections.ConfigDict:
  """An image source and mmagic's per-example crop."""
  d = ml_collections.ConfigDict()
  # One of 'tfds', 'image_list', 'folder', 'skimage', or (training only)
  # 'synthetic': random images made on the devices, no TensorFlow.
  d.source = "skimage"
  d.tfds_name = ""  # e.g. 'places365_small', 'celeb_a_hq/256'
  d.tfds_split = "train"
  d.tfds_data_dir = ""  # '' = TFDS default
  d.tfds_download = False  # never download at run time unless asked
  d.tfds_image_key = "image"  # the feature holding the encoded image
  d.image_list = ""  # mmagic-style text file of paths relative to data_root
  d.data_root = ""  # root for image_list, or the folder for 'folder'
  d.skimage_split = "heldout"  # 'train', 'heldout' or 'all' of the demo photos
  d.crop_size = 384  # random crop (min(crop, side)) before the resize
  # Decode only the crop of a JPEG (less CPU per image,
  # scripts/benchmark_input.py); on chroma-subsampled files pixels at the
  # crop's border can differ by a level or two from decode-then-crop.
  d.jpeg_crop_decode = True
  # > 0: decode each file of a file source once, at start-up, and crop the
  # examples from memory (at most this many MiB of pixels, else an error).
  # For small sources, where decoding would cost more CPU than the step.
  d.decoded_cache_mib = 0
  # Files whose header declares more pixels are skipped and counted like
  # unreadable ones, before decoding: a 400 KB PNG can declare 20000x20000
  # and take GiBs per decoding thread. Pillow's limit; 0 = none.
  d.max_image_pixels = 89_478_485
  d.num_parallel_calls = -1  # -1 = tf.data.AUTOTUNE
  d.prefetch = 2
  return d


def get_data_config() -> ml_collections.ConfigDict:
  """The training source: the evaluation fields, shuffling and the
  handling of unreadable images."""
  d = get_eval_data_config()
  d.skimage_split = "train"
  d.shuffle = True  # mmagic's GL configs train unshuffled; we shuffle
  d.shuffle_buffer = 10_000  # TFDS only; file sources shuffle fully
  # An unreadable image is replaced by the next one in source order; more
  # than this many in a row stops training with an error naming the file.
  d.max_consecutive_unreadable = 4
  d.deterministic = True  # tf.data determinism (exact resume, reproducible)
  # Seconds without a batch before training stops with an error naming what
  # the stalled batch reads (a FIFO, a hung mount); 0 = wait for ever.
  d.input_timeout_s = 600
  return d


def get_base_config() -> ml_collections.ConfigDict:
  """Global&Local at 256x256 as mmagic trains it (gl_8xb12_*)."""
  config = ml_collections.ConfigDict()
  config.name = "gl_base"
  config.seed = 0
  config.image_size = 256  # square training crops, divisible by 4
  config.local_size = 128  # the local discriminator's patch
  config.per_device_batch_size = 12  # mmagic: 8 GPUs x 12
  # The global batch the reference numbers were trained with; the log warns
  # when a reference config runs with another.
  config.reference_global_batch_size = 96
  config.total_steps = 500_000
  config.compute_dtype = "float32"  # or 'bfloat16' (params stay float32)

  config.model = get_model_config()
  config.holes = get_holes_config()
  config.data = get_data_config()
  config.eval_data = get_eval_data_config()

  # Adam for both networks (mmagic: lr 4e-4, PyTorch defaults otherwise).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 4e-4
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8

  # GLInpaintor train_cfg: cur_iter = start_iter + step.
  config.schedule = ml_collections.ConfigDict()
  config.schedule.iter_tc = 90_000  # cur_iter <= iter_tc: G with L1 only
  config.schedule.iter_td = 100_000  # then D only until cur_iter > iter_td
  config.schedule.start_iter = 0
  config.schedule.disc_step = 1

  config.loss = ml_collections.ConfigDict()
  config.loss.l1_hole_weight = 1.0
  config.loss.gan_weight = 0.001

  config.checkpoint_every = 10_000
  config.keep_checkpoints = 3
  config.log_every = 100
  config.image_every = 5_000
  config.eval_every = 50_000
  config.eval_num_batches = -1  # -1 = the whole eval source
  # Global batches on their way to the devices ahead of the step.
  config.device_prefetch = 2
  # (first step, count): a jax.profiler trace of those steps under the
  # workdir, for TensorBoard's profile plugin; count 0 = no trace.
  config.profile_steps = (0, 0)
  return config


def from_saved(saved: dict[str, Any]) -> ml_collections.ConfigDict:
  """The config a checkpoint recorded (`config.to_dict()`), in today's
  layout: checkpoints written before the `holes` section kept the hole
  fields in `data` and `eval_data`, and the training-only fields in
  `eval_data` too; settings added since take their defaults."""
  saved = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
  if "holes" not in saved and "data" in saved:
    saved["holes"] = {k: saved["data"][k] for k in _HOLE_FIELDS}
    for section in ("data", "eval_data"):
      for k in _HOLE_FIELDS:
        saved.get(section, {}).pop(k, None)
  for k in _TRAIN_ONLY_DATA_FIELDS:
    saved.get("eval_data", {}).pop(k, None)
  # Settings added later (device_prefetch, data.max_image_pixels, ...)
  # take their defaults.
  for k, v in get_base_config().items():
    if isinstance(v, ml_collections.ConfigDict):
      section = saved.setdefault(k, {})
      for field, default in v.items():
        if k != "eval_data" or field not in _TRAIN_ONLY_DATA_FIELDS:
          section.setdefault(field, default)
    else:
      saved.setdefault(k, v)
      if isinstance(v, tuple):  # JSON keeps tuples as lists
        saved[k] = tuple(saved[k])
  return ml_collections.ConfigDict(saved)


# Lower bounds of the integer (and a few float) fields, by dotted name; -1
# where that value means "automatic" or "all" is allowed separately.
_AT_LEAST = {
  "seed": 0,
  "per_device_batch_size": 1,
  "reference_global_batch_size": 0,
  "total_steps": 1,
  "checkpoint_every": 1,
  "keep_checkpoints": 1,
  "log_every": 1,
  "image_every": 0,
  "eval_every": 0,
  "device_prefetch": 1,
  "schedule.iter_tc": -1,
  "schedule.iter_td": -1,
  "schedule.start_iter": 0,
  "schedule.disc_step": 1,
  "model.generator_channels": 1,
  "model.disc_base_channels": 1,
  "model.disc_max_channels": 1,
  "model.disc_fc_features": 1,
  "holes.max_bbox_shape": 1,
  "holes.max_bbox_delta": 0,
  "holes.min_margin": 0,
  "loss.l1_hole_weight": 0,
  "loss.gan_weight": 0,
  "optimizer.b1": 0,
  "optimizer.b2": 0,
}
_POSITIVE = ("optimizer.learning_rate", "optimizer.eps")
_DATA_AT_LEAST = {
  "crop_size": 1,
  "decoded_cache_mib": 0,
  "max_image_pixels": 0,
  "prefetch": -1,
  "shuffle_buffer": 1,
  "max_consecutive_unreadable": 0,
  "input_timeout_s": 0,
}
# The field a file source cannot do without.
_SOURCE_FIELDS = {
  "folder": "data_root",
  "image_list": "image_list",
  "tfds": "tfds_name",
}


def get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
  """config.a.b for dotted "a.b"."""
  for part in dotted.split("."):
    config = config[part]
  return config


def _data_problems(data: ml_collections.ConfigDict, section: str) -> list:
  problems = []
  for name, low in _DATA_AT_LEAST.items():
    if name in data and data[name] < low:
      problems.append(f"{section}.{name}={data[name]} must be >= {low}")
  if data.num_parallel_calls == 0 or data.num_parallel_calls < -1:
    problems.append(
      f"{section}.num_parallel_calls={data.num_parallel_calls} must be -1 "
      "(automatic) or >= 1"
    )
  sources = ("tfds", "image_list", "folder", "skimage")
  if section == "data":
    sources += ("synthetic",)
  if data.source not in sources:
    problems.append(
      f"{section}.source={data.source!r} must be one of {list(sources)}"
    )
  needed = _SOURCE_FIELDS.get(data.source)
  if needed and not data[needed]:
    problems.append(
      f"{section}.{needed} is empty: source {data.source!r} needs it"
    )
  return problems


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming every field whose value cannot work, before a
  workdir is created or anything compiled."""
  problems = []
  if config.image_size < 4 or config.image_size % 4:
    problems.append(
      f"image_size={config.image_size} must be a positive multiple of 4"
    )
  if not 0 < config.local_size <= config.image_size:
    problems.append(
      f"local_size={config.local_size} must be in (0, image_size]"
    )
  for name, low in _AT_LEAST.items():
    if get_field(config, name) < low:
      problems.append(f"{name}={get_field(config, name)} must be >= {low}")
  for name in _POSITIVE:
    if not get_field(config, name) > 0:
      problems.append(f"{name}={get_field(config, name)} must be > 0")
  for name in ("optimizer.b1", "optimizer.b2"):
    if not get_field(config, name) < 1:
      problems.append(f"{name}={get_field(config, name)} must be < 1")
  if config.eval_num_batches == 0 or config.eval_num_batches < -1:
    problems.append(
      f"eval_num_batches={config.eval_num_batches} must be -1 (all) or >= 1"
    )
  if config.compute_dtype not in COMPUTE_DTYPES:
    problems.append(
      f"compute_dtype={config.compute_dtype!r} must be one of "
      f"{list(COMPUTE_DTYPES)}"
    )
  profile = tuple(config.profile_steps)
  if len(profile) != 2 or any(int(x) != x or x < 0 for x in profile):
    problems.append(
      f"profile_steps={profile} must be (first step, count), both >= 0"
    )
  m = config.model
  for name, convs in (
    ("global_num_convs", m.global_num_convs),
    ("local_num_convs", m.local_num_convs),
  ):
    size = config.image_size if name.startswith("global") else config.local_size
    if convs < 1 or size % 2**convs:
      problems.append(
        f"model.{name}={convs}: the input side {size} must be divisible by"
        f" 2**{convs}"
      )
  problems += _data_problems(config.data, "data")
  problems += _data_problems(config.eval_data, "eval_data")
  if problems:
    raise ValueError("invalid config: " + "; ".join(problems))
