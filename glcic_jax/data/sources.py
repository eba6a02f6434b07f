"""Which images a run reads: TFDS, an mmagic image list, a folder, or the
photos inside scikit-image (the zero-download default for the demo and
tests).

`open_source(config.data)` lists them once, with a clear error naming the
missing dataset, list file or folder, or an empty source. File sources are
sorted paths (independent of the file system's listing order); TFDS splits
are read by index or as this process's share of a stream (`tfds_source`),
decoded later by the pipeline.
"""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
from absl import logging

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


class PathTable:
  """File paths as one byte-string tensor plus offsets, and a prefix.

  Places365-Challenge lists 8M files: as Python or TensorFlow string objects
  that is GiBs and a minute of start-up per process; as one buffer it is
  about the bytes of the list (scripts/benchmark_input.py --list_paths).
  The tensors are made once and shared by every tf.data function that
  looks paths up (`lookup`).
  """

  def __init__(
    self,
    buffer: bytes | tf.Tensor,
    starts: np.ndarray,
    lengths: np.ndarray,
    prefix: str = "",
  ):
    # Variables, so that tf.data functions capture a handle instead of
    # copying the buffer into their graphs.
    self._buffer = tf.Variable(buffer, trainable=False)
    self._starts = tf.Variable(starts.astype(np.int64), trainable=False)
    self._lengths = tf.Variable(lengths.astype(np.int64), trainable=False)
    self._count = len(starts)
    self.prefix = prefix  # '' or a folder ending in '/'

  @classmethod
  def from_strings(cls, paths: Sequence[str]) -> PathTable:
    encoded = [p.encode() for p in paths]
    lengths = np.array([len(e) for e in encoded], np.int64)
    return cls(b"".join(encoded), np.cumsum(lengths) - lengths, lengths)

  def __len__(self) -> int:
    return self._count

  def __getitem__(self, i: int) -> str:
    return self.lookup(tf.constant([i], tf.int64))[0].numpy().decode()

  def __iter__(self) -> Iterator[str]:
    every = self.lookup(tf.range(self._count, dtype=tf.int64)).numpy()
    return (path.decode() for path in every)

  def lookup(self, indices: tf.Tensor) -> tf.Tensor:
    """The paths at int64 `indices`, as a string tensor (graph or eager)."""
    names = tf.strings.substr(
      self._buffer,
      tf.gather(self._starts, indices),
      tf.gather(self._lengths, indices),
    )
    return tf.strings.join([self.prefix, names]) if self.prefix else names


