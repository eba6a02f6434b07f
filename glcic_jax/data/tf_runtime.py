"""TensorFlow as the input pipeline runs it: on the host CPU only, quiet.

Every module of this package takes `tf` from here, so whichever imports
TensorFlow first sets it up. TensorFlow only decodes and crops images; the
accelerators belong to JAX, so TensorFlow is kept off the GPUs (it would
otherwise reserve most of their memory). Its C++ logs are limited to
errors unless `TF_CPP_MIN_LOG_LEVEL` says otherwise (`TF_ENVIRONMENT`).
"""

from __future__ import annotations

import os

from glcic_jax.data import TF_ENVIRONMENT

for _name, _value in TF_ENVIRONMENT.items():
  os.environ.setdefault(_name, _value)

try:
  import tensorflow as tf  # noqa: E402
except ImportError as e:
  raise ImportError(
    "TensorFlow is not installed: the tfds, image_list, folder and skimage "
    "sources decode with it (pip install tensorflow), and "
    "config.data.source='synthetic' runs without it."
  ) from e

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow ran ops already; its devices are fixed
  pass

__all__ = ["tf"]
