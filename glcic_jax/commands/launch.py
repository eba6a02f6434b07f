"""What every console command does before its own work, in this order.

1. Before any heavy import: TensorFlow's and XLA's C++ logs limited to
   errors (they are read once, when the first of them loads), and on the
   CPU the restart with huge pages for malloc (`startup.huge_pages`).
2. The command's flags, and `--help` answered at once with the command's
   docstring and flags (status 0), before JAX or TensorFlow load.
3. In `app.run`: third-party INFO logs dropped (orbax, etils, tensorstore,
   JAX's back-end probing), TensorFlow kept off the accelerators for the
   commands that read data, JAX's persistent compilation cache
   (`startup.compilation_cache`) and, for the commands that run on a mesh,
   `jax.distributed` from `--distributed` or `--coordinator_address`,
   `--num_processes` and `--process_id`.

A command module defines its flags in `define_flags(flag_values)` and its
work in `main(argv, flag_values)`, and calls `run` from its console entry
point. This is the only package code (with the command modules) that
defines absl flags.
"""

from __future__ import annotations

import ast
import contextlib
import logging as std_logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from glcic_jax import interop
from glcic_jax.data import TF_ENVIRONMENT
from glcic_jax.startup import huge_pages

FLAGS = flags.FLAGS
_HELP = ("-h", "--help", "-?", "--helpshort", "--helpfull")
# Loggers (by the file that logs) whose INFO records are chatter for a user:
# each checkpoint logs dozens of lines, a CPU host logs its missing TPU.
_QUIET_SOURCES = (
  f"{os.sep}orbax{os.sep}",
  f"{os.sep}etils{os.sep}",
  f"{os.sep}tensorstore{os.sep}",
  f"{os.sep}jax{os.sep}_src{os.sep}",
)


def define_config_flag(
  flag_values: flags.FlagValues, help_text: str, sys_argv: list[str] | None
) -> None:
  """`--config=configs/x.py`, locked (a typo in `--config.x=y` is an
  error); `sys_argv` lets a test parse a command line of its own."""
  config_flags.DEFINE_config_file(
    "config",
    None,
    help_text,
    lock_config=True,
    sys_argv=sys_argv,
    flag_values=flag_values,
  )


def define_channel_order_flag(
  flag_values: flags.FlagValues, help_text: str
) -> None:
  """`--channel_order=bgr|rgb`: the order a weights file's image channels
  are in (mmagic's: bgr)."""
  flags.DEFINE_enum(
    "channel_order",
    "bgr",
    interop.CHANNEL_ORDERS,
    help_text,
    flag_values=flag_values,
  )


def define_distributed_flags(flag_values: flags.FlagValues) -> None:
  """The flags of the commands that run on a mesh over every host."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0, for a run over several hosts.",
    **fv,
  )
  flags.DEFINE_integer(
    "num_processes", None, "Number of processes (hosts).", **fv
  )
  flags.DEFINE_integer("process_id", None, "This process's index.", **fv)
  flags.DEFINE_bool(
    "distributed",
    False,
    "Join the other hosts as jax.distributed.initialize() detects them "
    "(TPU pods, SLURM, ...).",
    **fv,
  )


def initialize_distributed(flag_values: flags.FlagValues) -> None:
  """Joins the other processes where the flags say so, then logs where
  this process runs."""
  import jax

  fv = flag_values
  if fv.coordinator_address or fv.distributed:
    jax.distributed.initialize(
      coordinator_address=fv.coordinator_address,
      num_processes=fv.num_processes,
      process_id=fv.process_id,
    )
  logging.info(
    "JAX process %d/%d, %d local / %d global devices (%s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )


class _ThirdPartyChatter(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return not any(part in record.pathname for part in _QUIET_SOURCES)


def quiet_third_party_logs() -> None:
  """Drops other libraries' INFO records from absl's log handler."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _ThirdPartyChatter) for f in handler.filters):
    handler.addFilter(_ThirdPartyChatter())


def _print_help(module_name: str, full: bool) -> None:
  """The command's docstring and its flags, on stdout."""
  print(sys.modules[module_name].__doc__.strip())
  print()
  if full:
    print(FLAGS.get_help())
  else:
    print("Flags:")
    print(FLAGS.module_help(module_name))
    print("\nTry --helpfull to get a list of all flags.")


