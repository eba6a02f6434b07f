"""glcic-inpaint on real photos, from a workdir and from an mmagic-layout
.pth: any size, known pixels untouched, compare images, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data
from absl import app, flags
from PIL import Image

from glcic_jax import interop
from glcic_jax.commands import inpaint as inpaint_command
from glcic_jax.inpaint import completer as inference
from glcic_jax.inpaint import images, masks
from tests.inpaint.test_completer import save_tiny_checkpoint

TINY_CONFIG = os.path.join(
  os.path.dirname(__file__), "..", "..", "configs", "tiny.py"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(path)
  return path


@pytest.fixture(scope="module")
def completer(workdir):
  return inference.load_generator(workdir)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """The astronaut cropped to an odd 451x300, as a PNG and a JPEG, and a
  PNG mask with two holes."""
  folder = tmp_path_factory.mktemp("photos")
  image = np.ascontiguousarray(skimage.data.astronaut()[:451, :300])
  Image.fromarray(image).save(folder / "astro.png")
  Image.fromarray(image).save(folder / "astro2.jpg", quality=95)
  mask = np.zeros((451, 300), np.uint8)
  mask[100:180, 50:130] = 255
  mask[300:340, 200:290] = 255
  Image.fromarray(mask).save(folder.parent / "mask.png")
  return folder, image, mask > 0


def test_mask_and_bbox_keep_size_and_known_pixels(completer, photos, tmp_path):
  folder, image, hole = photos
  out = tmp_path / "out"
  written = inference.complete_files(
    completer, [str(folder)], str(out), mask=str(folder.parent / "mask.png")
  )
  assert [os.path.basename(p) for p in written] == ["astro.png", "astro2.png"]
  jpeg = np.asarray(Image.open(folder / "astro2.jpg"))
  for name, source in (("astro", image), ("astro2", jpeg)):
    result = np.asarray(Image.open(out / f"{name}.png"))
    assert result.shape == image.shape
    np.testing.assert_array_equal(result[~hole], source[~hole])
    assert np.mean(result[hole] != source[hole]) > 0.5
    compare = np.asarray(Image.open(out / f"{name}_compare.png"))
    assert compare.shape == (451, 2 * 300 + 4, 3)
    np.testing.assert_array_equal(compare[:, 304:], result)
  written = inference.complete_files(
    completer,
    [str(folder / "astro.png")],
    str(out),
    bboxes=["10,20,50,60", "200,100,30,30"],
  )
  result = np.asarray(Image.open(written[0]))
  box = np.zeros((451, 300), bool)
  box[10:60, 20:80] = box[200:230, 100:130] = True
  np.testing.assert_array_equal(result[~box], image[~box])
  assert np.mean(result[box] != image[box]) > 0.5


def test_errors(completer, photos, tmp_path):
  folder, _, _ = photos
  astro = str(folder / "astro.png")
  small = tmp_path / "small.png"
  Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
  with pytest.raises(ValueError, match="10x10.*451x300"):
    inference.complete_files(completer, [astro], str(tmp_path), mask=small)
  empty = tmp_path / "empty.png"
  Image.fromarray(np.zeros((451, 300), np.uint8)).save(empty)
  with pytest.raises(ValueError, match="no hole"):
    inference.complete_files(completer, [astro], str(tmp_path), mask=empty)
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8 not a jpeg")
  with pytest.raises(ValueError, match="broken.jpg"):
    inference.complete_files(
      completer, [str(broken)], str(tmp_path), random_bbox=True
    )
  with pytest.raises(ValueError, match="exactly one"):
    inference.complete_files(completer, [astro], str(tmp_path))
  with pytest.raises(ValueError, match="exactly one"):
    inference.complete_files(
      completer, [astro], str(tmp_path), mask=empty, random_bbox=True
    )
  with pytest.raises(FileNotFoundError, match="missing.png"):
    images.list_inputs([astro, str(tmp_path / "missing.png")])
  with pytest.raises(ValueError, match="astro"):
    images.list_inputs([str(folder), astro])  # astro.png twice


def _run_cli(argv: list[str]) -> None:
  """glcic-inpaint's own flag definitions and main, on a private FlagValues."""
  fv = flags.FlagValues()
  inpaint_command.define_flags(fv, sys_argv=argv)
  inpaint_command.main(fv(argv), fv)


def test_cli_with_pth_positional_inputs_and_seed(
  completer, photos, tmp_path, capsys
):
  folder, image, _ = photos
  pth = tmp_path / "g.pth"
  sd = interop.gl_state_dict(completer.variables, {"params": {}}, "bgr")
  interop.write_state_dict(pth, sd)
  base = ["glcic-inpaint", f"--checkpoint={pth}", f"--config={TINY_CONFIG}"]
  astro, jpeg = str(folder / "astro.png"), str(folder / "astro2.jpg")
  runs = []
  for run in ("a", "b"):
    out = tmp_path / run
    _run_cli(
      [*base, f"--input={astro}", jpeg, "--random_bbox", "--seed=3"]
      + [f"--output={out}"]
    )
    runs.append(out)
  printed = capsys.readouterr().out.splitlines()
  assert printed == [
    line
    for r in "ab"
    for line in [str(tmp_path / r / n) for n in ("astro.png", "astro2.png")]
    + [f"Wrote 2 completions to {tmp_path / r}."]
  ]
  first = np.asarray(Image.open(runs[0] / "astro.png"))
  np.testing.assert_array_equal(first, Image.open(runs[1] / "astro.png"))
  # --seed=3 draws the first input's hole as this generator does; the file
  # and the workdir hold the same weights: the same completion.
  hole = masks.random_bbox_mask(image.shape, np.random.default_rng(3))
  assert 0 < hole.mean() < 0.5
  np.testing.assert_array_equal(
    first[hole[..., 0] == 0], image[hole[..., 0] == 0]
  )
  np.testing.assert_array_equal(first, completer.complete(image, hole))
  for bad in (
    [f"--input={astro}", f"--output={tmp_path}"],  # no hole given
    [f"--input={astro}", "--bbox=1,2,3", f"--output={tmp_path}"],
    [
      f"--input={tmp_path}/nothing.png",
      "--random_bbox",
      f"--output={tmp_path}",
    ],
  ):
    with pytest.raises(app.UsageError):
      _run_cli([*base, *bad])
