"""Path tables: image lists parsed without per-line Python objects; folder
listings of regular image files; errors naming the config field."""

import logging
import os

import pytest

from glcic_jax import config as config_lib
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


def test_folders_list_regular_image_files_and_say_what_they_left_out(
  tmp_path, caplog
):
  """A FIFO named like an image would block its reader for ever: it is
  left out, and so are other extensions, counted in one warning."""
  (tmp_path / "sub").mkdir()
  for name in ("a.png", "sub/b.JPG", "c.gif", "d.webp"):
    (tmp_path / name).write_bytes(b"x")
  os.mkfifo(tmp_path / "pipe.png")
  (tmp_path / "notes.txt").write_text("x")
  (tmp_path / "sub" / "raw.tiff").write_bytes(b"x")
  (tmp_path / "README").write_text("x")
  data = config_lib.get_data_config()
  data.update(source="folder", data_root=str(tmp_path))
  with caplog.at_level(logging.WARNING):
    source = sources.open_source(data)
  names = sorted(os.path.relpath(p, tmp_path) for p in source.paths)
  assert names == ["a.png", "c.gif", "d.webp", "sub/b.JPG"]
  assert (
    "left out 1 (no extension), 1 .tiff, 1 .txt, 1 not a regular file"
    in caplog.text
  ), caplog.text


def test_folder_errors_name_the_section_and_field(tmp_path):
  data = config_lib.get_eval_data_config()
  data.update(source="folder", data_root=str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match=r"config\.eval_data\.data_root"):
    sources.open_source(data, section="eval_data")
  (tmp_path / "file.png").write_bytes(b"x")
  data.data_root = str(tmp_path / "file.png")
  with pytest.raises(NotADirectoryError, match=r"file\.png.* not a folder"):
    sources.open_source(data, section="eval_data")
