"""Deployable generators: the completion as ONNX, StableHLO or PyTorch.

Every format computes the same function, the whole completion as an app
needs it, in eval mode (BatchNorm's running statistics):

  image [N, 3, H, W] float32 RGB 0..255, mask [N, 1, H, W] float32
  (1 = hole, 0 = known) -> completion [N, 3, H, W] float32 RGB 0..255:
  the generator's output in the hole, the input's pixels, unchanged,
  elsewhere.

N, H and W are free; H and W must be multiples of 4 (the generator halves
the map twice and doubles it back): pad other sizes, complete, crop back,
as `glcic_jax.inpaint.Completer` does.

- `onnx`: written by PyTorch's exporter (`torch.onnx.export`, the
  torch.export-based one) from `torch_generator.GLCompleter` holding the
  weights. jax2onnx, the JAX converter, pins orbax-checkpoint below 0.11.37
  since its 0.13 release (this project needs 0.12), and the PyTorch module
  ships anyway; its graph is made of the plain Conv, ConvTranspose and ReLU
  nodes of the network (BatchNorm folded into the convolutions), whatever
  machine exports it. Opset 18; the model's metadata names the source,
  the step and the channel order.
- `stablehlo`: `jax.export` of the completion with symbolic N, H = 4a and
  W = 4b, lowered for CPU, CUDA, ROCm and TPU, with the native
  convolutions GPUs and TPUs run (never the CPU forms). A process with
  only jax installed reloads it (`jax.export.deserialize(data).call(...)`).
  JAX promises such artifacts load in JAX releases of the next six months
  at least (its export compatibility guarantee); `<output>.json` beside it
  holds the metadata.
- `torch`: `torch_generator`'s file, loaded by `torch_generator.load`.
"""

from __future__ import annotations

import io
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import glcic_jax
from glcic_jax import files, interop, models

FORMATS = ("mmagic", "onnx", "stablehlo", "torch")
SUFFIXES = {"onnx": ".onnx", "stablehlo": ".stablehlo", "torch": ".pth"}
STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
ONNX_OPSET = 18


def completion_fn(generator_variables: Any, model_config: Any):
  """The JAX completion of the module docstring (NCHW, 0..255), with XLA's
  native convolutions."""
  generator, _ = models.build_models(model_config, conv_forms="native")

  def complete(image: jax.Array, mask: jax.Array) -> jax.Array:
    x = jnp.transpose(image, (0, 2, 3, 1))
    m = jnp.transpose(mask, (0, 2, 3, 1))
    out = generator.apply(
      generator_variables, models.network_input(x / 127.5 - 1.0, m), train=False
    )
    y = x * (1.0 - m) + (out + 1.0) * 127.5 * m
    return jnp.transpose(y, (0, 3, 1, 2))

  return complete


def torch_state_dict(generator_variables: Any) -> dict[str, np.ndarray]:
  """The generator's weights under mmagic's names without `generator.`,
  in PyTorch's layouts, RGB."""
  sd = interop.variables_to_state_dict(
    generator_variables, interop.GENERATOR_PREFIX, "rgb"
  )
  prefix = interop.GENERATOR_PREFIX
  return {k.removeprefix(prefix): np.asarray(v) for k, v in sd.items()}


def _meta(meta: dict[str, Any], channels: int) -> dict[str, Any]:
  return {
    **{k: v for k, v in meta.items() if isinstance(v, str | int | float)},
    "glcic_jax_version": glcic_jax.__version__,
    "generator_channels": int(channels),
    "channel_order": "RGB",
    "inputs": "image float32 [N,3,H,W] RGB 0..255; mask float32 [N,1,H,W] "
    "1=hole; H, W multiples of 4",
    "output": "completion float32 [N,3,H,W] RGB 0..255",
  }


def export_generator(
  generator_variables: Any,
  model_config: Any,
  output: str,
  fmt: str,
  meta: dict[str, Any],
) -> dict[str, Any]:
  """Writes the generator to `output` in `fmt` ('onnx', 'stablehlo' or
  'torch'); returns a summary. The file appears whole or not at all."""
  started = time.time()
  channels = int(model_config.generator_channels)
  meta = _meta(meta, channels)
  if fmt == "stablehlo":
    data = _stablehlo(generator_variables, model_config)
    files.write_bytes(output, data)
    files.write_text(output + ".json", files.json_text(meta))
  elif fmt == "torch":
    from glcic_jax import torch_generator

    buffer = io.BytesIO()
    torch_generator.save(
      buffer, torch_state_dict(generator_variables), channels, meta
    )
    files.write_bytes(output, buffer.getvalue())
  elif fmt == "onnx":
    from glcic_jax import torch_generator

    data = torch_generator.to_onnx(
      torch_state_dict(generator_variables), channels, meta, ONNX_OPSET
    )
    files.write_bytes(output, data)
  else:
    raise ValueError(f"unknown format {fmt!r}; one of {FORMATS[1:]}")
  return {
    "format": fmt,
    "bytes": len(files.read_bytes(output)),
    "seconds": time.time() - started,
  }


def _stablehlo(generator_variables: Any, model_config: Any) -> bytes:
  complete = completion_fn(generator_variables, model_config)
  n, a, b = jax.export.symbolic_shape("n, a, b")
  exported = jax.export.export(
    jax.jit(complete), platforms=STABLEHLO_PLATFORMS
  )(
    jax.ShapeDtypeStruct((n, 3, 4 * a, 4 * b), jnp.float32),
    jax.ShapeDtypeStruct((n, 1, 4 * a, 4 * b), jnp.float32),
  )
  return bytes(exported.serialize())
