"""glcic-eval, glcic-inpaint and the notebook API on real checkpoints."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from glcic_jax import (
  checkpointing,
  eval_main,
  inference,
  inpaint_main,
  interop,
  train_state,
)
from tests.test_train_steps import load_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny checkpoint at step 5 with random (untrained) weights."""
  config = load_config("tiny")
  config.per_device_batch_size = 1
  state = train_state.init_state(config, jax.random.PRNGKey(4))
  state = jax.device_get(state).replace(step=np.int32(5))
  path = str(tmp_path_factory.mktemp("w"))
  with checkpointing.Checkpointer(path, save_every=1, keep=2) as ckpt:
    ckpt.save(state, config, force=True)
  return path


def test_eval_is_reproducible_and_writes_json(workdir, tmp_path):
  a = eval_main.run_evaluation(workdir, output=str(tmp_path / "r.json"))
  b = eval_main.run_evaluation(workdir)
  assert a == b
  assert a["checkpoint_step"] == 5 and a["num_images"] == 2
  with open(tmp_path / "r.json") as f:
    assert json.load(f) == a
  with pytest.raises(FileNotFoundError, match=r"\[5\]"):
    eval_main.run_evaluation(workdir, step=7)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  image = skimage.data.astronaut()[:451, :300]  # odd size
  Image.fromarray(image).save(folder / "astro.png")
  Image.fromarray(image).save(folder / "astro2.jpg", quality=95)
  mask = np.zeros((451, 300), np.uint8)
  mask[100:180, 50:130] = 255
  mask[300:340, 200:290] = 255  # two holes
  Image.fromarray(mask).save(folder.parent / "mask.png")
  return folder, image, mask > 0


def test_inpaint_keeps_size_and_known_pixels(workdir, photos, tmp_path):
  folder, image, hole = photos
  completer = inference.load_generator(workdir)
  out = tmp_path / "out"
  written = inpaint_main.inpaint_files(
    completer, [str(folder)], str(out), mask=str(folder.parent / "mask.png")
  )
  assert [p.rsplit("/", 1)[1] for p in written] == ["astro.png", "astro2.png"]
  result = np.asarray(Image.open(out / "astro.png"))
  assert result.shape == image.shape
  np.testing.assert_array_equal(result[~hole], image[~hole])
  assert np.mean(result[hole] != image[hole]) > 0.5
  compare = np.asarray(Image.open(out / "astro_compare.png"))
  assert compare.shape == (451, 2 * 300 + 4, 3)
  written = inpaint_main.inpaint_files(
    completer, [str(folder / "astro.png")], str(out), bboxes=["10,20,50,60"]
  )
  result = np.asarray(Image.open(written[0]))
  np.testing.assert_array_equal(result[60:], image[60:])


def test_inpaint_errors(workdir, photos, tmp_path):
  folder, _, _ = photos
  completer = inference.load_generator(workdir)
  small = tmp_path / "small.png"
  Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
  with pytest.raises(ValueError, match="451"):
    inpaint_main.inpaint_files(
      completer, [str(folder / "astro.png")], str(tmp_path), mask=str(small)
    )
  empty = tmp_path / "empty.png"
  Image.fromarray(np.zeros((451, 300), np.uint8)).save(empty)
  with pytest.raises(ValueError, match="hole"):
    inpaint_main.inpaint_files(
      completer, [str(folder / "astro.png")], str(tmp_path), mask=str(empty)
    )
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8 not a jpeg")
  with pytest.raises(ValueError, match="broken.jpg"):
    inpaint_main.inpaint_files(
      completer, [str(broken)], str(tmp_path), random_bbox=True
    )
  with pytest.raises(ValueError, match="exactly one"):
    inpaint_main.inpaint_files(completer, [str(broken)], str(tmp_path))


def test_workdir_and_pth_give_the_same_completion(workdir, photos, tmp_path):
  _, image, hole = photos
  from_workdir = inference.load_generator(workdir)
  state_dict = interop.gl_state_dict(
    from_workdir.variables, {"params": {}}, "bgr"
  )
  pth = tmp_path / "g.pth"
  interop.write_state_dict(pth, state_dict)
  from_file = inference.load_generator(pth, config=from_workdir.config)
  a = from_workdir.complete(image, hole)
  b = from_file.complete(image, hole)
  np.testing.assert_array_equal(a, b)
  batch = from_file.complete(np.stack([image, image]), np.stack([hole, hole]))
  np.testing.assert_array_equal(batch[1], a)


def test_imported_checkpoint_evaluates_without_training(tmp_path):
  """An mmagic-layout file brought in with glcic-import evaluates as is."""
  from glcic_jax import import_main, models

  config = load_config("tiny")
  config.per_device_batch_size = 1
  g, d = models.build_models(config.model)
  g_vars, d_vars = models.init_variables(
    g, d, jax.random.PRNGKey(11), (32, 32), (16, 16)
  )
  pth = tmp_path / "mmagic_layout.pth"
  interop.write_state_dict(pth, interop.gl_state_dict(g_vars, d_vars))
  workdir = str(tmp_path / "imported")
  import_main.import_checkpoint(str(pth), workdir, config, step=300_000)
  record = eval_main.run_evaluation(workdir)
  assert record["checkpoint_step"] == 300_000 and record["num_images"] == 2
  assert 0 < record["ssim"] < 1
