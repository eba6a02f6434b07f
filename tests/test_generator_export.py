"""Deployable generators: ONNX Runtime, StableHLO reloaded in a process
with only jax, and the PyTorch module complete a real photo as the JAX
`Completer` does, at two sizes (one not square, one not a multiple of 8),
with the known pixels returned exactly; the paper generator's ONNX graph
holds plain nodes and its weights once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
import skimage.data
import torch
from PIL import Image

from glcic_jax import config as config_lib
from glcic_jax import generator_export, models, torch_generator
from glcic_jax.inpaint import completer as inference
from tests.inpaint.test_completer import save_tiny_checkpoint

SIZES = [(96, 160), (100, 148)]  # not square; multiples of 4, not of 8
NOT_ON_A_JAX_ONLY_HOST = [
  "flax",
  "glcic_jax",
  "tensorflow",
  "torch",
  "orbax",
  "optax",
  "onnx",
]


@pytest.fixture(scope="module")
def completer(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(workdir, step=7)
  return inference.load_generator(workdir)


@pytest.fixture(scope="module")
def exported(completer, tmp_path_factory):
  folder = tmp_path_factory.mktemp("exports")
  paths = {}
  for fmt, suffix in generator_export.SUFFIXES.items():
    paths[fmt] = str(folder / f"gl{suffix}")
    summary = generator_export.export_generator(
      completer.variables,
      completer.config.model,
      paths[fmt],
      fmt,
      {"source": "tiny workdir", "step": 7},
    )
    assert summary["bytes"] == os.path.getsize(paths[fmt])
  return paths


def _inputs(height, width):
  """A real photo (the astronaut at half size) with a hole, NCHW float32
  0..255, and the mask."""
  image = np.ascontiguousarray(
    skimage.data.astronaut()[::2, ::2][:height, :width]
  )
  mask = np.zeros((height, width), np.float32)
  mask[height // 4 : height // 4 + 40, width // 3 : width // 3 + 36] = 1
  nchw = image.transpose(2, 0, 1)[None].astype(np.float32)
  return image, mask, nchw, mask[None, None]


def _jax_float(completer, nchw, mask):
  """The JAX Completer's generator, composited in float (before rounding)."""
  fn = generator_export.completion_fn(
    completer.variables, completer.config.model
  )
  return np.asarray(fn(nchw, mask))


def _check(got, want, nchw, mask, completer, image, hole):
  assert got.shape == want.shape == nchw.shape
  np.testing.assert_allclose(got, want, atol=0.5)
  known = np.broadcast_to(mask, got.shape) == 0
  np.testing.assert_array_equal(got[known], nchw[known])
  # Rounded, it is the Completer's uint8 output (to the rounding).
  uint8 = completer.complete(image, hole)
  rounded = np.clip(np.rint(got[0]), 0, 255).transpose(1, 2, 0)
  assert np.abs(rounded - uint8).max() <= 1
  inside = got[np.broadcast_to(mask, got.shape) == 1]
  assert 0.2 < np.mean((inside > 0.5) & (inside < 254.5))  # not saturated


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_onnx_runtime_completes_as_jax(completer, exported, height, width):
  image, hole, nchw, mask = _inputs(height, width)
  session = onnxruntime.InferenceSession(
    exported["onnx"], providers=["CPUExecutionProvider"]
  )
  got = session.run(None, {"image": nchw, "mask": mask})[0]
  _check(
    got, _jax_float(completer, nchw, mask), nchw, mask, completer, image, hole
  )


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_torch_module_completes_as_jax(completer, exported, height, width):
  image, hole, nchw, mask = _inputs(height, width)
  module = torch_generator.load(exported["torch"])
  assert module.meta["step"] == 7 and module.meta["channel_order"] == "rgb"
  with torch.no_grad():
    got = module(torch.from_numpy(nchw), torch.from_numpy(mask)).numpy()
  _check(
    got, _jax_float(completer, nchw, mask), nchw, mask, completer, image, hole
  )
  # weights_only=True reads it: tensors and plain metadata only.
  saved = torch.load(exported["torch"], weights_only=True)
  assert all(isinstance(v, str | int | float) for v in saved["meta"].values())


