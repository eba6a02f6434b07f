"""glcic-preview-data: a PNG grid of what the generator is fed.

  glcic-preview-data --config=configs/demo.py --output=grid.png

Each cell is a masked training (or evaluation) input: the hole shows grey,
its box is drawn in red and the local discriminator's box in green.
"""

from __future__ import annotations

from absl import app, flags

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  launch.define_config_flag(flag_values, "Training config file.", sys_argv)
  flags.DEFINE_string("output", "preview.png", "PNG to write.", **fv)
  flags.DEFINE_integer(
    "num_images", 16, "Cells in the grid.", lower_bound=1, **fv
  )
  flags.DEFINE_integer("columns", 4, "Cells per row.", lower_bound=1, **fv)
  flags.DEFINE_enum(
    "split", "train", ["train", "eval"], "Which pipeline to draw.", **fv
  )
  flags.mark_flags_as_required(["config"], **fv)


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from glcic_jax.data import preview

  fv = flag_values
  preview.write_preview(
    fv.config,
    fv.output,
    num_images=fv.num_images,
    columns=fv.columns,
    split=fv.split,
  )


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main, reads_data=True)


if __name__ == "__main__":
  run()
