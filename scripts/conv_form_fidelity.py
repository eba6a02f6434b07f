"""How accurate the CPU conv forms are, against float64, beside native float32.

  python scripts/conv_form_fidelity.py [--draws=9] [--channels=16]
      [--image_size=64] [--batch=8] [--json=out.json]

Two tables:

- Per layer: each CPU form (`glcic_jax.cpu`) and XLA's native convolution,
  both in float32, against the native convolution in float64 on the same
  post-ReLU input: relative L2 error of the output and of both gradients,
  and each form's ratio to native.
- The generator: the weight gradients of the demo generator (real photos
  from scikit-image, square holes, mmagic's hole L1 loss, BatchNorm in
  training mode) in float32, natively and with the CPU forms, against
  float64. One draw is one initialisation and one set of holes.

Why draws and medians: the whole generator's gradient error is ruled by
which ReLU, clip and |.| kinks rounding flips, not by each conv's rounding.
The mmagic hole loss is a sum of signs that mostly cancel, so one flipped
kink moves the gradient by ~1e-3 of its norm: one draw can show either
form 30x better than the other (a form as accurate as float64 still shows
what native float32's flips cost). The median over draws is what a form's
accuracy changes; a less accurate form flips more kinks in every draw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)  # the float64 references

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glcic_jax import config as config_lib  # noqa: E402
from glcic_jax import layers, models, train_steps  # noqa: E402
from glcic_jax.cpu import conv as cpu_conv  # noqa: E402
from glcic_jax.cpu import subpixel, winograd  # noqa: E402

PHOTOS = (
  "astronaut",
  "coffee",
  "chelsea",
  "rocket",
  "immunohistochemistry",
  "hubble_deep_field",
  "retina",
  "cat",
)


def relative_error(got: jax.Array, want: jax.Array) -> float:
  got = jnp.asarray(got, jnp.float64)
  return float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))


def _tree_error(got, want) -> float:
  pairs = zip(jax.tree.leaves(got), jax.tree.leaves(want))
  num = sum(float(jnp.sum((jnp.float64(a) - b) ** 2)) for a, b in pairs)
  return (num / sum(float(jnp.sum(b**2)) for b in jax.tree.leaves(want))) ** 0.5


# (name, the form, the native function it computes, x shape, kernel shape):
# the shapes of the demo generator's layers that take each form.
def _layer_cases():
  native3 = lambda d: lambda x, k: layers.conv2d(x, k, 1, d)  # noqa: E731
  return [
    (
      "winograd 32x32 32->32",
      lambda x, k: winograd.winograd_conv3x3(x, k, 1),
      native3(1),
      (8, 32, 32, 32),
      (3, 3, 32, 32),
    ),
    (
      "winograd 16x16 64->64",
      lambda x, k: winograd.winograd_conv3x3(x, k, 1),
      native3(1),
      (8, 16, 16, 64),
      (3, 3, 64, 64),
    ),
    (
      "winograd 16x16 64->64 d4",
      lambda x, k: winograd.winograd_conv3x3(x, k, 4),
      native3(4),
      (8, 16, 16, 64),
      (3, 3, 64, 64),
    ),
    (
      "rows 16x16 64->64 d2",
      lambda x, k: cpu_conv._row_conv(x, k, 2, 2),
      native3(2),
      (2, 16, 16, 64),
      (3, 3, 64, 64),
    ),
    (
      "sub-grids 16x16 64->64 d8",
      lambda x, k: cpu_conv._small_subgrid_conv(x, k, 8),
      native3(8),
      (8, 16, 16, 64),
      (3, 3, 64, 64),
    ),
    (
      "im2col 32x32 32->64 s2",
      lambda x, k: cpu_conv._im2col_conv(x, k, 2, 1, 1),
      lambda x, k: layers.conv2d(x, k, 2, 1),
      (8, 32, 32, 32),
      (3, 3, 32, 64),
    ),
    (
      "sub-pixel 16x16 64->32 (transposed)",
      subpixel._subpixel_matmul,
      layers.conv_transpose2d,
      (8, 16, 16, 64),
      (4, 4, 32, 64),
    ),
  ]


def _outputs(fn, x, k, weights, dtype):
  """fn(x, k) and the gradients of sum(fn(x, k) * weights), in dtype."""

  def loss(a, b):
    return jnp.sum(fn(a, b) * weights.astype(dtype))

  args = (x.astype(dtype), k.astype(dtype))
  return (jax.jit(fn)(*args), *jax.jit(jax.grad(loss, argnums=(0, 1)))(*args))


def layer_table(seed: int = 0) -> list[dict]:
  """Per form: output, input-gradient and kernel-gradient errors, and
  native float32's on the same input."""
  rng = np.random.default_rng(seed)
  rows = []
  for name, form, native, x_shape, k_shape in _layer_cases():
    x = np.maximum(rng.standard_normal(x_shape), 0.0)  # post-ReLU
    k = rng.standard_normal(k_shape) * np.sqrt(2 / np.prod(k_shape[1:]))
    weights = rng.standard_normal(np.shape(native(x, k)))

    ref = _outputs(native, x, k, weights, jnp.float64)
    row = {"layer": name}
    for label, fn in (("form", form), ("native", native)):
      got = _outputs(fn, x, k, weights, jnp.float32)
      for what, a, b in zip(("y", "dx", "dk"), got, ref):
        row[f"{label}_{what}"] = relative_error(a, b)
    rows.append(row)
  return rows


