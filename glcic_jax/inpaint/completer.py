"""A trained generator, ready to complete images: for notebooks and for
`glcic-inpaint`.

  completer = completer.load_generator("/ckpt/gl_places")        # workdir
  completer = completer.load_generator("gl_places.pth")          # mmagic file
  out = completer.complete(images_uint8, masks)                  # uint8

Completion pads to a multiple of 4 and crops back, keeps every pixel outside
the hole and runs the generator in eval mode (running statistics), jitted
once per input shape. Files are completed by `file_jobs`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np

from glcic_jax import checkpointing, files, interop, models
from glcic_jax import config as config_lib
from glcic_jax.inpaint import compositing


class Completer:
  """A generator with its variables, ready to complete uint8 images."""

  def __init__(
    self, generator: models.Generator, variables: Any, config, step: int
  ):
    self.generator = generator
    # On the device once, not copied from the host at every call.
    self.variables = jax.device_put(variables)
    self.config = config
    self.step = step
    # jax.jit keeps one compiled program per input shape: a folder of
    # same-sized photos compiles once.
    self._apply = jax.jit(
      lambda v, image, mask: generator.apply(
        v, models.network_input(image, mask), train=False
      )
    )

  def apply(self, image: jax.Array, mask: jax.Array) -> jax.Array:
    """[B, H, W, 3] image in [-1, 1] and [B, H, W, 1] mask (sides multiples
    of 4) -> the generator's [B, H, W, 3] output."""
    return self._apply(self.variables, image, mask)

  def complete(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] or [B, H, W, 3] images, masks [..., H, W(, 1)] with
    non-zero = hole -> uint8 completions of the same shape."""
    image = np.asarray(image)
    if image.ndim == 3:
      return compositing.complete(self.apply, image, mask)
    return compositing.complete_batch(self.apply, image, mask)


def load_generator(
  source: str | os.PathLike,
  *,
  step: int | None = None,
  channel_order: str | None = None,
  config: ml_collections.ConfigDict | None = None,
  allow_pickle: bool = False,
) -> Completer:
  """A `Completer` from a glcic-jax workdir or an mmagic `.pth`/`.safetensors`
  (a path or URL, downloaded once into the cache: `glcic_jax.downloads`).

  For files, `config` gives the network shapes (default: the file's own
  metadata, else the paper's) and `channel_order` the order the file's
  weights expect (default: its metadata, else mmagic's 'bgr').
  """
  from glcic_jax import downloads, weights

  source = os.fspath(source)
  if not downloads.is_url(source) and files.is_dir(source):
    variables, config, step = checkpointing.restore_generator(source, step)
  else:
    _, sd, meta = weights.read_file(source, allow_pickle=allow_pickle)
    config = (
      config or weights.saved_config(meta) or config_lib.get_base_config()
    )
    generator_only = {
      k: v for k, v in sd.items() if k.startswith(interop.GENERATOR_PREFIX)
    }
    variables, _ = weights.match_config(
      generator_only,
      config,
      channel_order or str(meta.get("channel_order", "bgr")),
      with_discs=False,
    )
    step = int(meta.get("iter", 0)) if step is None else step
  generator, _ = models.build_models(config.model)
  return Completer(generator, variables, config, int(step))
