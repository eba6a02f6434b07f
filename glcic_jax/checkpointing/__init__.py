"""Checkpoints of a glcic-jax workdir: orbax behind this one package.

Every command that reads or writes a workdir goes through here, so the
on-disk format is decided in one place: `checkpointer` (saving, restoring,
falling back past broken steps), `reads` (one step read on one process,
retried) and `meta` (what every step records).
"""

from glcic_jax.checkpointing.checkpointer import (
  CORRUPT_SUFFIX,
  FORMAT_VERSION,
  Checkpointer,
  existing_steps,
  load_config,
  restore_generator,
)
from glcic_jax.checkpointing.reads import CheckpointError

__all__ = [
  "CORRUPT_SUFFIX",
  "FORMAT_VERSION",
  "CheckpointError",
  "Checkpointer",
  "existing_steps",
  "load_config",
  "restore_generator",
]
