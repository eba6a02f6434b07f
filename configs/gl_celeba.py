"""Global&Local on CelebA-HQ, mmagic's gl_8xb12_celeba-256x256.

  glcic-train --config=configs/gl_celeba.py --workdir=/ckpt/gl_celeba \\
      --config.data.data_root=/data/CelebA-HQ \\
      --config.data.image_list=/data/CelebA-HQ/train_celeba_img_list.txt \\
      --config.eval_data.data_root=/data/CelebA-HQ \\
      --config.eval_data.image_list=/data/CelebA-HQ/val_celeba_img_list.txt

Expected: on 8 GPUs x 12 images mmagic reports, on its CelebA-HQ val list,
l1 error 6.678, PSNR 26.780, SSIM 0.904 (square bbox holes, no Poisson
blending). mmagic's README table says 500k iterations, but the shipped
config stops at max_iters=300002; we follow the config. Schedule: 40k
G-only, 10k D-only, then joint (start_iter 0). mmagic trains on the
unshuffled list; we shuffle (`--config.data.shuffle=False` for theirs).
The validation list mmagic used was not published: bring your own.

TFDS: `--config.data.source=tfds --config.data.tfds_name=celeb_a_hq/256`
(a manual download; train split only, so evaluate on a held-out list).
"""

from glcic_jax import config as config_lib


def get_config():
  # Everything else is the base config: mmagic's networks, batch, Adam,
  # losses and intervals.
  config = config_lib.get_base_config()
  config.name = "gl_8xb12_celeba-256x256"
  config.total_steps = 300_002  # mmagic's max_iters
  config.schedule.iter_tc = 40_000
  config.schedule.iter_td = 50_000
  for data, name in ((config.data, "train"), (config.eval_data, "val")):
    data.source = "image_list"
    data.data_root = "data/CelebA-HQ"
    data.image_list = f"data/CelebA-HQ/{name}_celeba_img_list.txt"
  config.checkpoint_every = 50_000  # mmagic's CheckpointHook interval
  return config
