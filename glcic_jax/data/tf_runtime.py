"""TensorFlow as the input pipeline runs it: on the host CPU only, quiet.

Every module of this package takes `tf` from here, so whichever imports
TensorFlow first sets it up. TensorFlow only decodes and crops images; the
accelerators belong to JAX, so TensorFlow is kept off the GPUs (it would
otherwise reserve most of their memory). Its C++ logs are limited to
errors unless `TF_CPP_MIN_LOG_LEVEL` says otherwise: decoding PNGs with
unusual colour profiles logs a warning per image.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow ran ops already; its devices are fixed
  pass

__all__ = ["tf"]
