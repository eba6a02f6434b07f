"""Training SIGKILLed again and again, during steps, checkpoint writes and
evaluations, resumed each time, ends bit for bit where an uninterrupted
run ends, and never loses a checkpoint it had finished.

CI kills twice (a checkpoint write, an evaluation) in a short run;
`scripts/run_slow_tests.sh` runs the 20-kill version.
Each kill waits for a moment of its kind in the run's log, after the run
has made some progress of its own (1 to 4 checkpoints, drawn per kill; a
run killed before its first checkpoint finishes would never move on): a
logged step, a checkpoint write just begun (async: the files are being
written), or an evaluation (it follows the save of its step).
"""

from __future__ import annotations

import dataclasses
import random
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from glcic_jax import checkpointing
from tests.test_train import cpu_env, final_params, train_cmd

EVAL_EVERY = 6
FLAGS = (
  "--config.checkpoint_every=2",
  "--config.keep_checkpoints=3",
  "--config.log_every=1",
  f"--config.eval_every={EVAL_EVERY}",
  "--config.eval_num_batches=1",
  "--config.image_every=4",
)
_SAVE = re.compile(r"Saving checkpoint step (\d+)")
_STEP = re.compile(r"\] step (\d+)/")


@dataclasses.dataclass
class Tally:
  kills: dict = dataclasses.field(default_factory=dict)  # kind -> count
  restores: int = 0
  runs: int = 0


def _moment(kind: str, text: str, advance: int) -> bool:
  """Whether the run's log `text` reached a moment to kill at of `kind`,
  `advance` checkpoints into the run."""
  saves = [int(s) for s in _SAVE.findall(text)]
  if len(saves) < advance:
    return False
  if kind == "save":
    return True
  if kind == "step":  # a step logged after the advance-th save
    after = text[[m.end() for m in _SAVE.finditer(text)][advance - 1] :]
    return bool(_STEP.search(after))
  return any(s % EVAL_EVERY == 0 for s in saves[advance - 1 :])  # "eval"


def _kill_at(workdir, flags, kind, advance, delay, log, tally) -> bool:
  """Starts a run and SIGKILLs it `delay` s after a moment of `kind`;
  False if the run finished first."""
  with open(log, "w") as out:
    proc = subprocess.Popen(
      train_cmd(workdir, *flags),
      env=cpu_env(8),
      stdout=out,
      stderr=subprocess.STDOUT,
    )
  tally.runs += 1
  deadline = time.time() + 300
  try:
    while True:
      text = log.read_text()
      if proc.poll() is not None:
        assert proc.returncode == 0, text[-3000:]
        return False
      if "Restored checkpoint" in text and not getattr(proc, "counted", 0):
        proc.counted = 1
        tally.restores += 1
      if _moment(kind, text, advance):
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tally.kills[kind] = tally.kills.get(kind, 0) + 1
        return True
      assert time.time() < deadline, text[-3000:]
      time.sleep(0.01)
  finally:
    proc.kill()
    proc.wait()


def run_with_kills(
  tmp_path,
  kinds: list[str],
  total_steps: int,
  seed: int,
  advances: list[int] | None = None,
):
  """Kills a run at a moment of each of `kinds` in turn (after `advances`
  checkpoints of its own, default random), then resumes it to
  `total_steps`; returns the flags of the run and the tally."""
  rng = random.Random(seed)
  flags = (*FLAGS, f"--config.total_steps={total_steps}")
  workdir = tmp_path / "killed"
  log = tmp_path / "log.txt"
  tally = Tally()
  finished = 0  # newest step a finished checkpoint was seen at
  for i, kind in enumerate(kinds):
    delay = {"step": 0.2, "save": 0.05, "eval": 1.5}[kind] * rng.random()
    advance = advances[i] if advances else rng.randint(1, 4)
    if not _kill_at(workdir, flags, kind, advance, delay, log, tally):
      break  # the run ended before this kill's moment
    steps = checkpointing.existing_steps(workdir)
    # A checkpoint finished before a kill is never lost (only replaced by
    # newer ones).
    assert not steps or max(steps) >= finished, (steps, finished)
    finished = max(steps or [0])
  # Resume to the end without interruption.
  done = subprocess.run(
    train_cmd(workdir, *flags),
    env=cpu_env(8),
    capture_output=True,
    text=True,
    check=False,
  )
  tally.runs += 1
  assert done.returncode == 0, done.stderr[-3000:]
  assert not list(workdir.glob(f"*{checkpointing.CORRUPT_SUFFIX}*"))
  return flags, tally


def _compare_with_uninterrupted(tmp_path, flags, total_steps: int) -> int:
  """Bytes of state compared (all equal)."""
  straight = tmp_path / "straight"
  subprocess.run(
    train_cmd(straight, *flags), env=cpu_env(8), check=True, capture_output=True
  )
  got = final_params(str(tmp_path / "killed"))
  want = final_params(str(straight))
  assert int(got.step) == int(want.step) == total_steps
  compared = 0
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    compared += np.asarray(a).nbytes
  return compared


def test_killed_during_a_save_and_an_evaluation_ends_as_uninterrupted(
  tmp_path,
):
  flags, tally = run_with_kills(
    tmp_path, ["save", "eval"], 16, seed=0, advances=[1, 1]
  )
  assert tally.kills == {"save": 1, "eval": 1}, tally
  assert _compare_with_uninterrupted(tmp_path, flags, 16) > 0


@pytest.mark.slow
def test_killed_twenty_times_ends_as_uninterrupted(tmp_path):
  rng = random.Random(1)
  kinds = [rng.choice(["step", "save", "eval"]) for _ in range(20)]
  flags, tally = run_with_kills(tmp_path, kinds, 96, seed=1)
  compared = _compare_with_uninterrupted(tmp_path, flags, 96)
  print(
    f"\nfault injection: {sum(tally.kills.values())} kills survived "
    f"({tally.kills}), {tally.restores} restores in {tally.runs} runs, "
    f"{compared:,} bytes of state equal to the uninterrupted run's"
  )
  assert sum(tally.kills.values()) == 20, tally
