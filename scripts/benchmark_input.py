"""Images per second of the input pipeline, beside the way mmagic does it.

For each source, the tf.data pipeline (`create_train_dataset`, 256x256,
mmagic's 384 crop and 128 holes) runs with --num_parallel_calls, and the
same work is done the mmagic way: one Python worker with numpy and OpenCV
(cv2.imread as BGR, random crop, cv2.resize bilinear, random_bbox in numpy,
the mask, the masked image, normalisation), cv2 single-threaded as mmengine
sets it in data workers. "per core" divides images by the CPU seconds the
process used (all threads), so it compares the work per image whatever the
parallelism.

  python scripts/benchmark_input.py --num_parallel_calls=2 --num_images=512

Sources: the scikit-image photos (PNG/JPEG, 300 to 1411 px), a temp folder
of generated JPEGs shaped like Places365-Challenge's data_large (683x512),
and a TFDS split prepared from 256x256 JPEGs (places365_small's shape;
TFDS records are encoded bytes, read without decoding).
"""

from __future__ import annotations

import os
import tempfile
import time

import cv2
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app, flags

from glcic_jax import config as config_lib
from glcic_jax.data import pipeline as input_pipeline
from glcic_jax.data import sources as image_sources

_PARALLEL = flags.DEFINE_integer(
  "num_parallel_calls", -1, "tf.data parallelism; -1 = AUTOTUNE."
)
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "Images timed per run.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Global batch size.")
_NUM_FILES = flags.DEFINE_integer("num_files", 64, "Generated JPEGs.")
_CROP_DECODE = flags.DEFINE_bool(
  "jpeg_crop_decode", True, "config.data.jpeg_crop_decode."
)
_LIST_PATHS = flags.DEFINE_integer(
  "list_paths",
  0,
  "> 0: instead of the rates, time the start-up of an image list of this "
  "many synthetic paths (Places365-Challenge: 8,000,000), against the "
  "previous reading (Python strings, one tf.constant) at --list_baseline.",
)
_LIST_BASELINE = flags.DEFINE_integer(
  "list_baseline", 1_000_000, "Paths of the previous reading's row."
)
_LIST_CHILD = flags.DEFINE_string(
  "list_child", "", "Internal: 'ours' or 'before' in a fresh process."
)
_LIST_FILE = flags.DEFINE_string("list_file", "", "Internal: the list.")
_SOURCES = flags.DEFINE_list(
  "sources", ["skimage", "folder", "tfds"], "Sources to time."
)


def _photo_like(rng, height, width):
  """Smooth noise plus edges: JPEG sizes close to real photos'."""
  small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
  image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
  noise = rng.normal(0, 12, image.shape)
  return np.clip(image + noise, 0, 255).astype(np.uint8)


def _jpeg_bytes(image):
  ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
  assert ok
  return encoded.tobytes()


def _config(source, **data):
  config = config_lib.get_base_config()
  config.data.source = source
  config.data.num_parallel_calls = _PARALLEL.value
  config.data.jpeg_crop_decode = _CROP_DECODE.value
  config.data.update(data)
  return config


