"""Fingerprints of the compiled training steps: one line per config and phase.

  python scripts/compiled_steps.py [--config=configs/demo.py ...] [--out=DIR]

Why: a change meant to leave the steps alone (a refactor, a move of code)
leaves them alone exactly when XLA compiles the same programs. This prints
the SHA-256 of each phase step's optimized HLO (one device's partition, as
`benchmark_train.py` compiles it), without the metadata that names source
files and functions. Run it in two checkouts and compare the lines: equal
hashes mean the same program, so the same speed and memory; `--out` also
writes the HLO texts for a diff.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchmark_train  # noqa: E402  (defines --config, read here too)

from glcic_jax import train_steps as ts  # noqa: E402

flags.DEFINE_string("out", None, "Also write the HLO texts here.")
FLAGS = flags.FLAGS
# The sections and attributes of the HLO text that name source locations.
_LOCATION_TABLES = (
  "FileNames",
  "FunctionNames",
  "FileLocations",
  "StackFrames",
)


def program_text(hlo: str) -> str:
  """The HLO without metadata, source-location tables and module name."""
  lines, skipping = [], False
  for line in hlo.splitlines():
    if line in _LOCATION_TABLES:
      skipping = True
      continue
    if skipping and line and not line[0].isspace() and not line[0].isdigit():
      skipping = False
    if skipping:
      continue
    kept = re.sub(r", metadata=\{[^}]*\}", "", line)
    kept = re.sub(r",? ?stack_frame_id=\d+", "", kept)
    lines.append(re.sub(r"^HloModule \S+", "HloModule", kept))
  return "\n".join(lines)


def main(argv):
  del argv
  config = FLAGS.config
  for phase in (ts.PHASE_G, ts.PHASE_D, ts.PHASE_JOINT):
    _, info = benchmark_train.jax_step(config, phase)
    text = program_text(info["compiled"].as_text())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    print(f"{config.name} {config.image_size}px {phase}: {digest}", flush=True)
    if FLAGS.out:
      os.makedirs(FLAGS.out, exist_ok=True)
      with open(
        os.path.join(FLAGS.out, f"{config.name}_{phase}.hlo"), "w"
      ) as f:
        f.write(text)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
