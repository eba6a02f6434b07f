"""Every file written beside orbax's lands on the workdir's filesystem.

The non-local filesystem is fsspec's in-memory one, registered for the
`s3://` scheme, with etils.epath on its fsspec backend (the one it uses
where TensorFlow is not installed, as on the GPU host; with TensorFlow it
goes through tf.io.gfile, whose only in-memory scheme epath does not
route). Nothing of it reaches the local disk, so a writer that bypassed
the path layer would leave a local `s3:` folder or fail to find its file.
"""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pytest
from etils.epath import gpath
from fsspec.implementations.memory import MemoryFileSystem
from PIL import Image

from glcic_jax import evaluate, files, interop
from glcic_jax.data import preview
from glcic_jax.inpaint import completer as inference
from glcic_jax.inpaint import file_jobs, images
from tests.data.test_pipeline import tiny_config
from tests.inpaint.test_completer import photo, save_tiny_checkpoint


@pytest.fixture
def bucket(monkeypatch, tmp_path):
  """A fresh in-memory `s3://bucket`; the test runs in an empty folder."""
  monkeypatch.setattr(MemoryFileSystem, "store", {})
  monkeypatch.setattr(MemoryFileSystem, "pseudo_dirs", [""])
  fsspec.register_implementation("s3", MemoryFileSystem, clobber=True)
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  monkeypatch.chdir(tmp_path)
  yield "s3://bucket/run"
  assert "s3:" not in os.listdir(tmp_path)


def png_of(path) -> np.ndarray:
  import io

  return np.asarray(Image.open(io.BytesIO(files.read_bytes(path))))


def test_writes_replace_whole_files_and_leave_no_partials(bucket):
  files.write_text(f"{bucket}/a/b.txt", "first")
  files.write_text(f"{bucket}/a/b.txt", "second")
  assert files.read_bytes(f"{bucket}/a/b.txt") == b"second"
  assert [os.path.basename(p) for p in files.list_dir(f"{bucket}/a")] == [
    "b.txt"
  ]
  assert files.is_dir(f"{bucket}/a") and files.is_file(f"{bucket}/a/b.txt")


def test_eval_json_and_grid_go_to_the_workdir(bucket):
  grid = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  result = evaluate.EvalResult(0.1, 20.0, 0.5, 4, 1, grid)
  path = evaluate.write_results(result, bucket, step=7, seed=0, source="x")
  assert path == f"{bucket}/eval/step_7.json"
  record = json.loads(files.read_bytes(path))
  assert record["checkpoint_step"] == 7 and record["skipped_files"] == 1
  np.testing.assert_array_equal(png_of(f"{bucket}/eval/step_7.png"), grid)


def test_preview_goes_to_the_workdir(bucket):
  config = tiny_config(source="skimage")
  grid = preview.write_preview(config, f"{bucket}/preview.png", num_images=2)
  np.testing.assert_array_equal(png_of(f"{bucket}/preview.png"), grid)


def test_exports_and_completions_read_and_write_remote_files(bucket, tmp_path):
  workdir = str(tmp_path / "w")
  save_tiny_checkpoint(workdir)
  local = inference.load_generator(workdir)
  sd = interop.gl_state_dict(local.variables, {"params": {}}, "bgr")
  for name in ("g.pth", "g.safetensors"):
    interop.write_state_dict(f"{bucket}/{name}", sd)
    back = interop.read_state_dict(f"{bucket}/{name}")
    assert set(back) == set(sd)
    for key in sd:
      np.testing.assert_array_equal(back[key], np.asarray(sd[key]))
  # Inputs in the bucket (a folder of photos), outputs in the bucket.
  images.save_png(f"{bucket}/in/photo.png", photo(45, 30))
  written = file_jobs.complete_files(
    local, [f"{bucket}/in"], f"{bucket}/out", bboxes=["10,5,16,16"]
  ).written
  assert written == [f"{bucket}/out/photo.png"]
  completed = png_of(written[0])
  assert completed.shape == (45, 30, 3)
  assert files.is_file(f"{bucket}/out/photo_compare.png")
  # A remote file source is routed as a file, not refused as missing.
  tiny = local.config
  remote = inference.load_generator(f"{bucket}/g.pth", config=tiny)
  hole = np.zeros((45, 30), bool)
  hole[10:26, 5:21] = True
  np.testing.assert_array_equal(
    remote.complete(photo(45, 30), hole), local.complete(photo(45, 30), hole)
  )