RELOAD = """
import sys, numpy as np, jax
from jax import export
data = open(sys.argv[1], "rb").read()
fn = export.deserialize(bytearray(data))
inputs = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(fn.call(inputs["image"], inputs["mask"])))
loaded = [m for m in {blocked!r} if m in sys.modules]
assert not loaded, loaded
"""


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_stablehlo_reloads_with_only_jax(
  completer, exported, tmp_path, height, width
):
  image, hole, nchw, mask = _inputs(height, width)
  np.savez(tmp_path / "in.npz", image=nchw, mask=mask)
  blocked = tmp_path / "blocked"
  for name in NOT_ON_A_JAX_ONLY_HOST:
    (blocked / name).mkdir(parents=True)
    (blocked / name / "__init__.py").write_text(
      f"raise ImportError('{name} is not installed here')\n"
    )
  done = subprocess.run(
    [
      sys.executable,
      "-c",
      RELOAD.format(blocked=NOT_ON_A_JAX_ONLY_HOST),
      exported["stablehlo"],
      str(tmp_path / "in.npz"),
      str(tmp_path / "out.npy"),
    ],
    env=dict(os.environ, PYTHONPATH=str(blocked)),
    capture_output=True,
    text=True,
    check=False,
    cwd=tmp_path,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  got = np.load(tmp_path / "out.npy")
  _check(
    got, _jax_float(completer, nchw, mask), nchw, mask, completer, image, hole
  )
  meta = json.loads(open(exported["stablehlo"] + ".json").read())
  assert meta["step"] == 7 and meta["channel_order"] == "RGB"


def test_onnx_model_describes_itself(exported):
  model = onnx.load(exported["onnx"])
  assert model.opset_import[0].version >= 17
  meta = {p.key: p.value for p in model.metadata_props}
  assert meta["source"] == "tiny workdir" and meta["step"] == "7"
  assert meta["channel_order"] == "RGB"
  names = (
    [i.name for i in model.graph.input],
    [o.name for o in model.graph.output],
  )
  assert names == (["image", "mask"], ["completion"])


def test_paper_generator_onnx_is_plain_and_holds_its_weights_once(tmp_path):
  """6,069,155 float32 parameters: about 24 MB, as plain Conv,
  ConvTranspose, Relu nodes (BatchNorm folded), never the CPU forms."""
  config = config_lib.get_base_config()
  generator, _ = models.build_models(config.model, conv_forms="native")
  variables = generator.init(
    jax.random.key(0), np.zeros((1, 64, 64, 4), np.float32), train=False
  )
  out = str(tmp_path / "paper.onnx")
  generator_export.export_generator(
    variables, config.model, out, "onnx", {"source": "init"}
  )
  size = os.path.getsize(out)
  assert 23.5e6 < size < 25.5e6, size
  model = onnx.load(out)
  ops = [n.op_type for n in model.graph.node]
  assert ops.count("Conv") == 15 and ops.count("ConvTranspose") == 2, ops
  assert not {"MatMul", "Gemm", "Einsum"} & set(ops), set(ops)


def _readme_block(after: str) -> str:
  """The first ```python block of the README after the line `after`."""
  text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  start = text.index("```python", text.index(after)) + len("```python")
  return text[start : text.index("```", start)]


def test_the_readme_completes_a_photo_as_it_says(
  exported, tmp_path, monkeypatch
):
  """The README's onnxruntime and PyTorch snippets, run as written, on an
  odd-sized photo (cropped to multiples of 4) with a hole."""
  monkeypatch.chdir(tmp_path)
  photo = skimage.data.astronaut()[::2, ::2][:103, :150]
  Image.fromarray(np.ascontiguousarray(photo)).save("photo.png")
  mask = np.zeros(photo.shape[:2], np.uint8)
  mask[30:60, 40:80] = 255
  Image.fromarray(mask).save("mask.png")
  os.symlink(exported["onnx"], "gl_places.onnx")
  os.symlink(exported["torch"], "gl_places_generator.pth")
  scope = {}
  exec(_readme_block("ONNX Runtime, with nothing"), scope)
  done = np.asarray(Image.open("completed.png"))
  assert done.shape == (100, 148, 3)
  hole = mask[:100, :148] > 0
  np.testing.assert_array_equal(done[~hole], photo[:100, :148][~hole])
  exec(_readme_block("PyTorch, with only torch"), scope)
  np.testing.assert_allclose(
    scope["completion"][0].numpy().transpose(1, 2, 0),
    scope["session"].run(None, scope["inputs"])[0][0].transpose(1, 2, 0),
    atol=0.5,
  )