def _photos(size: int, batch: int) -> np.ndarray:
  import skimage.data
  import skimage.transform

  images = []
  for name in (PHOTOS * batch)[:batch]:
    a = getattr(skimage.data, name)()[..., :3]
    side = min(a.shape[:2])
    a = skimage.transform.resize(
      a[:side, :side], (size, size), anti_aliasing=True
    )
    images.append(a * 2.0 - 1.0)
  return np.stack(images)


def generator_errors(channels: int, size: int, batch: int, draws: int) -> dict:
  """Relative L2 errors of the generator's weight gradients per draw, for
  native float32 and the CPU forms, against native float64."""
  model_config = config_lib.get_base_config().model
  model_config.generator_channels = channels
  photos = _photos(size, batch)

  def gradient_fn(dtype, forms):
    generator, _ = models.build_models(
      model_config, dtype, conv_forms=forms, batch_per_device=batch
    )

    def loss(params, stats, gt, mask):
      params = jax.tree.map(lambda a: a.astype(dtype), params)
      gt, mask = gt.astype(dtype), mask.astype(dtype)
      out, _ = generator.apply(
        {"params": params, "batch_stats": stats},
        models.network_input(gt, mask),
        train=True,
        mutable=["batch_stats"],
      )
      return train_steps.l1_hole_loss(out, gt, mask)

    return generator, jax.jit(jax.grad(loss))

  generator, reference = gradient_fn(jnp.float64, "native")
  forms = {"native": gradient_fn(jnp.float32, "native")[1]}
  forms["cpu"] = gradient_fn(jnp.float32, "cpu")[1]
  errors = {name: [] for name in forms}
  for draw in range(draws):
    rng = np.random.default_rng(draw)
    mask = np.zeros((batch, size, size, 1))
    side = size // 2
    for m in mask:
      top, left = rng.integers(size // 8, size - side - size // 8, 2)
      m[top : top + side, left : left + side] = 1.0
    variables = generator.init(
      jax.random.key(draw), jnp.zeros((1, size, size, 4)), train=False
    )
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)
    args = (
      variables["params"],
      variables["batch_stats"],
      jnp.asarray(photos[rng.permutation(batch)]),
      jnp.asarray(mask),
    )
    want = reference(*args)
    for name, fn in forms.items():
      errors[name].append(_tree_error(fn(*args), want))
  cpu_dots = str(jax.make_jaxpr(forms["cpu"])(*args))
  return {
    "errors": errors,
    "median": {k: float(np.median(v)) for k, v in errors.items()},
    "mean": {k: float(np.mean(v)) for k, v in errors.items()},
    # Winograd's 36 tile-position matmuls are the only batched dots.
    "winograd_in_cpu_forms": "(([2], [1]), ([0], [0]))" in cpu_dots,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--draws", type=int, default=9)
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=64)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--skip_layers", action="store_true")
  parser.add_argument("--json", help="Also write the results here.")
  args = parser.parse_args()
  result = {}
  if not args.skip_layers:
    result["layers"] = layer_table()
    print(
      "| layer | form y | dx | dk | native y | dx | dk | ratio y | dx | dk |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["layers"]:
      ratios = [r[f"form_{w}"] / r[f"native_{w}"] for w in ("y", "dx", "dk")]
      cells = [
        f"{r[f'{s}_{w}']:.1e}"
        for s in ("form", "native")
        for w in "y dx dk".split()
      ]
      print(
        f"| {r['layer']} | "
        + " | ".join(cells + [f"{q:.2f}" for q in ratios])
        + " |"
      )
  gen = generator_errors(args.channels, args.image_size, args.batch, args.draws)
  result["generator"] = gen
  print(
    f"\nGenerator weight gradients against float64 ({args.draws} draws, "
    f"{args.channels} channels, {args.image_size} px, batch {args.batch}; "
    f"Winograd in the CPU forms: {gen['winograd_in_cpu_forms']}):"
  )
  print("| float32 | median | mean | min | max |")
  print("|---|---|---|---|---|")
  for name, errs in gen["errors"].items():
    print(
      f"| {name} | {np.median(errs):.2e} | {np.mean(errs):.2e} | "
      f"{np.min(errs):.2e} | {np.max(errs):.2e} |"
    )
  ratio = gen["median"]["cpu"] / gen["median"]["native"]
  print(f"CPU forms / native, median: {ratio:.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
