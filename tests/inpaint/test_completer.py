"""The notebook API: the same weights complete the same way from a workdir,
a .pth and a .safetensors file; one compiled program per padded shape."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
import pytest
import skimage.data

from glcic_jax import checkpointing, interop, train_state
from glcic_jax.inpaint import completer as inference
from tests.test_train_steps import load_config


def tiny_state(seed: int = 4):
  """The tiny config (1 image per device, a copy to change at will) and an
  initialised state on the host. The state is cached: initialising takes
  seconds on the CPU, and the evaluation and inpainting tests reuse it."""
  config = load_config("tiny")
  config.per_device_batch_size = 1
  return config, _init_state(seed)


@functools.cache
def _init_state(seed: int):
  state = train_state.init_state(load_config("tiny"), jax.random.PRNGKey(seed))
  return jax.device_get(state)


def save_tiny_checkpoint(workdir: str, *, step: int = 5, seed: int = 4):
  """Writes `tiny_state(seed)` at `step` with the real Checkpointer;
  returns the config."""
  config, state = tiny_state(seed)
  with checkpointing.Checkpointer(workdir, save_every=1, keep=2) as ckpt:
    ckpt.save(state.replace(step=np.int32(step)), config, force=True)
  return config


def photo(height: int, width: int) -> np.ndarray:
  """A real photo (the astronaut, downsampled) of the given size."""
  return np.ascontiguousarray(
    skimage.data.astronaut()[::4, ::4][:height, :width]
  )


def hole(height: int, width: int, top: int, left: int, size: int):
  mask = np.zeros((height, width), bool)
  mask[top : top + size, left : left + size] = True
  return mask


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("w"))
  save_tiny_checkpoint(path)
  return path


def test_workdir_pth_and_safetensors_complete_alike(workdir, tmp_path):
  from_workdir = inference.load_generator(workdir)
  assert from_workdir.step == 5
  assert from_workdir.config.model.generator_channels == 8
  sd = interop.gl_state_dict(from_workdir.variables, {"params": {}}, "bgr")
  assert sd and all(k.startswith("generator.") for k in sd)
  interop.write_state_dict(tmp_path / "g.pth", sd)
  interop.write_state_dict(tmp_path / "g.safetensors", sd)
  tiny = load_config("tiny")
  image, mask = photo(45, 30), hole(45, 30, 10, 5, 16)
  expected = from_workdir.complete(image, mask)
  assert expected.shape == image.shape and expected.dtype == np.uint8
  np.testing.assert_array_equal(expected[~mask], image[~mask])
  assert np.mean(expected[mask] != image[mask]) > 0.5
  for name in ("g.pth", "g.safetensors"):
    from_file = inference.load_generator(tmp_path / name, config=tiny)
    np.testing.assert_array_equal(from_file.complete(image, mask), expected)
  # The channel order is honoured: read as RGB, the BGR-written first conv
  # sees its input channels swapped and completes differently.
  swapped = inference.load_generator(
    tmp_path / "g.pth", config=tiny, channel_order="rgb"
  )
  assert np.any(swapped.complete(image, mask) != expected)


def test_batches_masks_and_compiled_shapes(workdir):
  completer = inference.load_generator(workdir, step=5)
  image, mask = photo(45, 30), hole(45, 30, 20, 8, 12)
  single = completer.complete(image, mask)
  np.testing.assert_array_equal(
    completer.complete(image, mask[..., None]), single
  )
  other, other_mask = photo(45, 30)[::-1], hole(45, 30, 3, 3, 10)
  batch = completer.complete(
    np.stack([image, other]), np.stack([mask, other_mask])
  )
  assert batch.shape == (2, 45, 30, 3)
  np.testing.assert_array_equal(batch[0], single)
  np.testing.assert_array_equal(batch[1], completer.complete(other, other_mask))
  # 45x30 and 47x31 both pad to 48x32: one program; 20x20 adds a second.
  compiled = completer._apply._cache_size()
  completer.complete(photo(47, 31), hole(47, 31, 5, 5, 9))
  assert completer._apply._cache_size() == compiled
  completer.complete(photo(20, 20), hole(20, 20, 5, 5, 9))
  assert completer._apply._cache_size() == compiled + 1


def test_load_errors(workdir, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"available steps: \[5\]"):
    inference.load_generator(workdir, step=6)
  with pytest.raises(FileNotFoundError, match="not found"):
    inference.load_generator(tmp_path / "missing.pth")
  completer = inference.load_generator(workdir)
  sd = interop.gl_state_dict(completer.variables, {"params": {}}, "bgr")
  path = os.path.join(tmp_path, "tiny.pth")
  interop.write_state_dict(path, sd)
  # Tiny weights do not fit the paper's generator (the default for files):
  # the error names the width that does.
  with pytest.raises(ValueError, match="--config.model.generator_channels=8"):
    inference.load_generator(path)
