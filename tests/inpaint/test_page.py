"""The page of glcic-serve in a real headless Chromium (Debian's, driven by
Playwright): it loads, a photo is opened, a stroke is drawn with mouse
events, Complete is clicked, and the image shown differs from the photo
inside the stroke and nowhere else. A screenshot is kept beside the test's
files (and in $GLCIC_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.inpaint.test_server import serve, workdir  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
  CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)"
)

READ_CANVAS = """(id) => {
  const c = document.getElementById(id);
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  return {width: c.width, height: c.height, data: Array.from(data)};
}"""


def _canvas(page, name: str) -> np.ndarray:
  got = page.evaluate(READ_CANVAS, name)
  return np.array(got["data"], np.uint8).reshape(got["height"], got["width"], 4)


def test_paint_a_hole_and_complete_it(workdir, tmp_path):  # noqa: F811
  from playwright.sync_api import sync_playwright

  photo = np.ascontiguousarray(skimage.data.chelsea()[:200, :300])
  photo_path = tmp_path / "cat.png"
  Image.fromarray(photo).save(photo_path)
  proc, url = serve(workdir)
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(
        executable_path=CHROMIUM,
        args=[
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--no-first-run",
        ],
      )
      page = browser.new_page(viewport={"width": 1000, "height": 800})
      page.goto(url)
      page.wait_for_selector("#model:not(:has-text('loading'))")
      page.set_input_files("#file", str(photo_path))
      page.wait_for_function("document.getElementById('photo').width === 300")
      page.fill("#brush", "20")
      box = page.locator("#mask").bounding_box()
      scale = box["width"] / 300  # canvas pixels to page pixels
      page.mouse.move(box["x"] + 100 * scale, box["y"] + 80 * scale)
      page.mouse.down()
      for x in range(100, 181, 10):
        page.mouse.move(box["x"] + x * scale, box["y"] + (80 + x // 4) * scale)
      page.mouse.up()
      stroke = _canvas(page, "mask")[..., 3] > 0
      assert 500 < stroke.sum() < 20_000, stroke.sum()
      page.click("#complete")
      page.wait_for_selector("#status:has-text('Completed')", timeout=60_000)
      shown = _canvas(page, "photo")[..., :3]
      shots = [tmp_path / "page.png"]
      if os.environ.get("GLCIC_SCREENSHOT_DIR"):
        shots.append(
          os.path.join(os.environ["GLCIC_SCREENSHOT_DIR"], "page.png")
        )
      for shot in shots:
        page.screenshot(path=str(shot))
      browser.close()
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  np.testing.assert_array_equal(shown[~stroke], photo[~stroke])
  assert np.mean(np.any(shown[stroke] != photo[stroke], axis=-1)) > 0.5
  assert os.path.getsize(tmp_path / "page.png") > 10_000
