"""Global&Local on Places365-Challenge, mmagic's gl_8xb12_places-256x256.

  glcic-train --config=configs/gl_places.py --workdir=/ckpt/gl_places \\
      --config.data.data_root=/data/places/data_large \\
      --config.data.image_list=/data/places/meta/places365_train_challenge.txt \\
      --config.eval_data.data_root=/data/places/val_large \\
      --config.eval_data.image_list=/data/places/meta/places365_val.txt

Expected: on 8 GPUs x 12 images (global batch 96) mmagic reports, after
500k iterations on Places365-val, l1 error 11.164, PSNR 23.152, SSIM 0.862
(square bbox holes, no Poisson blending). Run time depends on the hardware:
see docs/performance.md for images/s, e.g. 500k steps x 96 images.

mmagic's file sets train_cfg.start_iter=350000. Its cur_iter then starts
past iter_td=100000, so a fresh run with that file skips the G-only and
D-only phases and trains adversarially from the first step (the setting of
a resumed run). We start at 0, the paper's schedule (90k G-only, 10k
D-only, then joint); `--config.schedule.start_iter=350000` reproduces the
shipped file exactly. mmagic also trains on the unshuffled list
(sampler shuffle=False); we shuffle (`--config.data.shuffle=False` for
theirs).

TFDS instead of the image lists (Places365-Standard at 256x256; not the
Challenge set, so not the reference row exactly):
  --config.data.source=tfds --config.data.tfds_name=places365_small
  --config.eval_data.source=tfds --config.eval_data.tfds_name=places365_small
  --config.eval_data.tfds_split=validation
"""

from glcic_jax import config as config_lib


def get_config():
  # Everything else is the base config: mmagic's networks, batch, Adam,
  # losses, schedule (start_iter 0: see the docstring) and intervals.
  config = config_lib.get_base_config()
  config.name = "gl_8xb12_places-256x256"
  config.total_steps = 500_002  # mmagic's max_iters
  config.data.source = config.eval_data.source = "image_list"
  config.data.data_root = "data/places/data_large"
  config.data.image_list = "data/places/meta/places365_train_challenge.txt"
  config.eval_data.data_root = "data/places/val_large"
  config.eval_data.image_list = "data/places/meta/places365_val.txt"
  config.checkpoint_every = 50_000  # mmagic's CheckpointHook interval
  return config
