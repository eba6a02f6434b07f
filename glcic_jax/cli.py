"""Start-up shared by the console scripts (`glcic-train`, `glcic-eval`, ...).

absl's `--help` prints the docstring of `__main__` and the flags that
`__main__` defines. A console script's `__main__` is pip's generated
wrapper, which has neither, so without this `glcic-train --help` printed a
bare usage line. `run_app` lends the command module's docstring and flags
to `__main__` before handing over to `app.run`. It also restarts the
process once with huge pages for malloc's large mappings
(`host_allocator`), and points JAX's persistent compilation cache at a
folder (`compilation_cache`), before any of the command's work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

from glcic_jax import compilation_cache, host_allocator


def run_app(main: Callable[[list[str]], None], module_name: str) -> None:
  """`app.run(main)`, with `module_name`'s docstring and flags as `--help`,
  in a process whose malloc uses huge pages where it can, with a
  persistent compilation cache."""
  host_allocator.reexec_with_huge_pages()
  program = sys.argv[0]
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(program, flag)
  main_module = sys.modules["__main__"]
  if not main_module.__doc__:
    main_module.__doc__ = sys.modules[module_name].__doc__

  def logged_main(argv: list[str]) -> None:
    logging.info("%s", host_allocator.describe())
    logging.info("%s", compilation_cache.enable())
    main(argv)

  app.run(logged_main)
