"""Where the tests find the reference facts taken from mmagic (state_dict
names, golden tensors): `$GLCIC_REFERENCE_DIR` if set, else
`../shared/reference` beside the checkout (the project's layout), else
beside the local checkout this one was cloned from (so that a clone in a
temporary directory, as CI makes, finds them too). They are not in the
repository (91 MB of golden tensors)."""

from __future__ import annotations

import functools
import os
import subprocess

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _beside(checkout: str) -> str:
  return os.path.join(checkout, "..", "shared", "reference")


@functools.cache
def _roots() -> tuple[str, ...]:
  """The folders searched, in order."""
  if os.environ.get("GLCIC_REFERENCE_DIR"):
    return (os.environ["GLCIC_REFERENCE_DIR"],)
  roots = [_beside(_CHECKOUT)]
  origin = subprocess.run(
    ["git", "-C", _CHECKOUT, "config", "--get", "remote.origin.url"],
    capture_output=True,
    text=True,
    check=False,
  ).stdout.strip()
  if origin and os.path.isdir(origin):  # a clone of a local checkout
    roots.append(_beside(os.path.abspath(origin)))
  return tuple(roots)


def reference_path(*parts: str) -> str:
  """The path of a reference file; a missing one fails with where it was
  looked for and how to point the tests elsewhere."""
  tried = [os.path.normpath(os.path.join(root, *parts)) for root in _roots()]
  for path in tried:
    if os.path.exists(path):
      return path
  raise FileNotFoundError(
    f"reference file not found in {tried}: the tests expect mmagic's"
    " reference facts in ../shared/reference beside the checkout (or beside"
    " the local checkout it was cloned from); set GLCIC_REFERENCE_DIR to"
    " that folder when the checkout is elsewhere"
  )
