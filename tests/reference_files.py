"""Where the tests find the reference facts taken from mmagic (state_dict
names, golden tensors): `../shared/reference` beside the checkout, the
project's layout, or `$GLCIC_REFERENCE_DIR` for a checkout elsewhere (a
clone in a temporary directory, say). They are not in the repository
(91 MB of golden tensors)."""

from __future__ import annotations

import os

_BESIDE_CHECKOUT = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"
)


def reference_path(*parts: str) -> str:
  """The path of a reference file; a missing one fails with where it was
  looked for and how to point the tests elsewhere."""
  root = os.environ.get("GLCIC_REFERENCE_DIR") or _BESIDE_CHECKOUT
  path = os.path.normpath(os.path.join(root, *parts))
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"reference file {path} not found: the tests expect mmagic's reference"
      " facts in ../shared/reference beside the checkout; set"
      " GLCIC_REFERENCE_DIR to that folder when the checkout is elsewhere"
    )
  return path