# bytes.split()'s whitespace, as a table over byte values.
_SPACE = np.zeros(256, bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True
_CHUNK = 1 << 20  # bytes parsed at once: temporaries stay in the cache


def _first_fields(buffer: np.ndarray, offset: int, strip_slash: bool):
  """(starts, ends) of the first field of each line of whole lines.

  Two passes over the bytes (the whitespace and its positions); the rest
  works on the few whitespace positions per line.
  """
  size = len(buffer)
  gaps = np.flatnonzero(buffer <= 32)  # whitespace and rare control bytes
  gaps = gaps[_SPACE[buffer[gaps]]]
  # A field starts after a gap byte not followed by another, or at 0; it
  # ends at a gap byte not preceded by another, or at the end.
  apart = gaps[1:] != gaps[:-1] + 1
  opens = np.concatenate([apart, [True]]) & (gaps + 1 < size)
  closes = np.concatenate([[True], apart]) & (gaps > 0)
  newlines = np.cumsum(buffer[gaps] == 10)  # newlines up to each gap byte
  starts, lines = gaps[opens] + 1, newlines[opens]
  ends = gaps[closes]
  if size and not _SPACE[buffer[0]]:
    starts = np.concatenate([[0], starts])
    lines = np.concatenate([[0], lines])
  if size and not _SPACE[buffer[-1]]:
    ends = np.concatenate([ends, [size]])
  first = np.concatenate([[True], lines[1:] != lines[:-1]])
  starts, ends = starts[first], ends[first]
  while strip_slash:  # Places365's '/a/airfield/...' stays under the root
    slash = (starts < ends) & (buffer[np.minimum(starts, ends - 1)] == 47)
    if not slash.any():
      break
    starts = starts + slash
  return starts + offset, ends + offset


def parse_image_list(contents: bytes | tf.Tensor, data_root: str) -> PathTable:
  """The first whitespace-separated field of each line (mmagic's list
  format), parsed by numpy over the bytes, never a Python object per line.
  With a data_root, leading '/' are dropped so the path stays under it.
  `contents` may be the scalar string tensor of tf.io.read_file, which the
  table then keeps without a copy."""
  text = contents.numpy() if isinstance(contents, tf.Tensor) else contents
  buffer = np.frombuffer(text, np.uint8)
  pieces, begin = [], 0
  while begin < len(buffer):
    end = text.find(b"\n", begin + _CHUNK) + 1 or len(buffer)  # whole lines
    pieces.append(_first_fields(buffer[begin:end], begin, bool(data_root)))
    begin = end
  starts = np.concatenate([p[0] for p in pieces] or [np.zeros(0, np.int64)])
  ends = np.concatenate([p[1] for p in pieces] or [np.zeros(0, np.int64)])
  prefix = os.path.join(data_root, "") if data_root else ""
  return PathTable(contents, starts, ends - starts, prefix)


class Source:
  """Encoded images, reachable in one of three ways (exactly one is set):
  `paths` (a PathTable of files), `read` (int64 index -> encoded bytes, a
  random-access TFDS split) or `records` (a stream of (index, bytes): this
  process's share of a TFDS split, whose share sizes are `share_sizes`).
  `num_examples` counts the whole source."""

  def __init__(
    self,
    name,
    *,
    paths=None,
    read=None,
    records=None,
    num_examples=0,
    share_sizes=(),
  ):
    self.name = name
    self.paths = paths
    self.read = read
    self.records = records
    self.share_sizes = tuple(share_sizes)
    self.num_examples = num_examples if paths is None else len(paths)
    if self.num_examples == 0:
      raise ValueError(f"The image source {name} holds no images.")

  @property
  def indexed(self) -> bool:
    """Whether image i can be read without reading the ones before it."""
    return self.records is None

  def names(self, indices: tf.Tensor) -> tf.Tensor:
    """What errors and logs call the images at `indices`."""
    if self.paths is not None:
      return self.paths.lookup(indices)
    label = tf.strings.as_string(indices)
    return tf.strings.join([self.name, "[", label, "]"])


def _skimage_paths(split: str, section: str) -> list[str]:
  import skimage.data

  folder = os.path.dirname(skimage.data.__file__)
  splits = {
    "train": [p for p in SKIMAGE_PHOTOS if p not in SKIMAGE_HELDOUT],
    "heldout": SKIMAGE_HELDOUT,
    "all": SKIMAGE_PHOTOS,
  }
  if split not in splits:
    raise ValueError(
      f"config.{section}.skimage_split must be one of {list(splits)}, not "
      f"{split!r}."
    )
  names = splits[split]
  paths = [os.path.join(folder, name) for name in names]
  return [p for p in paths if os.path.exists(p)]


def _folder_paths(folder: str, section: str) -> list[str]:
  """The image files under `folder`, sorted; what else is there (other
  extensions, FIFOs and devices, which would block or fail a reader) is
  left out and logged, counted by kind."""
  if not tf.io.gfile.exists(folder):
    raise FileNotFoundError(
      f"Image folder {folder!r} (config.{section}.data_root) not found."
    )
  if not tf.io.gfile.isdir(folder):
    raise NotADirectoryError(
      f"config.{section}.data_root {folder!r} is a file, not a folder."
    )
  local = "://" not in folder
  paths, left_out = [], collections.Counter()
  for root, _, names in tf.io.gfile.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      extension = os.path.splitext(name)[1].lower() or "(no extension)"
      if extension not in IMAGE_EXTENSIONS:
        left_out[extension] += 1
      elif local and not _is_regular_file(path):
        left_out["not a regular file"] += 1
      else:
        paths.append(path)
  if left_out:
    logging.warning(
      "Image folder %s: left out %s (images are %s).",
      folder,
      ", ".join(f"{n} {kind}" for kind, n in sorted(left_out.items())),
      " ".join(IMAGE_EXTENSIONS),
    )
  return sorted(paths)  # independent of the file system's listing order


def blocking_files(paths: Sequence[str]) -> list[str]:
  """The local `paths` that exist but are not regular files (FIFOs,
  devices): reading them can block for ever."""
  return [
    p
    for p in paths
    if "://" not in p and os.path.exists(p) and not _is_regular_file(p)
  ]


def _is_regular_file(path: str) -> bool:
  """A regular file, or a link to one: a FIFO would block its reader."""
  try:
    return stat.S_ISREG(os.stat(path).st_mode)
  except OSError:
    return False


def _image_list_paths(
  list_file: str, data_root: str, section: str
) -> PathTable:
  """mmagic's list format: one path per line relative to data_root; any
  further whitespace-separated fields on a line (labels) are ignored.

  Places365's own lists write '/a/airfield/00000001.jpg': with a data_root
  the leading '/' is dropped so the path stays under the root.
  """
  if not tf.io.gfile.exists(list_file):
    raise FileNotFoundError(
      f"Image list {list_file!r} (config.{section}.image_list) not found."
    )
  return parse_image_list(tf.io.read_file(list_file), data_root)


def open_source(
  data: ml_collections.ConfigDict,
  process_index: int = 0,
  process_count: int = 1,
  section: str = "data",
) -> Source:
  """The images named by data.source, with clear errors for missing ones;
  `section` is the config section `data` is (errors name its fields).

  File sources are the same on every process; a TFDS split that is not
  random access is this process's share (`tfds_source`).
  """
  if data.source == "tfds":
    from glcic_jax.data import tfds_source  # it builds on Source

    return tfds_source.open_tfds(data, process_index, process_count, section)
  if data.source == "skimage":
    name, paths = (
      f"skimage.data ({data.skimage_split})",
      _skimage_paths(data.skimage_split, section),
    )
  elif data.source == "folder":
    name = f"folder {data.data_root!r}"
    paths = _folder_paths(data.data_root, section)
  elif data.source == "image_list":
    name = f"image list {data.image_list!r}"
    paths = _image_list_paths(data.image_list, data.data_root, section)
  else:
    raise ValueError(
      f"config.{section}.source must be 'tfds', 'image_list', 'folder' or "
      f"'skimage', not {data.source!r}."
    )
  if not isinstance(paths, PathTable):
    paths = PathTable.from_strings(paths)
  return Source(name, paths=paths)
