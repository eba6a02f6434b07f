"""Which images a run reads: TFDS, an mmagic image list, a folder, or the
photos inside scikit-image (the zero-download default for the demo and
tests).

`open_source(config.data)` lists them once, with a clear error naming the
missing dataset, list file or folder, or an empty source. File sources are
sorted paths (independent of the file system's listing order); TFDS splits
are a stream of (index, encoded bytes), decoded later by the pipeline.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from glcic_jax.data import IMAGE_EXTENSIONS
from glcic_jax.data.tf_runtime import tf

# The scikit-image photos used as the zero-download source. The two held
# out ('heldout' split) are never seen by a 'train' run, so the demo can
# report metrics on unseen pictures. Missing files are left out.
SKIMAGE_PHOTOS = tuple(
  """astronaut.png brick.png camera.png cell.png chelsea.png clock_motion.png
  coffee.png coins.png grass.png gravel.png hubble_deep_field.jpg ihc.png
  moon.png motorcycle_left.png motorcycle_right.png retina.jpg rocket.jpg
  """.split()
)
SKIMAGE_HELDOUT = ("chelsea.png", "coffee.png")


class Source:
  """Encoded images: a list of files, or a TFDS split as (index, bytes)."""

  def __init__(self, name, *, paths=None, records=None, num_examples=0):
    self.name = name
    self.paths = paths
    self.records = records
    self.num_examples = num_examples if paths is None else len(paths)
    if self.num_examples == 0:
      raise ValueError(f"The image source {name} is empty.")


def _skimage_paths(split: str) -> list[str]:
  import skimage.data

  folder = os.path.dirname(skimage.data.__file__)
  splits = {
    "train": [p for p in SKIMAGE_PHOTOS if p not in SKIMAGE_HELDOUT],
    "heldout": SKIMAGE_HELDOUT,
    "all": SKIMAGE_PHOTOS,
  }
  if split not in splits:
    raise ValueError(
      f"config.data.skimage_split must be one of {list(splits)}, not {split!r}."
    )
  names = splits[split]
  paths = [os.path.join(folder, name) for name in names]
  return [p for p in paths if os.path.exists(p)]


def _folder_paths(folder: str) -> list[str]:
  if not tf.io.gfile.isdir(folder):
    raise FileNotFoundError(
      f"Image folder {folder!r} (config.data.data_root) not found."
    )
  paths = []
  for root, _, files in tf.io.gfile.walk(folder):
    paths += [
      os.path.join(root, f)
      for f in files
      if f.lower().endswith(IMAGE_EXTENSIONS)
    ]
  return sorted(paths)  # independent of the file system's listing order


def _image_list_paths(list_file: str, data_root: str) -> list[str]:
  """mmagic's list format: one path per line relative to data_root; any
  further whitespace-separated fields on a line (labels) are ignored.

  Places365's own lists write '/a/airfield/00000001.jpg': with a data_root
  the leading '/' is dropped so the path stays under the root.
  """
  if not tf.io.gfile.exists(list_file):
    raise FileNotFoundError(
      f"Image list {list_file!r} (config.data.image_list) not found."
    )
  with tf.io.gfile.GFile(list_file) as f:
    fields = [line.split() for line in f]
  if data_root:
    return [os.path.join(data_root, w[0].lstrip("/")) for w in fields if w]
  return [w[0] for w in fields if w]


def _tfds_records(data: ml_collections.ConfigDict) -> Source:
  import tensorflow_datasets as tfds

  name = f"tfds:{data.tfds_name}/{data.tfds_split}"
  try:
    dataset = tfds.load(
      data.tfds_name,
      split=data.tfds_split,
      data_dir=data.tfds_data_dir or None,
      download=data.tfds_download,
      shuffle_files=False,  # one order for every process and every run
      decoders={data.tfds_image_key: tfds.decode.SkipDecoding()},
    )
  except (AssertionError, tfds.core.registered.DatasetNotFoundError) as e:
    raise FileNotFoundError(
      f"TFDS dataset {data.tfds_name!r} split {data.tfds_split!r} is not "
      f"prepared in {data.tfds_data_dir or 'the default data_dir'} and "
      f"config.data.tfds_download is {data.tfds_download}: {e}"
    ) from e
  records = dataset.map(lambda ex: ex[data.tfds_image_key]).enumerate()
  count = int(records.cardinality())
  if count < 0:  # unknown: count the records once (no decoding)
    count = int(records.reduce(np.int64(0), lambda n, _: n + 1))
  return Source(name, records=records, num_examples=count)


def open_source(data: ml_collections.ConfigDict) -> Source:
  """The images named by data.source, with clear errors for missing ones."""
  if data.source == "tfds":
    return _tfds_records(data)
  if data.source == "skimage":
    name, paths = (
      f"skimage.data ({data.skimage_split})",
      _skimage_paths(data.skimage_split),
    )
  elif data.source == "folder":
    name, paths = f"folder {data.data_root!r}", _folder_paths(data.data_root)
  elif data.source == "image_list":
    name = f"image list {data.image_list!r}"
    paths = _image_list_paths(data.image_list, data.data_root)
  else:
    raise ValueError(
      f"config.data.source must be 'tfds', 'image_list', 'folder' or "
      f"'skimage', not {data.source!r}."
    )
  return Source(name, paths=tuple(paths))