def run(
  module_name: str,
  define_flags: Callable[[flags.FlagValues], None],
  main: Callable[[list[str], flags.FlagValues], None],
  *,
  on_mesh: bool = False,
  reads_data: bool = False,
) -> None:
  """Runs a command's `main` after the start-up in the module docstring.

  `on_mesh`: the command takes the distributed flags and joins the other
  hosts before `main`. `reads_data`: TensorFlow is set up before anything
  else imports it.
  """
  for name, value in TF_ENVIRONMENT.items():
    os.environ.setdefault(name, value)
  huge_pages.reexec_with_huge_pages()
  define_flags(FLAGS)
  if on_mesh:
    define_distributed_flags(FLAGS)
  # Flags the helpers above defined are the command's own in its --help.
  for flag in FLAGS.get_flags_for_module(__name__):
    FLAGS.register_key_flag_for_module(module_name, flag)
  args = sys.argv[1 : sys.argv.index("--")] if "--" in sys.argv else sys.argv
  asked = [a.split("=")[0] for a in args if a.split("=")[0] in _HELP]
  if asked:
    _print_help(module_name, full="--helpfull" in asked)
    sys.exit(0)
  # absl's own usage texts (after a flag error) show the main module's
  # docstring and key flags; pip's console-script wrapper has neither.
  main_module = sys.modules["__main__"]
  if not main_module.__doc__:
    main_module.__doc__ = sys.modules[module_name].__doc__
  for flag in FLAGS.get_key_flags_for_module(module_name):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)

  def started_main(argv: list[str]) -> None:
    quiet_third_party_logs()
    logging.info("%s", huge_pages.describe())
    if reads_data:
      # Without TensorFlow only the synthetic source runs; the sources that
      # need it say so when they are opened.
      with contextlib.suppress(ImportError):
        from glcic_jax.data import tf_runtime  # noqa: F401

    from glcic_jax.startup import compilation_cache

    logging.info("%s", compilation_cache.enable())
    if on_mesh:
      initialize_distributed(FLAGS)
    main(argv, FLAGS)

  try:
    app.run(started_main)
  except Exception as e:  # noqa: BLE001  reported in one line, below
    if _verbose():
      raise
    _report_error(command_name(module_name), e)
    sys.exit(1)


def command_name(module_name: str) -> str:
  """`glcic-import` for glcic_jax.commands.import_weights: the console
  script's name, also when the module runs with `python -m`."""
  spec = getattr(sys.modules.get(module_name), "__spec__", None)
  if module_name == "__main__" and spec is not None:
    module_name = spec.name  # python -m glcic_jax.commands.x
  name = module_name.rsplit(".", 1)[-1].removesuffix("_weights")
  return "glcic-" + name.replace("_", "-")


def _verbose() -> bool:
  """--verbosity >= 1 (or -v), also when the flags did not parse."""
  if FLAGS.is_parsed():
    return FLAGS.verbosity >= 1
  for arg in sys.argv[1:]:
    name, _, value = arg.lstrip("-").partition("=")
    if name in ("verbosity", "v") and value.lstrip("-").isdigit():
      return int(value) >= 1
  return False


def error_cause(e: BaseException) -> str:
  """What went wrong, for the last line a user reads: the exception's type
  and message. ml_collections reports a mistyped override as an
  AttributeError whose message is a quoted repr; it is unquoted here."""
  text = str(e)
  if isinstance(e, AttributeError) and "Did you mean" in text:
    with contextlib.suppress(ValueError, SyntaxError):
      text = ast.literal_eval(text)
    field, _, hint = text.partition("\n")
    return f"no config field {field}. {hint}"
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _report_error(command: str, e: BaseException) -> None:
  """The traceback into a file, then its place and the cause on stderr,
  the cause last."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  path = os.path.join(
    tempfile.gettempdir(), f"{command}-{stamp}-{os.getpid()}.log"
  )
  where = ""
  try:
    with open(path, "w") as f:
      traceback.print_exception(e, file=f)
    where = f"the traceback is in {path}; "
  except OSError:
    pass
  sys.stderr.write(
    f"{command}: {where}--verbosity=1 prints it here.\n"
    f"{command}: error: {error_cause(e)}\n"
  )
