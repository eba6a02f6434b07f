"""The HTTP API and the page of `glcic-serve`: an ASGI app (FastAPI).

  POST /api/v1/inpaint   multipart `image` (PNG/JPEG/...), `mask` (PNG,
                         non-zero = hole), optional `strategy` -> image/png,
                         the completed image at the input's size
  GET  /api/v1/model     what is loaded (checkpoint, step, widths, scale)
  GET  /healthz          {"status": "ok"}
  GET  /docs             the OpenAPI documentation
  GET  /                 the page: paint a hole on a photo, complete it

Bad input gets a 4xx answer with a JSON `detail` and the server stays up:
an upload over the byte limit or an image over the pixel limit (a
decompression bomb) 413, a file that is not an image or a mask that
cannot be matched to the image 400, an empty mask 422. The model serves
one request at a time (a lock around the engine), so concurrent requests
queue instead of multiplying memory.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps

from glcic_jax.inpaint import engine as engine_lib
from glcic_jax.inpaint import masks

STATIC = os.path.join(os.path.dirname(__file__), "static")
MAX_BYTES = 50 * 2**20
MAX_PIXELS = 64 * 2**20


def _decode(data: bytes, what: str, max_pixels: int) -> Image.Image:
  """An upright, fully decoded image; 413 over the pixel limit (read from
  the header, before decoding), 400 if it is not an image."""
  try:
    image = Image.open(io.BytesIO(data))
  except Exception as e:  # noqa: BLE001  PIL raises many kinds
    raise HTTPException(400, f"{what} is not an image PIL can read: {e}") from e
  width, height = image.size
  if width * height > max_pixels:
    raise HTTPException(
      413,
      f"{what} is {width}x{height} pixels, over the limit of {max_pixels:,}",
    )
  try:
    image.load()
    return ImageOps.exif_transpose(image)
  except Exception as e:  # noqa: BLE001
    raise HTTPException(400, f"{what} cannot be decoded: {e}") from e


def _mask_of(image: Image.Image, mask: Image.Image) -> np.ndarray:
  """[H, W] bool hole, the mask fitted to the image; 400 when it cannot be
  matched, 422 when it marks no hole (or only hole)."""
  if "A" in mask.getbands():
    rgba = np.asarray(mask.convert("RGBA"))
    hole = (rgba[..., :3].max(axis=-1) > 0) & (rgba[..., 3] > 0)
  else:
    hole = np.asarray(mask.convert("L")) > 0
  try:
    hole = masks.fit_to(hole, (image.height, image.width), "mask")
    masks.check_hole_coverage(hole, "mask")
  except ValueError as e:
    status = 400 if "cannot be matched" in str(e) else 422
    raise HTTPException(status, str(e)) from e
  return hole


def create_app(
  engine: engine_lib.Engine,
  model_info: dict[str, Any],
  *,
  max_bytes: int = MAX_BYTES,
  max_pixels: int = MAX_PIXELS,
) -> FastAPI:
  """The app serving `engine`; `model_info` is what /api/v1/model says."""
  app = FastAPI(
    title="glcic-jax",
    description="Globally and Locally Consistent Image Completion",
    version="1",
  )
  model_lock = threading.Lock()

  @app.middleware("http")
  async def limit_upload(request: Request, call_next):
    length = request.headers.get("content-length")
    if length is not None and int(length) > max_bytes:
      return JSONResponse(
        {"detail": f"upload of {int(length):,} bytes, over {max_bytes:,}"},
        status_code=413,
      )
    return await call_next(request)

  @app.get("/healthz")
  def healthz() -> dict[str, str]:
    return {"status": "ok"}

  @app.get("/api/v1/model")
  def model() -> dict[str, Any]:
    return model_info

  @app.post(
    "/api/v1/inpaint",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
  )
  def inpaint(
    image: Annotated[UploadFile, File(description="PNG or JPEG photo")],
    mask: Annotated[UploadFile, File(description="PNG mask, non-zero = hole")],
    strategy: Annotated[
      str, Form(description=f"one of {engine_lib.STRATEGIES}")
    ] = "auto",
  ) -> Response:
    if strategy not in engine_lib.STRATEGIES:
      raise HTTPException(
        400, f"strategy must be one of {engine_lib.STRATEGIES}"
      )
    uploads = {}
    for name, upload in (("image", image), ("mask", mask)):
      data = upload.file.read(max_bytes + 1)
      if len(data) > max_bytes:
        raise HTTPException(413, f"{name} is over {max_bytes:,} bytes")
      uploads[name] = _decode(data, name, max_pixels)
    photo = uploads["image"].convert("RGB")
    hole = _mask_of(photo, uploads["mask"])
    with model_lock:
      try:
        done, report = engine.complete(
          np.asarray(photo), hole, strategy=strategy
        )
      except engine_lib.OutOfMemoryEstimate as e:
        raise HTTPException(413, str(e)) from e
    encoded = io.BytesIO()
    Image.fromarray(done).save(encoded, format="PNG")
    return Response(
      encoded.getvalue(),
      media_type="image/png",
      headers={"X-Strategy": report.strategy},
    )

  app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
  return app
