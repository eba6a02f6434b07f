"""glcic-serve as a real server on 127.0.0.1: a real photo and mask give
the pixels glcic-inpaint's engine gives, every bad input gets its status
and a JSON message while the server goes on answering, and 32 concurrent
requests all get their own correct answers without the memory growing."""

from __future__ import annotations

import concurrent.futures
import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import skimage.data
from PIL import Image

from glcic_jax.inpaint import completer as inference
from glcic_jax.inpaint import engine as engine_lib
from tests.inpaint.test_completer import save_tiny_checkpoint


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def serve(workdir: str, *flags: str):
  """Starts glcic-serve; returns (process, base URL) once /healthz answers."""
  port = free_port()
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "glcic_jax.commands.serve",
      f"--workdir={workdir}",
      f"--port={port}",
      *flags,
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
  )
  url = f"http://127.0.0.1:{port}"
  deadline = time.time() + 120
  while True:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    try:
      if requests.get(f"{url}/healthz", timeout=1).ok:
        return proc, url
    except requests.ConnectionError:
      pass
    assert time.time() < deadline, "glcic-serve did not start"
    time.sleep(0.3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(path)
  return path


@pytest.fixture(scope="module")
def server(workdir):
  proc, url = serve(workdir, "--max_upload_mib=1", "--max_megapixels=1")
  yield proc, url
  proc.terminate()
  proc.wait(timeout=30)


def png(array: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format="PNG")
  return out.getvalue()


def photo_and_mask(height=180, width=240, top=60, left=90, side=40):
  image = np.ascontiguousarray(skimage.data.chelsea()[:height, :width])
  hole = np.zeros((height, width), bool)
  hole[top : top + side, left : left + side] = True
  return image, hole


def post(url, image: bytes, mask: bytes, **form):
  return requests.post(
    f"{url}/api/v1/inpaint",
    files={"image": ("photo.png", image), "mask": ("mask.png", mask)},
    data=form,
    timeout=120,
  )


def test_a_photo_and_mask_complete_as_the_engine_does(server, workdir):
  _, url = server
  image, hole = photo_and_mask()
  answer = post(url, png(image), png(hole.astype(np.uint8) * 255))
  assert answer.status_code == 200, answer.text
  assert answer.headers["content-type"] == "image/png"
  got = np.asarray(Image.open(io.BytesIO(answer.content)))
  engine = engine_lib.Engine(inference.load_generator(workdir))
  want, report = engine.complete(image, hole)
  assert answer.headers["x-strategy"] == report.strategy
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got[~hole], image[~hole])
  info = requests.get(f"{url}/api/v1/model", timeout=10).json()
  assert info["step"] == 5 and info["trained_size"] == 32
  assert requests.get(f"{url}/docs", timeout=10).ok
  page = requests.get(f"{url}/", timeout=10)
  assert page.ok and "Complete" in page.text


def test_every_bad_input_gets_its_status_and_the_server_goes_on(server):
  _, url = server
  image, hole = photo_and_mask()
  good_mask = png(hole.astype(np.uint8) * 255)
  wide = np.zeros((100, 400), np.uint8)
  wide[10:20, 10:20] = 255
  big = np.zeros((1100, 1000, 3), np.uint8)  # 1.1 MP, over 1 MP
  cases = [
    (b"this is not an image", good_mask, {}, 400, "not an image"),
    (png(image), png(wide), {}, 400, "cannot be matched"),
    (png(image), png(np.zeros(hole.shape, np.uint8)), {}, 422, "no hole"),
    (png(image), good_mask, {"strategy": "magic"}, 400, "strategy"),
    (png(big), good_mask, {}, 413, "over the limit"),
    (os.urandom(2 * 2**20), good_mask, {}, 413, "over"),  # 2 MiB upload
  ]
  for image_bytes, mask_bytes, form, status, message in cases:
    answer = post(url, image_bytes, mask_bytes, **form)
    assert answer.status_code == status, (status, answer.text)
    assert message in answer.json()["detail"], answer.text
    assert post(url, png(image), good_mask).status_code == 200


def _rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return 0.0


def test_32_concurrent_requests_all_get_their_own_answer(server, workdir):
  proc, url = server
  engine = engine_lib.Engine(inference.load_generator(workdir))
  requests_ = []
  for i in range(32):
    image, hole = photo_and_mask(
      height=120 + 4 * (i % 5), width=160 + 8 * (i % 3), top=10 + i, left=20 + i
    )
    requests_.append((image, hole))
  post(url, png(requests_[0][0]), png(requests_[0][1].astype(np.uint8) * 255))
  before = _rss_mib(proc.pid)
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    answers = list(
      pool.map(
        lambda r: post(url, png(r[0]), png(r[1].astype(np.uint8) * 255)),
        requests_,
      )
    )
  for (image, hole), answer in zip(requests_, answers):
    assert answer.status_code == 200, answer.text
    got = np.asarray(Image.open(io.BytesIO(answer.content)))
    np.testing.assert_array_equal(got, engine.complete(image, hole)[0])
  assert _rss_mib(proc.pid) - before < 400, (before, _rss_mib(proc.pid))
