"""Before/after for a trained workdir: the checkpoint's completions vs the
masked input itself (holes left at mid-grey, what the network is fed).

  python scripts/eval_vs_masked_input.py --workdir=runs/demo

Both are scored by the same evaluation (glcic_jax.evaluate) on the config's
held-out source with its fixed per-image holes, and printed as a table.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from absl import app, flags

from glcic_jax import checkpointing, evaluate, models, sharding

flags.DEFINE_string("workdir", None, "Trained workdir.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_integer(
  "seeds", 8, "Evaluate with this many seeds (another crop and hole each)."
)
FLAGS = flags.FLAGS


class MidGrey(nn.Module):
  """A 'generator' that leaves the hole at 0 in [-1, 1] (pixel 127.5)."""

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    return jnp.zeros(x.shape[:-1] + (3,), jnp.float32)


def main(argv):
  del argv
  g_vars, config, step = checkpointing.restore_generator(
    FLAGS.workdir, FLAGS.step
  )
  mesh = sharding.create_mesh()
  generator, _ = models.build_models(
    config.model, batch_per_device=config.per_device_batch_size
  )
  candidates = {
    "masked input (mid-grey hole)": (MidGrey(), {}),
    f"completion, step {step}": (generator, g_vars),
  }
  print(f"{'':32s} {'l1 error':>9s} {'PSNR':>8s} {'SSIM':>7s} crops")
  for name, (model, variables) in candidates.items():
    results = []
    for seed in range(FLAGS.seeds):  # another crop and hole per seed
      config.seed = seed
      results.append(evaluate.evaluate(model, variables, config, mesh))
    n = sum(r.num_images for r in results)
    mean = {
      k: sum(getattr(r, k) * r.num_images for r in results) / n
      for k in ("l1_error", "psnr", "ssim")
    }
    print(
      f"{name:32s} {mean['l1_error']:9.3f} {mean['psnr']:8.3f}"
      f" {mean['ssim']:7.4f} {n}"
    )


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
