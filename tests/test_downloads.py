"""Weights by URL, against a real HTTP server on 127.0.0.1 (no test reaches
outside this machine): a good file is downloaded once and then served
from the cache, a cut download resumes, a file whose hash does not match
its name is refused and deleted, --offline uses the cache alone."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from glcic_jax import downloads

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
  """/good/<name>: the payload, with Range support; /cut/<name>: the first
  third of it under a Content-Length of the whole (a dropped connection);
  /other/<name>: other bytes."""

  def do_GET(self):  # noqa: N802  (http.server's name)
    kind = self.path.split("/")[1]
    self.server.requests.append((self.path, self.headers.get("Range")))
    body = PAYLOAD if kind != "other" else PAYLOAD[::-1]
    start = 0
    if self.headers.get("Range"):
      start = int(self.headers["Range"].split("=")[1].rstrip("-"))
    self.send_response(206 if start else 200)
    self.send_header("Content-Length", str(len(body) - start))
    self.end_headers()
    if kind == "cut":
      self.wfile.write(body[start : len(body) // 3])
      self.wfile.flush()
      self.connection.shutdown(2)
      return
    self.wfile.write(body[start:])

  def log_message(self, *args):
    pass


@pytest.fixture
def server():
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  httpd.requests = []
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd
  httpd.shutdown()


def _url(server, kind: str) -> str:
  digest = hashlib.sha256(PAYLOAD).hexdigest()[:8]
  return f"http://127.0.0.1:{server.server_port}/{kind}/gl_test-{digest}.pth"


def test_good_file_is_downloaded_once_then_cached(server, tmp_path):
  path = downloads.fetch(_url(server, "good"), cache=str(tmp_path))
  assert open(path, "rb").read() == PAYLOAD
  assert os.listdir(tmp_path) == [os.path.basename(path)]
  again = downloads.fetch(_url(server, "good"), cache=str(tmp_path))
  assert again == path and len(server.requests) == 1
  offline = downloads.fetch(
    _url(server, "good"), cache=str(tmp_path), offline=True
  )
  assert offline == path


def test_a_cut_download_resumes_where_it_stopped(server, tmp_path):
  with pytest.raises(downloads.DownloadError, match="run again to resume"):
    downloads.fetch(_url(server, "cut"), cache=str(tmp_path), progress=False)
  partial = [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
  assert len(partial) == 1
  assert os.path.getsize(tmp_path / partial[0]) == len(PAYLOAD) // 3
  # The same name from a server that now sends it whole: a Range request.
  good = _url(server, "good")
  os.rename(
    tmp_path / partial[0], tmp_path / (os.path.basename(good) + ".partial")
  )
  path = downloads.fetch(good, cache=str(tmp_path), progress=False)
  assert open(path, "rb").read() == PAYLOAD
  assert server.requests[-1][1] == f"bytes={len(PAYLOAD) // 3}-"


def test_a_hash_mismatch_is_refused_and_deleted(server, tmp_path):
  with pytest.raises(downloads.DownloadError, match="SHA-256 begins"):
    downloads.fetch(_url(server, "other"), cache=str(tmp_path), progress=False)
  assert os.listdir(tmp_path) == []


def test_offline_without_the_file_says_so(server, tmp_path):
  with pytest.raises(downloads.DownloadError, match="--offline"):
    downloads.fetch(_url(server, "good"), cache=str(tmp_path), offline=True)
  assert server.requests == []


def test_released_names_carry_their_hashes():
  for url in downloads.RELEASED.values():
    assert downloads.expected_hash_prefix(os.path.basename(url))
