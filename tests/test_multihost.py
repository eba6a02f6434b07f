"""Two real processes (gloo on 127.0.0.1) agree on the checkpoint to resume.

The newest checkpoint is corrupt for real (its array files emptied). The
one before it fails to read on process 1 only, every time (a host whose
mount lost a file), and the one before that fails once on process 0 (a
transient read error). Both processes must restore the same, oldest step:
process 0 alone would take the one process 1 cannot read, and a transient
error must be retried, not taken for corruption.
"""

from __future__ import annotations

import os
import sys

from glcic_jax import train_state
from tests.test_checkpointing import (
  _truncate_array_file,
  save_steps,
  tiny_config,
)
from tests.test_train import cpu_env, run_two_processes

_WORKER = """
import os
import sys
import jax
import orbax.checkpoint as ocp
from absl import flags

flags.DEFINE_string("coordinator_address", "", "")
flags.DEFINE_integer("num_processes", 1, "")
flags.DEFINE_integer("process_id", 0, "")
flags.FLAGS(sys.argv)
F = flags.FLAGS
jax.distributed.initialize(F.coordinator_address, F.num_processes, F.process_id)

from glcic_jax import checkpointing, sharding, train_state
from tests.test_checkpointing import tiny_config

checkpointing.reads.READ_RETRY_DELAYS = (0.2, 0.2)
real_restore = ocp.Checkpointer.restore
failed_once = []

def restore(self, directory, *args, **kwargs):
  # Injected read faults, as a flaky mount makes them.
  step = int(os.path.basename(os.fspath(directory)))
  if F.process_id == 1 and step == 3:
    raise OSError("injected: file unreadable on this host")
  if F.process_id == 0 and step == 2 and not failed_once:
    failed_once.append(step)
    raise OSError("injected: transient read error")
  return real_restore(self, directory, *args, **kwargs)

ocp.Checkpointer.restore = restore
mesh = sharding.create_mesh()
abstract = train_state.abstract_state(tiny_config(), mesh)
with checkpointing.Checkpointer(sys.argv[1], save_every=1, keep=5) as ckpt:
  state, meta = ckpt.restore_latest(abstract)
print("RESTORED", int(state.step), meta["step"], flush=True)
"""


def test_processes_restore_the_same_step_despite_local_and_real_faults(
  tmp_path,
):
  config = tiny_config()
  abstract = train_state.abstract_state(config)
  save_steps(tmp_path, abstract, config, [1, 2, 3, 4], keep=5)
  _truncate_array_file(tmp_path / "4")
  runs = run_two_processes(
    [sys.executable, "-c", _WORKER, str(tmp_path)], cpu_env(2)
  )
  for returncode, out in runs:
    assert returncode == 0, out[-3000:]
    assert "RESTORED 2 2" in out, out[-3000:]
  assert "retrying" in runs[0][1]
  # 4 and 3 failed somewhere: moved aside once, by process 0.
  names = sorted(os.listdir(tmp_path))
  assert [n for n in names if n.isdigit()] == ["1", "2"], names
  assert sum(n.startswith(("3.corrupt-", "4.corrupt-")) for n in names) == 2
