"""Path tables: image lists parsed without per-line Python objects."""

import os

import pytest

from glcic_jax.data import sources
from glcic_jax.data.tf_runtime import tf

LIST = (
  "a/red.png 0\n\n  green.png   1 extra\n/a/blue.jpg\r\n"
  "//two/slashes.png 3\n\tcafé/ü.jpg\t4\nlast_without_newline.png"
)


def python_reference(text, data_root):
  """mmagic's reading of a list: the first field of each non-empty line."""
  fields = [line.split() for line in text.splitlines()]
  if data_root:
    return [os.path.join(data_root, w[0].lstrip("/")) for w in fields if w]
  return [w[0] for w in fields if w]


@pytest.mark.parametrize("chunk", [5, 16, 1 << 20])
@pytest.mark.parametrize("data_root", ["", "/data/places", "gs://bucket/p/"])
def test_image_list_parses_as_the_python_reading(data_root, chunk, monkeypatch):
  monkeypatch.setattr(sources, "_CHUNK", chunk)  # lines across chunks
  table = sources.parse_image_list(LIST.encode(), data_root)
  expected = python_reference(LIST, data_root)
  assert list(table) == expected
  looked_up = table.lookup(tf.range(len(table), dtype=tf.int64))
  assert [p.decode() for p in looked_up.numpy()] == expected
  picked = table.lookup(tf.constant([5, 0, 5], tf.int64)).numpy()
  assert [p.decode() for p in picked] == [expected[i] for i in (5, 0, 5)]


def test_table_from_strings_round_trips():
  paths = ["/x/a.png", "", "b/ü.jpg"]
  table = sources.PathTable.from_strings(paths)
  assert len(table) == 3 and list(table) == paths
  assert table[2] == "b/ü.jpg"
