"""Flax variables <-> mmagic's PyTorch state_dict for Global&Local.

The only module that knows PyTorch layouts. Keys are derived from the Flax
variable paths, because `models.py` names its modules as mmagic does:
`encoder/enc1/conv/kernel` <-> `generator.encoder.enc1.conv.weight`. Layouts:

- Conv: Flax HWIO <-> PyTorch OIHW.
- ConvTranspose (dec3, dec5): Flax `ConvTranspose(transpose_kernel=True)`
  holds the kernel of the convolution whose gradient it computes, [k, k,
  out, in], and flips it spatially itself, as PyTorch's ConvTranspose2d does
  with its [in, out, k, k] weight: an axis transpose, no flip.
- Linear: Flax [in, out] <-> PyTorch [out, in]. Each discriminator's fc
  follows a flatten; PyTorch flattens (C, H, W), Flax (H, W, C), so the fc
  rows are permuted.
- Channel order: mmagic trains on BGR images, glcic-jax on RGB. With
  channel_order='bgr' the image channels of the first generator conv's input,
  of dec7's output (weight and bias) and of both discriminators' first conv
  are reversed on the way in and out, so the same weights complete an RGB
  image here exactly as mmagic completes the BGR one. 'rgb' copies as is.

torch is imported lazily, only to read or write `.pth` files.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from glcic_jax import files

GENERATOR_PREFIX = "generator."
DISC_PREFIX = "disc."
CHANNEL_ORDERS = ("bgr", "rgb")

# Weights whose image-channel axis is reversed for channel_order='bgr', with
# the PyTorch axis that holds the image channels.
_IMAGE_CHANNEL_AXES = {
  "generator.encoder.enc1.conv.weight": 1,
  "generator.decoder.dec7.conv.weight": 0,
  "generator.decoder.dec7.conv.bias": 0,
  "disc.global_disc.conv1.conv.weight": 1,
  "disc.local_disc.conv1.conv.weight": 1,
}
_LEAF_NAMES = {
  ("params", "kernel"): "weight",
  ("params", "bias"): "bias",
  ("params", "scale"): "weight",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
  ("batch_stats", "num_batches_tracked"): "num_batches_tracked",
}


def _flatten(tree: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
  # flax (and JAX with it) loads when weights are converted, not when a
  # command's --help reads CHANNEL_ORDERS.
  from flax import traverse_util

  return traverse_util.flatten_dict(dict(tree))


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
  from flax import traverse_util

  return traverse_util.unflatten_dict(flat)


class StateDictMismatchError(ValueError):
  """A state_dict does not have exactly the tensors the model expects."""


def _torch_key(prefix: str, collection: str, path: tuple[str, ...]) -> str:
  *modules, leaf = path
  parts = []
  for name in modules:
    # Flax names `dilation_convs_0`; PyTorch's nn.Sequential `dilation_convs.0`.
    if name.startswith("dilation_convs_"):
      parts.append("dilation_convs." + name.rsplit("_", 1)[1])
    else:
      parts.append(name)
  # mmagic's discriminator fc is a LinearModule holding `linear`.
  if len(parts) == 2 and parts[0].endswith("_disc") and parts[1] == "fc":
    parts.append("linear")
  return prefix + ".".join(parts + [_LEAF_NAMES[(collection, leaf)]])


def _flatten_variables(
  variables: Mapping[str, Any], prefix: str
) -> dict[str, tuple[str, tuple[str, ...]]]:
  """Maps each PyTorch key to (collection, Flax path) of `variables`."""
  out = {}
  for collection in ("params", "batch_stats"):
    flat = _flatten(variables.get(collection, {}))
    for path in flat:
      out[_torch_key(prefix, collection, path)] = (collection, path)
  return out


def _fc_after_flatten(key: str) -> bool:
  return key.startswith(DISC_PREFIX) and key.endswith("_disc.fc.linear.weight")


def _check_channel_order(channel_order: str) -> None:
  if channel_order not in CHANNEL_ORDERS:
    raise ValueError(
      f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}"
    )


def _flip_channels(key: str, array: np.ndarray, channel_order: str):
  axis = _IMAGE_CHANNEL_AXES.get(key)
  if channel_order == "rgb" or axis is None:
    return array
  index = [slice(None)] * array.ndim
  index[axis] = [2, 1, 0] + list(range(3, array.shape[axis]))
  return array[tuple(index)]


def _to_torch_layout(key: str, x: np.ndarray, fc_channels: int) -> np.ndarray:
  if not key.endswith(".weight") or x.ndim == 1:
    return x
  if x.ndim == 4:
    # Conv: HWIO -> OIHW. ConvTranspose: [k, k, out, in] -> [in, out, k,
    # k], the same axis permutation; transpose_kernel=True already flips
    # spatially, as PyTorch's gradient-of-convolution does.
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1))
  if _fc_after_flatten(key):  # rows in (H, W, C) order -> (C, H, W)
    n_in, n_out = x.shape
    side = math.isqrt(n_in // fc_channels)
    x = x.reshape(side, side, fc_channels, n_out).transpose(2, 0, 1, 3)
    x = x.reshape(n_in, n_out)
  return np.ascontiguousarray(x.T)


def _from_torch_layout(
  key: str, x: np.ndarray, flax_shape: tuple[int, ...], fc_channels: int
) -> np.ndarray:
  if not key.endswith(".weight") or x.ndim == 1:
    return x
  if x.ndim == 4:  # the inverse of `_to_torch_layout`'s permutation
    return np.ascontiguousarray(x.transpose(2, 3, 1, 0))
  x = x.T
  if _fc_after_flatten(key):  # rows in (C, H, W) order -> (H, W, C)
    n_in, n_out = flax_shape
    side = math.isqrt(n_in // fc_channels)
    x = x.reshape(fc_channels, side, side, n_out).transpose(1, 2, 0, 3)
    x = x.reshape(n_in, n_out)
  return np.ascontiguousarray(x)


def _last_conv_channels(variables: Mapping[str, Any]) -> dict[str, int]:
  """Width of each discriminator's last conv (the fc's flatten channels)."""
  out = {}
  for disc, tree in dict(variables.get("params", {})).items():
    convs = [k for k in tree if k.startswith("conv")]
    if convs:
      last = max(convs, key=lambda k: int(k[4:]))
      out[disc] = int(np.shape(tree[last]["conv"]["kernel"])[-1])
  return out


def _fc_channels_for(key: str, channels: dict[str, int]) -> int:
  for disc, c in channels.items():
    if f".{disc}.fc." in key:
      return c
  return 1


def variables_to_state_dict(
  variables: Mapping[str, Any], prefix: str, channel_order: str = "bgr"
) -> dict[str, np.ndarray]:
  """One network's Flax variables -> its part of mmagic's state_dict."""
  _check_channel_order(channel_order)
  channels = _last_conv_channels(variables)
  out = {}
  for key, (collection, path) in _flatten_variables(variables, prefix).items():
    x = np.asarray(_flatten(variables[collection])[path])
    if key.endswith("num_batches_tracked"):
      x = x.astype(np.int64)
    else:
      x = _to_torch_layout(key, x, _fc_channels_for(key, channels))
    out[key] = _flip_channels(key, x, channel_order)
  return out


def _convert(
  state_dict: Mapping[str, Any],
  template: Mapping[str, Any],
  prefix: str,
  channel_order: str,
) -> tuple[dict[str, Any], list[str]]:
  """Converts one network; returns its variables and every problem found."""
  _check_channel_order(channel_order)
  expected = _flatten_variables(template, prefix)
  flat_templates = {
    c: _flatten(template[c]) for c in ("params", "batch_stats") if c in template
  }
  present = {k for k in state_dict if k.startswith(prefix)}
  problems = [f"missing: {k}" for k in sorted(set(expected) - present)]
  problems += [f"unexpected: {k}" for k in sorted(present - set(expected))]
  channels = _last_conv_channels(template)
  flat_out: dict[str, dict] = {c: {} for c in flat_templates}
  for key in sorted(set(expected) & present):
    collection, path = expected[key]
    want = flat_templates[collection][path]
    x = _as_numpy(state_dict[key])
    bad_values = _value_problem(key, x)
    if bad_values:
      problems.append(bad_values)
      continue
    if key.endswith("num_batches_tracked"):
      x = x.astype(np.int32)
      if x.shape != ():
        problems.append(f"wrong shape: {key} {x.shape}, expected ()")
      flat_out[collection][path] = x
      continue
    x = _flip_channels(key, x, channel_order)
    try:
      y = _from_torch_layout(
        key, x, tuple(want.shape), _fc_channels_for(key, channels)
      )
    except ValueError:
      y = None
    if y is None or tuple(y.shape) != tuple(want.shape):
      torch_shape = _to_torch_layout(
        key, np.zeros(want.shape, np.float32), _fc_channels_for(key, channels)
      ).shape
      problems.append(
        f"wrong shape: {key} {tuple(x.shape)}, expected {tuple(torch_shape)}"
      )
      continue
    flat_out[collection][path] = y.astype(np.float32)
  variables = {c: _unflatten(v) for c, v in flat_out.items()}
  return variables, problems


def _value_problem(key: str, x: np.ndarray) -> str | None:
  """What makes tensor `key` unusable whatever its shape: weights that are
  not floating point, or hold NaN or inf (an integer BatchNorm counter is
  the one integer tensor)."""
  if key.endswith("num_batches_tracked"):
    if x.dtype.kind not in "iu":
      return f"wrong dtype: {key} {x.dtype}, expected an integer"
    return None
  if x.dtype.kind != "f":
    return f"wrong dtype: {key} {x.dtype}, expected floating point"
  bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
  if bad:
    return f"non-finite values: {key} holds {bad} NaN or inf"
  return None


def _raise_if(problems: list[str]) -> None:
  if problems:
    raise StateDictMismatchError(
      f"state_dict does not match the model ({len(problems)} problems):\n  "
      + "\n  ".join(problems)
    )


def _as_numpy(x: Any) -> np.ndarray:
  if hasattr(x, "detach"):  # a torch.Tensor
    return x.detach().cpu().numpy()
  return np.asarray(x)


def gl_state_dict(
  g_vars: Mapping[str, Any],
  d_vars: Mapping[str, Any],
  channel_order: str = "bgr",
) -> dict[str, np.ndarray]:
  """Generator and discriminators -> one mmagic GLInpaintor state_dict."""
  sd = variables_to_state_dict(g_vars, GENERATOR_PREFIX, channel_order)
  sd.update(variables_to_state_dict(d_vars, DISC_PREFIX, channel_order))
  return sd


def gl_variables(
  state_dict: Mapping[str, Any],
  g_template: Mapping[str, Any],
  d_template: Mapping[str, Any] | None,
  channel_order: str = "bgr",
) -> tuple[dict, dict | None]:
  """mmagic state_dict -> (generator variables, discriminator variables).

  With `d_template=None` only the generator is read (inpainting needs no
  discriminator) and `disc.*` keys are ignored. Keys under neither prefix
  are reported as unexpected.
  """
  prefixes = (GENERATOR_PREFIX, DISC_PREFIX)
  problems = [
    f"unexpected: {k}" for k in sorted(state_dict) if not k.startswith(prefixes)
  ]
  g, g_problems = _convert(
    state_dict, g_template, GENERATOR_PREFIX, channel_order
  )
  problems += g_problems
  d = None
  if d_template is not None:
    d, d_problems = _convert(state_dict, d_template, DISC_PREFIX, channel_order)
    problems += d_problems
  _raise_if(problems)
  return g, d


def read_state_dict(
  path: str | os.PathLike, allow_pickle: bool = False
) -> dict[str, np.ndarray]:
  """The state_dict of a `.pth` or `.safetensors` file (`read_weights`)."""
  return read_weights(path, allow_pickle)[0]


def read_weights(
  path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads a `.pth` (mmagic layout or a bare state_dict) or `.safetensors`
  as (state_dict, meta); meta is the file's own (`{}` if it has none).

  `.pth` files are read with `torch.load(weights_only=True)`, which refuses
  to run code hidden in a pickle. `allow_pickle=True` lifts that: only for
  files you trust, since unpickling can execute arbitrary code.
  """
  path = os.fspath(path)
  if not files.is_file(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  data = files.read_bytes(path)
  if path.endswith(".safetensors"):
    from safetensors.numpy import load

    try:
      return dict(load(data)), _safetensors_meta(data)
    except Exception as e:  # safetensors raises several error types
      raise ValueError(f"cannot read safetensors file {path}: {e}") from e
  import torch

  try:
    obj = torch.load(
      io.BytesIO(data), map_location="cpu", weights_only=not allow_pickle
    )
  except Exception as e:  # truncated zip, bad pickle, refused global...
    hint = (
      ""
      if allow_pickle
      else " (if this is a trusted file that needs more than tensors, pass "
      "--allow_pickle)"
    )
    raise ValueError(f"cannot read checkpoint {path}: {e}{hint}") from e
  meta = {}
  if isinstance(obj, Mapping) and "state_dict" in obj:
    meta = obj.get("meta") or {}
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict")
  meta = dict(meta) if isinstance(meta, Mapping) else {}
  return {k: _as_numpy(v) for k, v in obj.items()}, meta


def _safetensors_meta(data: bytes) -> dict[str, Any]:
  """The `__metadata__` of a safetensors file's JSON header."""
  length = int.from_bytes(data[:8], "little")
  return dict(json.loads(data[8 : 8 + length]).get("__metadata__") or {})


def write_state_dict(
  path: str | os.PathLike,
  state_dict: Mapping[str, np.ndarray],
  meta: Mapping[str, Any] | None = None,
) -> None:
  """Writes `.pth` ({'state_dict', 'meta'}, as mmagic) or `.safetensors`.

  The file is written to a temporary name and renamed, so an interrupted
  export never leaves a truncated file under the final name.
  """
  path = os.fspath(path)
  if path.endswith(".safetensors"):
    from safetensors.numpy import save

    meta_str = {str(k): str(v) for k, v in (meta or {}).items()}
    # np.array, not np.ascontiguousarray: the latter turns 0-d into 1-d.
    arrays = {k: np.array(v, order="C") for k, v in state_dict.items()}
    data = save(arrays, metadata=meta_str)
  elif path.endswith(".pth"):
    import torch

    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
    encoded = io.BytesIO()
    torch.save({"state_dict": tensors, "meta": dict(meta or {})}, encoded)
    data = encoded.getvalue()
  else:
    raise ValueError(f"output must end in .pth or .safetensors: {path}")
  files.write_bytes(path, data)
