"""glcic-serve: a local web page and an HTTP API that complete photos.

  glcic-serve --workdir=runs/demo            # or --checkpoint gl.pth|URL
      [--host 127.0.0.1] [--port 8000] [--strategy auto]

Open http://127.0.0.1:8000/ to open or drop a photo, paint the hole with a
brush (size slider, erase, undo/redo), press Complete and download the
result; hold Space to see the original. The API: POST /api/v1/inpaint
(multipart `image`, `mask`: non-zero = hole, optional `strategy`) answers
the completed PNG at the input's size; GET /api/v1/model, GET /healthz,
OpenAPI docs at /docs. Bound to 127.0.0.1 unless --host says otherwise;
uploads over --max_upload_mib or --max_megapixels get 413.
"""

from __future__ import annotations

from absl import app, flags, logging

from glcic_jax.commands import launch


def define_flags(
  flag_values: flags.FlagValues, sys_argv: list[str] | None = None
) -> None:
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "glcic-jax workdir (checkpoints).", **fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).", **fv)
  flags.DEFINE_string(
    "checkpoint", None, "An mmagic .pth/.safetensors file or URL.", **fv
  )
  launch.define_config_flag(
    flag_values, "Network shapes of --checkpoint (default: its own).", sys_argv
  )
  flags.DEFINE_string(
    "host",
    "127.0.0.1",
    "Address to listen on (0.0.0.0 exposes the server to the network).",
    **fv,
  )
  flags.DEFINE_integer("port", 8000, "Port.", lower_bound=0, **fv)
  flags.DEFINE_integer(
    "max_upload_mib", 50, "Largest upload, MiB.", lower_bound=1, **fv
  )
  flags.DEFINE_integer(
    "max_megapixels", 64, "Largest image, megapixels.", lower_bound=1, **fv
  )


def main(argv: list[str], flag_values: flags.FlagValues) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  fv = flag_values
  if bool(fv.workdir) == bool(fv.checkpoint):
    raise app.UsageError("give exactly one of --workdir or --checkpoint")
  import uvicorn

  from glcic_jax.inpaint import completer, server
  from glcic_jax.inpaint import engine as engine_lib

  loaded = completer.load_generator(
    fv.workdir or fv.checkpoint, step=fv.step, config=fv.config
  )
  info = {
    "checkpoint": fv.workdir or fv.checkpoint,
    "step": loaded.step,
    "config": loaded.config.name,
    "generator_channels": int(loaded.config.model.generator_channels),
    "trained_size": int(loaded.config.image_size),
    "channel_order": "RGB",
    "strategies": list(engine_lib.STRATEGIES),
  }
  web = server.create_app(
    engine_lib.Engine(loaded),
    info,
    max_bytes=fv.max_upload_mib * 2**20,
    max_pixels=fv.max_megapixels * 2**20,
  )
  logging.info(
    "Serving %s (step %d) on http://%s:%d/",
    info["checkpoint"],
    loaded.step,
    fv.host,
    fv.port,
  )
  uvicorn.run(web, host=fv.host, port=fv.port, log_level="warning")


def run() -> None:
  """Console-script entry point."""
  launch.run(__name__, define_flags, main)


if __name__ == "__main__":
  run()
