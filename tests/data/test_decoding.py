"""The decoded-image cache crops exactly what per-example decoding crops;
images whose header declares too many pixels are skipped before decoding."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from glcic_jax.data import decoding
from glcic_jax.data import pipeline as input_pipeline
from glcic_jax.data.tf_runtime import tf
from tests.data.test_pipeline import take, tiny_config


def test_cached_batches_equal_decoded_batches_and_skip_the_same(photo_folder):
  # jpeg_crop_decode off: the cache decodes whole files, as that path does.
  decoded = tiny_config(data_root=str(photo_folder), jpeg_crop_decode=False)
  cached = tiny_config(data_root=str(photo_folder), decoded_cache_mib=64)
  pipelines = [
    input_pipeline.create_train_dataset(c, global_batch_size=8)
    for c in (decoded, cached)
  ]
  # 3 batches: 3 epochs of the 8 files, the corrupt one among them.
  expected, got = (take(p, 3) for p in pipelines)
  for want, have in zip(expected, got):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
  assert pipelines[0].skipped_files() == pipelines[1].skipped_files() == 3

  evals = [
    list(input_pipeline.create_eval_dataset(c, global_batch_size=3))
    for c in (decoded, cached)
  ]
  for want, have in zip(*evals):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
  assert 0 in np.concatenate([b["valid"] for b in evals[1]])


def test_cache_over_its_limit_names_the_field_and_a_file(photo_folder):
  config = tiny_config(data_root=str(photo_folder), decoded_cache_mib=1)
  with pytest.raises(ValueError, match=r"decoded_cache_mib \(1\) at .*"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)


def test_cache_of_a_tfds_source_is_refused():
  config = tiny_config(source="tfds", decoded_cache_mib=8)
  with pytest.raises(ValueError, match="decoded_cache_mib applies to file"):
    input_pipeline.create_train_dataset(config, global_batch_size=2)


@pytest.mark.parametrize(
  ("fmt", "options", "mode"),
  [
    ("PNG", {}, "RGB"),
    ("JPEG", {}, "RGB"),
    ("GIF", {}, "P"),
    ("BMP", {}, "RGB"),
    ("WEBP", {"lossless": False}, "RGB"),
    ("WEBP", {"lossless": True}, "RGB"),
    ("WEBP", {"lossless": False}, "RGBA"),  # VP8X
  ],
)
def test_declared_pixels_read_from_the_header(fmt, options, mode):
  image = Image.new(mode, (53, 37))
  buffer = io.BytesIO()
  image.save(buffer, fmt, **options)
  got = decoding.declared_pixels(tf.constant(buffer.getvalue()))
  assert int(got) == 53 * 37


def test_top_down_bmp_and_non_images():
  buffer = io.BytesIO()
  Image.new("RGB", (5, 7)).save(buffer, "BMP")
  data = bytearray(buffer.getvalue())
  data[22:26] = (-7).to_bytes(4, "little", signed=True)  # rows top-down
  assert int(decoding.declared_pixels(tf.constant(bytes(data)))) == 35
  for junk in (b"", b"GIF", b"not an image at all"):
    assert int(decoding.declared_pixels(tf.constant(junk))) == 0


@pytest.mark.parametrize("cache_mib", [0, 64])
def test_images_over_the_pixel_limit_are_skipped_before_decoding(
  photo_folder, tmp_path, cache_mib
):
  """A 48 KB PNG declaring 20000x20000 (400 MP, 1.2 GB as RGB) is skipped
  and counted like an unreadable file, and so are real photos above a
  lowered limit; the small ones still train."""
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in ("small.png", "photo.jpg"):
    (folder / name).write_bytes((photo_folder / name).read_bytes())
  Image.new("1", (20000, 20000)).save(folder / "bomb.png")
  config = tiny_config(
    data_root=str(folder), decoded_cache_mib=cache_mib, shuffle=False
  )
  # Unshuffled, example 0 is bomb.png (sorted first), replaced by the next
  # readable file in source order: photo.jpg, then small.png.
  pipeline = input_pipeline.create_train_dataset(config, global_batch_size=1)
  take(pipeline, 1)
  assert pipeline.skipped_files() == 1  # the bomb
  config.data.max_image_pixels = 70 * 100  # small.png's size
  pipeline = input_pipeline.create_train_dataset(config, global_batch_size=1)
  take(pipeline, 1)
  assert pipeline.skipped_files() == 2  # the bomb and photo.jpg


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
  ("crop_decode", "jfif"), [(False, True), (True, True), (True, False)]
)
def test_training_applies_exif_orientation_as_inpainting_does(
  orientation, crop_decode, jfif
):
  """A camera JPEG stored sideways with an EXIF orientation is trained on
  upright, as mmagic's OpenCV reader and glcic-inpaint (PIL) show it; the
  EXIF segment right after the JFIF one (PIL) or first (cameras)."""
  rows, cols = np.mgrid[:48, :80]
  pixels = np.stack([rows * 5, cols * 3, (rows + cols) % 256], -1)
  exif = Image.Exif()
  exif[0x0112] = orientation
  buffer = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(
    buffer, "JPEG", quality=98, exif=exif.tobytes()
  )
  encoded = buffer.getvalue()
  assert encoded[2:4] == b"\xff\xe0"  # PIL writes JFIF first
  if not jfif:
    encoded = encoded[:2] + encoded[4 + int.from_bytes(encoded[4:6], "big") :]
  want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(encoded))))
  words = tf.zeros([8], tf.int64)
  got = decoding.decode_and_crop(tf.constant(encoded), words, 1000, crop_decode)
  np.testing.assert_array_equal(got.numpy(), want)


def test_every_bundled_photo_decodes_in_both_ways():
  """The scikit-image photos the demo trains on, whatever their headers
  hold (hubble_deep_field.jpg's JFIF segment carries a thumbnail)."""
  from glcic_jax.data import sources

  data = tiny_config(source="skimage", skimage_split="all").data
  paths = list(sources.open_source(data).paths)
  assert len(paths) == len(sources.SKIMAGE_PHOTOS)
  words = tf.zeros([8], tf.int64)
  for path in paths:
    encoded = tf.io.read_file(path)
    whole = decoding.decode_whole(encoded, data.max_image_pixels)
    crop = decoding.decode_and_crop(encoded, words, 64, True)
    assert whole.shape[0] > 64 and crop.shape == (64, 64, 3), path
