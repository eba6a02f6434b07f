"""The package's layout rules, read from its source: TensorFlow only under
glcic_jax/data/, absl flags only under glcic_jax/commands/, the CPU forms
imported by the layer factory alone, torch only by the two PyTorch-facing
modules, orbax only under glcic_jax/checkpointing/, and no module over 400
lines."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "glcic_jax"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _rel(path: pathlib.Path) -> str:
  return path.relative_to(PACKAGE.parent).as_posix()


def _imports(path: pathlib.Path) -> set[str]:
  """Every module an `import` anywhere in the file names (lazy ones too),
  with `from a import b` counted as both `a` and `a.b`."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names |= {f"{node.module}.{alias.name}" for alias in node.names}
  return names


def _importers(prefixes: tuple[str, ...]) -> set[str]:
  return {
    _rel(path)
    for path in MODULES
    if any(
      name == p or name.startswith(p + ".")
      for name in _imports(path)
      for p in prefixes
    )
  }


def test_tensorflow_only_under_data():
  users = _importers(("tensorflow", "tensorflow_datasets"))
  assert users and all(u.startswith("glcic_jax/data/") for u in users), users


def test_flags_only_under_commands():
  users = _importers(("absl.flags", "ml_collections.config_flags"))
  assert users and all(u.startswith("glcic_jax/commands/") for u in users), (
    users
  )


def test_cpu_forms_only_through_the_layer_factory():
  users = _importers(("glcic_jax.cpu",)) - {
    _rel(p) for p in (PACKAGE / "cpu").glob("*.py")
  }
  assert users == {"glcic_jax/layers.py"}, users


def test_orbax_only_under_checkpointing():
  users = _importers(("orbax",))
  assert users and all(
    u.startswith("glcic_jax/checkpointing/") for u in users
  ), users


def test_torch_only_in_the_pytorch_facing_modules():
  assert _importers(("torch", "safetensors")) == {
    "glcic_jax/interop.py",
    "glcic_jax/torch_generator.py",
  }


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_modules_stay_short(path):
  assert len(path.read_text().splitlines()) <= 400


def test_the_rules_catch_what_they_forbid(tmp_path):
  """The readers above see lazy imports and `from` imports alike."""
  module = tmp_path / "m.py"
  module.write_text(
    "def f():\n  import tensorflow as tf\nfrom absl import flags\n"
    "from glcic_jax.cpu import conv\n"
  )
  names = _imports(module)
  assert {"tensorflow", "absl.flags", "glcic_jax.cpu.conv"} <= names