def time_pipeline(config):
  """(images/s, images per CPU second) of the tf.data pipeline."""
  pipeline = input_pipeline.create_train_dataset(
    config, global_batch_size=_BATCH.value
  )
  iterator = iter(pipeline)
  for _ in range(3):  # warm-up: tracing, thread pools, autotune
    next(iterator)
  batches = max(1, _NUM_IMAGES.value // _BATCH.value)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(iterator)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  images = batches * _BATCH.value
  return images / wall, images / cpu


def _random_bbox(rng, size=256, shape=128, delta=40, margin=20):
  """mmagic's random_bbox (bbox_utils.py), square case."""
  top = rng.integers(margin, size - margin - shape)
  left = rng.integers(margin, size - margin - shape)
  dt = rng.integers(0, delta // 2 + 1)
  dl = rng.integers(0, delta // 2 + 1)
  return top + dt, left + dl, shape - dt, shape - dl


def _mmagic_example(bgr, rng, crop=384, size=256):
  h, w = bgr.shape[:2]
  ch, cw = min(crop, h), min(crop, w)
  y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
  image = cv2.resize(
    bgr[y : y + ch, x : x + cw], (size, size), interpolation=cv2.INTER_LINEAR
  )
  top, left, bh, bw = _random_bbox(rng)
  mask = np.zeros((size, size, 1), np.float32)
  mask[top : top + bh, left : left + bw] = 1.0
  gt = image.astype(np.float32)
  masked = gt * (1.0 - mask) + 127.5 * mask
  return (gt - 127.5) / 127.5, (masked - 127.5) / 127.5, mask


def time_mmagic_way(load, count):
  """(images/s, images per CPU second) of one numpy + OpenCV worker."""
  cv2.setNumThreads(0)
  rng = np.random.default_rng(0)
  for i in range(8):
    _mmagic_example(load(i % count), rng)
  images = _NUM_IMAGES.value
  wall, cpu = time.perf_counter(), time.process_time()
  for i in range(images):
    _mmagic_example(load(i % count), rng)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return images / wall, images / cpu


def _skimage(_):
  config = _config("skimage", skimage_split="all")
  paths = image_sources.open_source(config.data).paths
  return (
    f"skimage ({len(paths)} photos)",
    lambda: time_pipeline(config),
    lambda: time_mmagic_way(lambda i: cv2.imread(paths[i]), len(paths)),
  )


def _folder(workdir):
  rng = np.random.default_rng(0)
  paths = []
  for i in range(_NUM_FILES.value):
    path = os.path.join(workdir, f"{i:05d}.jpg")
    shape = (512, 683) if i % 2 else (683, 512)
    with open(path, "wb") as f:
      f.write(_jpeg_bytes(_photo_like(rng, *shape)))
    paths.append(path)
  config = _config("folder", data_root=workdir)
  return (
    f"folder ({len(paths)} JPEG 683x512)",
    lambda: time_pipeline(config),
    lambda: time_mmagic_way(lambda i: cv2.imread(paths[i]), len(paths)),
  )


def _tfds(workdir):
  """A TFDS split prepared for real (TFRecord, TFDS's default format) from
  256x256 JPEGs, as places365_small holds them."""
  rng = np.random.default_rng(1)
  images = np.stack(
    [_photo_like(rng, 256, 256) for _ in range(_NUM_FILES.value)]
  )
  data_dir = os.path.join(workdir, "tfds")
  tfds.dataset_builders.TfDataBuilder(
    name="places_like",
    version="1.0.0",
    split_datasets={
      "train": tf.data.Dataset.from_tensor_slices({"image": images})
    },
    features=tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(
          shape=(256, 256, 3), encoding_format="jpeg"
        )
      }
    ),
    data_dir=data_dir,
  ).download_and_prepare()
  blobs = [_jpeg_bytes(image) for image in images]
  arrays = [np.frombuffer(b, np.uint8) for b in blobs]
  config = _config("tfds", tfds_name="places_like", tfds_data_dir=data_dir)
  return (
    f"tfds ({len(blobs)} JPEG 256x256)",
    lambda: time_pipeline(config),
    lambda: time_mmagic_way(
      lambda i: cv2.imdecode(arrays[i], cv2.IMREAD_COLOR), len(arrays)
    ),
  )


def _rss_mib(field="VmRSS"):
  with open("/proc/self/status") as f:
    line = next(line for line in f if line.startswith(field + ":"))
  return int(line.split()[1]) / 1024


def _list_child(kind, list_file):
  """Prints seconds and peak memory of one start-up on an image list."""
  import json

  before = _rss_mib()
  start = time.perf_counter()
  if kind == "ours":
    config = _config("image_list", image_list=list_file, data_root="/data")
    input_pipeline.create_train_dataset(config, global_batch_size=_BATCH.value)
  else:  # the reading this project had: Python strings, one tf.constant
    with tf.io.gfile.GFile(list_file) as f:
      fields = [line.split() for line in f]
    paths = tuple(os.path.join("/data", w[0].lstrip("/")) for w in fields if w)
    table = tf.constant(paths)
    lookup = lambda ids: tf.gather(table, ids)  # noqa: E731
  startup = time.perf_counter() - start
  memory = _rss_mib("VmHWM") - before
  if kind == "ours":  # a second table, only to time its lookups
    lookup = image_sources.open_source(config.data).paths.lookup
  ids = tf.constant(np.random.default_rng(0).integers(0, 1000, 4096))
  lookup(ids)
  start = time.perf_counter()
  for _ in range(10):
    lookup(ids)
  per_path = (time.perf_counter() - start) / 10 / 4096
  print(
    json.dumps(
      dict(
        startup_s=startup,
        memory_mib=memory,
        lookup_us=per_path * 1e6,
      )
    )
  )


def list_startup():
  """The table of --list_paths: ours at N against the previous reading."""
  import json
  import subprocess
  import sys

  rows = [("PathTable (ours)", _LIST_PATHS.value, "ours")]
  rows.append(("Python strings + tf.constant", _LIST_BASELINE.value, "before"))
  print(
    f"{'image list reading':30} {'paths':>10} {'start-up s':>10} "
    f"{'memory MiB':>10} {'lookup us':>9}"
  )
  results = {}
  with tempfile.TemporaryDirectory() as workdir:
    for name, count, kind in rows:
      list_file = os.path.join(workdir, f"{count}.txt")
      if not os.path.exists(list_file):
        with open(list_file, "w") as f:  # Places365's format
          for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            f.write(
              "".join(
                f"/a/airfield/{i:08d}.jpg {i % 365}\n"
                for i in range(start, stop)
              )
            )
      out = subprocess.run(
        [
          sys.executable,
          __file__,
          f"--list_child={kind}",
          f"--list_file={list_file}",
          f"--batch_size={_BATCH.value}",
        ],
        check=True,
        capture_output=True,
        text=True,
      ).stdout
      results[kind] = json.loads(out.strip().splitlines()[-1]) | {"n": count}
      r = results[kind]
      print(
        f"{name:30} {count:10,} {r['startup_s']:10.2f} "
        f"{r['memory_mib']:10.0f} {r['lookup_us']:9.3f}",
        flush=True,
      )
  ours, before = results["ours"], results["before"]
  scale = ours["n"] / before["n"]
  print(
    f"per path, ours / before: start-up "
    f"{ours['startup_s'] / (before['startup_s'] * scale):.3f}, memory "
    f"{ours['memory_mib'] / (before['memory_mib'] * scale):.3f}"
  )


def main(argv):
  del argv
  if _LIST_CHILD.value:
    return _list_child(_LIST_CHILD.value, _LIST_FILE.value)
  if _LIST_PATHS.value:
    return list_startup()
  tf.config.set_visible_devices([], "GPU")
  cores = os.cpu_count()
  print(
    f"{cores} CPU cores, num_parallel_calls={_PARALLEL.value}, "
    f"jpeg_crop_decode={_CROP_DECODE.value}, "
    f"{_NUM_IMAGES.value} images per run, 256x256 output\n"
  )
  header = (
    f"{'source':30} {'tf.data img/s':>13} {'per core':>9} "
    f"{'cv2 img/s':>10} {'per core':>9} {'ratio':>6} {'core ratio':>10}"
  )
  print(header)
  print("-" * len(header))
  builders = {"skimage": _skimage, "folder": _folder, "tfds": _tfds}
  with tempfile.TemporaryDirectory() as workdir:
    for source in _SOURCES.value:
      name, run_tf, run_cv = builders[source](workdir)
      tf_rate, tf_core = run_tf()
      cv_rate, cv_core = run_cv()
      print(
        f"{name:30} {tf_rate:13.1f} {tf_core:9.1f} {cv_rate:10.1f} "
        f"{cv_core:9.1f} {tf_rate / cv_rate:6.2f} {tf_core / cv_core:10.2f}",
        flush=True,
      )


if __name__ == "__main__":
  app.run(main)
