"""Weights files by URL: mmagic's released Global&Local checkpoints, cached.

  path = downloads.fetch(RELEASED["places"])     # downloads once, then cached

A download goes to `<cache>/<name>.partial` and resumes from there (an HTTP
Range request) after an interruption; it becomes `<cache>/<name>` only once
complete and checked. mmagic's file names end in the first hex digits of
the file's SHA-256 (`gl_..._20200619-52a040a8.pth`): a file whose hash does
not begin so is refused and deleted. `offline=True` uses the cache alone.

The cache is `$GLCIC_WEIGHTS_CACHE`, else `$XDG_CACHE_HOME/glcic_jax/weights`
(`~/.cache/glcic_jax/weights`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

_OPENMMLAB = "https://download.openmmlab.com/mmediting/inpainting/global_local"
# mmagic's two released Global&Local checkpoints (its README's links).
RELEASED = {
  "places": f"{_OPENMMLAB}/gl_256x256_8x12_places_20200619-52a040a8.pth",
  "celeba": f"{_OPENMMLAB}/gl_256x256_8x12_celeba_20200619-5af0493f.pth",
}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|safetensors)$")
_CHUNK = 1 << 20
_TIMEOUT = 60  # seconds without a byte before a read fails


class DownloadError(RuntimeError):
  """A download failed, was cut short or does not match its name's hash."""


def is_url(path: str | os.PathLike) -> bool:
  return urllib.parse.urlparse(os.fspath(path)).scheme in ("http", "https")


def cache_dir() -> str:
  if os.environ.get("GLCIC_WEIGHTS_CACHE"):
    return os.environ["GLCIC_WEIGHTS_CACHE"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache"
  )
  return os.path.join(base, "glcic_jax", "weights")


def expected_hash_prefix(name: str) -> str | None:
  """The SHA-256 prefix a file name carries (mmagic's `-52a040a8.pth`)."""
  match = _HASH_IN_NAME.search(name)
  return match.group(1) if match else None


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      digest.update(block)
  return digest.hexdigest()


def _check_hash(path: str, name: str) -> None:
  want = expected_hash_prefix(name)
  if want is None:
    return
  got = _sha256(path)
  if not got.startswith(want):
    os.remove(path)
    raise DownloadError(
      f"{name}: its SHA-256 begins {got[: len(want)]}, the file name says "
      f"{want}; the download is damaged or not the released file, and was "
      "deleted."
    )


def fetch(
  url: str,
  *,
  offline: bool = False,
  cache: str | None = None,
  progress: bool = True,
) -> str:
  """The local path of `url`'s file, downloading it into the cache first
  if it is not there (resuming a partial download)."""
  name = os.path.basename(urllib.parse.urlparse(url).path)
  if not name:
    raise DownloadError(f"{url} names no file")
  folder = cache or cache_dir()
  path = os.path.join(folder, name)
  if os.path.exists(path):
    return path
  if offline:
    raise DownloadError(
      f"{name} is not in the cache {folder} and --offline forbids "
      f"downloading it from {url}"
    )
  os.makedirs(folder, exist_ok=True)
  partial = path + ".partial"
  _download(url, partial, progress)
  _check_hash(partial, name)
  os.replace(partial, path)
  return path


def _download(url: str, partial: str, progress: bool) -> None:
  have = os.path.getsize(partial) if os.path.exists(partial) else 0
  request = urllib.request.Request(url)
  if have:
    request.add_header("Range", f"bytes={have}-")
  try:
    response = urllib.request.urlopen(request, timeout=_TIMEOUT)
  except urllib.error.HTTPError as e:
    if e.code == 416 and have:  # the partial file is already whole
      return
    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
  except (urllib.error.URLError, OSError) as e:
    raise DownloadError(f"{url}: {e}") from e
  with response:
    resumed = have and response.status == 206
    if not resumed:
      have = 0  # the server sent the whole file
    length = response.headers.get("Content-Length")
    total = have + int(length) if length is not None else None
    bar = _progress_bar(total, have, os.path.basename(partial), progress)
    try:
      with open(partial, "ab" if resumed else "wb") as f:
        while True:
          try:
            block = response.read(_CHUNK)
          except (OSError, ValueError, http.client.HTTPException) as e:
            raise DownloadError(
              f"{url}: the download stopped at {have:,} bytes ({e}); run "
              "again to resume it"
            ) from e
          if not block:
            break
          f.write(block)
          have += len(block)
          bar.update(len(block))
    finally:
      bar.close()
  if total is not None and have < total:
    raise DownloadError(
      f"{url}: the download stopped at {have:,} of {total:,} bytes; run "
      "again to resume it"
    )


def _progress_bar(total, initial: int, name: str, shown: bool):
  from tqdm import tqdm

  return tqdm(
    total=total,
    initial=initial,
    unit="B",
    unit_scale=True,
    unit_divisor=1024,
    desc=name.removesuffix(".partial"),
    disable=not shown,
    file=sys.stderr,
  )
