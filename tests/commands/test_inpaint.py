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
from glcic_jax.inpaint import engine as engine_lib
from glcic_jax.inpaint import file_jobs, images, masks
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
  written = file_jobs.complete_files(
    completer,
    [str(folder)],
    str(out),
    mask=str(folder.parent / "mask.png"),
    output_format="png",
  ).written
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
  # By default each completion keeps its input's format.
  kept = file_jobs.complete_files(
    completer, [str(folder / "astro2.jpg")], str(out / "kept"), random_bbox=True
  ).written
  assert kept == [str(out / "kept" / "astro2.jpg")]
  assert Image.open(kept[0]).format == "JPEG"
  written = file_jobs.complete_files(
    completer,
    [str(folder / "astro.png")],
    str(out),
    bboxes=["10,20,50,60", "200,100,30,30"],
  ).written
  result = np.asarray(Image.open(written[0]))
  box = np.zeros((451, 300), bool)
  box[10:60, 20:80] = box[200:230, 100:130] = True
  np.testing.assert_array_equal(result[~box], image[~box])
  assert np.mean(result[box] != image[box]) > 0.5


def test_errors(completer, photos, tmp_path):
  folder, _, _ = photos
  astro = str(folder / "astro.png")
  small = tmp_path / "small.png"
  Image.fromarray(np.eye(10, dtype=np.uint8) * 255).save(small)
  with pytest.raises(ValueError, match="10x10 .*cannot be matched.*451x300"):
    file_jobs.complete_files(completer, [astro], str(tmp_path), mask=small)
  empty = tmp_path / "empty.png"
  Image.fromarray(np.zeros((451, 300), np.uint8)).save(empty)
  with pytest.raises(ValueError, match="no hole"):
    file_jobs.complete_files(completer, [astro], str(tmp_path), mask=empty)
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8 not a jpeg")
  report = file_jobs.complete_files(
    completer, [str(broken), astro], str(tmp_path / "o"), random_bbox=True
  )
  assert report.written == [str(tmp_path / "o" / "astro.png")]
  assert (
    report.failed[0][0] == str(broken) and "broken.jpg" in report.failed[0][1]
  )
  with pytest.raises(ValueError, match="exactly one"):
    file_jobs.complete_files(completer, [astro], str(tmp_path))
  with pytest.raises(ValueError, match="exactly one"):
    file_jobs.complete_files(
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
    for line in [str(tmp_path / r / n) for n in ("astro.png", "astro2.jpg")]
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
  engine = engine_lib.Engine(completer)  # what the command completes with
  np.testing.assert_array_equal(first, engine.complete(image, hole)[0])
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


def test_outputs_never_land_on_inputs(completer, photos, tmp_path):
  """Refused before any model work, and the inputs stay as they were: the
  input folder itself, a folder inside it, an output that would replace
  an input file; an --output that is a file."""
  folder, _, _ = photos
  before = {p.name: p.read_bytes() for p in folder.iterdir()}
  for output, message in (
    (folder, "inside the input folder"),
    (folder / "completed", "inside the input folder"),
  ):
    with pytest.raises(ValueError, match=message):
      file_jobs.plan([str(folder)], str(output), random_bbox=True)
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "a.png").write_bytes((folder / "astro.png").read_bytes())
  (inputs / "a_compare.png").write_bytes((folder / "astro.png").read_bytes())
  with pytest.raises(ValueError, match="would overwrite the input"):
    file_jobs.plan([str(inputs / "a.png")], str(inputs), random_bbox=True)
  with pytest.raises(ValueError, match="is a file, not a folder"):
    file_jobs.plan(
      [str(folder / "astro.png")], str(inputs / "a.png"), random_bbox=True
    )
  assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_cli_checks_before_loading_and_goes_on_past_bad_files(
  completer, photos, tmp_path, capsys, caplog
):
  folder, _, _ = photos
  pth = tmp_path / "g.pth"
  sd = interop.gl_state_dict(completer.variables, {"params": {}}, "bgr")
  interop.write_state_dict(pth, sd)
  base = ["glcic-inpaint", f"--checkpoint={pth}", f"--config={TINY_CONFIG}"]
  # The mask's size is checked before the (missing) model would load.
  small = tmp_path / "small.png"
  Image.fromarray(np.eye(10, dtype=np.uint8) * 255).save(small)
  missing = ["glcic-inpaint", f"--checkpoint={tmp_path / 'none.pth'}"]
  with pytest.raises(app.UsageError, match="small.png .*is 10x10"):
    _run_cli(
      [*missing, f"--input={folder}", f"--mask={small}", f"--output={tmp_path}"]
    )
  # A JPEG mask is warned about.
  jpeg_mask = tmp_path / "mask.jpg"
  Image.open(folder.parent / "mask.png").convert("RGB").save(jpeg_mask)
  mixed = tmp_path / "mixed"
  mixed.mkdir()
  (mixed / "a.png").write_bytes((folder / "astro.png").read_bytes())
  (mixed / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
  (mixed / "c.jpg").write_bytes((folder / "astro2.jpg").read_bytes())
  out = tmp_path / "out"
  with pytest.raises(
    RuntimeError, match=r"1 of 3 inputs .* the first: .*b.jpg"
  ):
    _run_cli(
      [*base, f"--input={mixed}", f"--mask={jpeg_mask}", f"--output={out}"]
    )
  assert sorted(os.listdir(out)) == [
    "a.png",
    "a_compare.png",
    "c.jpg",
    "c_compare.png",
  ]
  printed = capsys.readouterr().out
  assert (
    "Wrote 2 completions" in printed and f"Skipped {mixed / 'b.jpg'}" in printed
  )
  assert "JPEG" in caplog.text and "hole grows" in caplog.text


def test_a_mask_folder_pairs_masks_with_photos_by_name(
  completer, photos, tmp_path
):
  """photo.jpg takes masks/photo.png (a mask painted at half resolution is
  scaled up); a photo without a mask is skipped and reported."""
  folder, image, hole = photos
  inputs = tmp_path / "in"
  inputs.mkdir()
  for name in ("one.png", "two.png"):
    (inputs / name).write_bytes((folder / "astro.png").read_bytes())
  mask_dir = tmp_path / "masks"
  mask_dir.mkdir()
  small = Image.fromarray(hole.astype(np.uint8) * 255).resize((150, 226))
  small.save(mask_dir / "one.png")
  report = file_jobs.complete_files(
    completer, [str(inputs)], str(tmp_path / "out"), mask_dir=str(mask_dir)
  )
  assert report.written == [str(tmp_path / "out" / "one.png")]
  assert report.failed == [
    (str(inputs / "two.png"), f"no mask named two.* in {mask_dir}")
  ]
  result = np.asarray(Image.open(report.written[0]))
  scaled = masks.fit_to(np.asarray(small) > 0, image.shape, "mask")
  np.testing.assert_array_equal(result[~scaled], image[~scaled])
  assert np.mean(result[scaled] != image[scaled]) > 0.5
