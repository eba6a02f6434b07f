"""The completion engine: photos of any size completed at the trained
scale (crop windows around the holes), resize and original strategies,
shape buckets, a memory estimate before any work, and every known pixel
returned bit for bit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import skimage.data
import skimage.transform

from glcic_jax.inpaint import completer as inference
from glcic_jax.inpaint import engine as engine_lib
from tests.inpaint.test_completer import save_tiny_checkpoint


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(workdir)
  return engine_lib.Engine(inference.load_generator(workdir))


def big_photo(height: int, width: int) -> np.ndarray:
  """The astronaut scaled up to a camera-sized photo."""
  image = skimage.transform.resize(
    skimage.data.astronaut(), (height, width), order=1, preserve_range=True
  )
  return image.astype(np.uint8)


def square_hole(shape, top, left, side):
  hole = np.zeros(shape[:2], bool)
  hole[top : top + side, left : left + side] = True
  return hole


def test_buckets():
  assert [engine_lib.bucket_side(s) for s in (1, 64, 65, 97, 129, 300)] == [
    64,
    64,
    96,
    128,
    192,
    384,
  ]
  assert engine_lib.bucket_side(30, trained=32) == 32
  assert engine_lib.bucket_side(9000) == 9216
  assert [engine_lib.batch_bucket(n) for n in (1, 2, 3, 5)] == [1, 2, 4, 8]


def test_windows_follow_the_holes():
  hole = np.zeros((1000, 1500), bool)
  hole[100:140, 100:150] = True  # small: a trained-size window
  hole[600:900, 1000:1300] = True  # large: twice its side, clipped
  hole[120:130, 200:205] = True  # near the first: merged with it
  windows = engine_lib.hole_windows(hole, 256)
  assert len(windows) == 2
  (t0, l0, b0, r0), (t1, l1, b1, r1) = windows
  assert (b0 - t0, r0 - l0) == (256, 256) and t0 <= 100 and r0 >= 205
  assert b1 - t1 == 600 and r1 - l1 == 600 and b1 <= 1000 and r1 <= 1500


def test_crop_completes_a_large_photo_around_its_hole_only(engine):
  image = big_photo(1500, 2000)
  hole = square_hole(image.shape, 700, 900, 150)
  started = time.perf_counter()
  out, report = engine.complete(image, hole)
  crop_seconds = time.perf_counter() - started
  assert report.strategy == "crop" and report.network_sides == [(32, 32)]
  np.testing.assert_array_equal(out[~hole], image[~hole])
  assert np.mean(out[hole] != image[hole]) > 0.5
  started = time.perf_counter()
  full, report = engine.complete(image, hole, strategy="original")
  assert report.network_sides == [(1536, 2048)]
  assert time.perf_counter() - started > crop_seconds
  np.testing.assert_array_equal(full[~hole], image[~hole])


def test_resize_and_original_keep_known_pixels(engine):
  image = big_photo(90, 130)
  hole = square_hole(image.shape, 20, 30, 25)
  for strategy in ("resize", "original", "auto"):
    out, report = engine.complete(image, hole, strategy=strategy)
    np.testing.assert_array_equal(out[~hole], image[~hole])
    assert np.mean(out[hole] != image[hole]) > 0.5, strategy
  assert report.strategy == "crop"  # 130 > 1.5 x 32: auto crops


def test_original_at_a_bucket_size_equals_the_completer(engine):
  image = big_photo(64, 96)
  hole = square_hole(image.shape, 10, 20, 20)
  out, _ = engine.complete(image, hole, strategy="original")
  np.testing.assert_array_equal(out, engine.completer.complete(image, hole))


def test_a_strategy_that_cannot_fit_says_so_before_any_work(engine):
  limited = engine_lib.Engine(engine.completer, memory_limit=2**30)
  image = np.zeros((4000, 6000, 3), np.uint8)
  hole = square_hole(image.shape, 2000, 3000, 120)
  started = time.perf_counter()
  with pytest.raises(engine_lib.OutOfMemoryEstimate, match="strategy=crop"):
    limited.complete(image, hole, strategy="original")
  assert time.perf_counter() - started < 30
  out, report = limited.complete(image, hole)
  assert report.strategy == "crop"


def test_another_scale_is_allowed_and_warned_about(engine, caplog):
  image = big_photo(200, 200)
  hole = square_hole(image.shape, 80, 80, 30)
  with caplog.at_level("WARNING"):
    out, report = engine.complete(image, hole, size=64)
  assert "trained at 32 px" in caplog.text
  assert report.network_sides == [(64, 64)]
  np.testing.assert_array_equal(out[~hole], image[~hole])


def test_random_sizes_compile_a_handful_of_programs(engine):
  rng = np.random.default_rng(0)
  shapes = set()
  for _ in range(20):
    h, w = rng.integers(20, 48, 2)
    image = big_photo(int(h), int(w))
    hole = square_hole(image.shape, 3, 4, 8)
    _, report = engine.complete(image, hole, strategy="original")
    shapes.update(report.network_sides)
  assert len(shapes) <= 4, shapes
