"""Tiny Global&Local for tests: every code path, seconds on a CPU.

  glcic-train --config=configs/tiny.py --workdir=/tmp/tiny

32x32 images, 16x16 local patches, widths of 8-16 channels, the three
phases in 8 steps (G-only steps 0-2, D-only 3-4, joint from 5). Expect a
few seconds per phase to compile and no meaningful completions.
"""

from glcic_jax import config as config_lib


def get_config():
  config = config_lib.get_base_config()
  config.name = "tiny"
  config.image_size = 32
  config.local_size = 16
  config.per_device_batch_size = 2
  config.reference_global_batch_size = 0  # not a reference config
  config.total_steps = 8
  config.model.generator_channels = 8
  config.model.disc_base_channels = 8
  config.model.disc_max_channels = 16
  config.model.global_num_convs = 3  # 32 -> 4
  config.model.local_num_convs = 2  # 16 -> 4
  config.model.disc_fc_features = 16
  config.holes.max_bbox_shape = 12
  config.holes.max_bbox_delta = 4
  config.holes.min_margin = 4
  config.data.crop_size = config.eval_data.crop_size = 64
  config.data.shuffle_buffer = 64
  config.schedule.iter_tc = 2
  config.schedule.iter_td = 4
  config.checkpoint_every = 4
  config.keep_checkpoints = 2
  config.log_every = 2
  config.image_every = 4
  config.eval_every = 8
  config.eval_num_batches = 1
  return config
