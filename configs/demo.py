"""The README's main job: Global&Local on the photos inside scikit-image.

  glcic-train --config=configs/demo.py --workdir=runs/demo

Needs no download: trains on the 15 training photos of `skimage.data`
(chelsea and coffee are held out for evaluation) on a 2-core CPU in a few
minutes (the README gives the time measured), through all three phases:
1,800 generator-only steps, 100 discriminator-only steps, 500 joint steps.
A narrower model (generator width 16 instead of 64, discriminators 16-64
channels) at 64x64 with 32x32 local patches and 28-32 px holes, 8 images
a step.

Expected result: `runs/demo/completions.png` (gt | masked input |
completion on held-out crops) shows holes filled with the surrounding
colours and coarse structure instead of grey, and the final evaluation
(`runs/demo/eval/`) reports a much lower hole l1 error and a higher PSNR
than the masked input itself (see the README for the numbers measured).
"""

from glcic_jax import config as config_lib


def get_config():
  config = config_lib.get_base_config()
  config.name = "demo"
  config.image_size = 64
  config.local_size = 32
  config.per_device_batch_size = 8
  config.reference_global_batch_size = 0  # not a reference config
  config.total_steps = 2_400
  config.model.generator_channels = 16
  config.model.disc_base_channels = 16
  config.model.disc_max_channels = 64
  config.model.global_num_convs = 4  # 64 -> 4
  config.model.local_num_convs = 3  # 32 -> 4
  config.model.disc_fc_features = 128
  config.holes.max_bbox_shape = 32
  config.holes.max_bbox_delta = 8
  config.holes.min_margin = 6
  config.data.crop_size = config.eval_data.crop_size = 256
  # The 17 photos decode to 19 MiB; decoding PNGs per example would take
  # the 2 cores from the step (docs/performance.md).
  config.data.decoded_cache_mib = config.eval_data.decoded_cache_mib = 256
  config.schedule.iter_tc = 1_799  # steps 0..1799: generator only
  config.schedule.iter_td = 1_899  # steps 1800..1899: discriminator only
  config.checkpoint_every = 600
  config.keep_checkpoints = 2
  config.log_every = 50
  config.image_every = 600
  config.eval_every = 600
  return config
