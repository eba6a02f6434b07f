"""The Global&Local generator as a plain PyTorch module: no mmagic, no JAX.

  from glcic_jax import torch_generator
  completer = torch_generator.load("gl_places_generator.pth")   # eval mode
  completion = completer(image, mask)   # [N,3,H,W] RGB 0..255, [N,1,H,W] 1=hole

`glcic-export --format torch` writes the file: a zip `.pth` that
`torch.load(weights_only=True)` reads, holding the generator's state_dict
under mmagic's module names (`encoder.enc1.conv.weight`, ...; RGB channel
order) and metadata of plain strings and numbers. `GLEncoderDecoder` is
also the PyTorch mirror the tests compare glcic-jax with, so there is one
copy of the network in PyTorch, not two.

This module and `interop` are the only ones that import torch; it is loaded
lazily, by the code that needs it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch
from torch import nn

# What `--format torch` files say they are, in their metadata.
FORMAT = "glcic-jax-torch-generator"
FORMAT_VERSION = 1


class ConvModule(nn.Module):
  """mmcv's ConvModule: conv (no bias under BN) -> BN -> ReLU."""

  def __init__(
    self,
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    dilation: int = 1,
    transpose: bool = False,
    norm: bool = True,
    act: bool = True,
  ):
    super().__init__()
    if transpose:
      self.conv = nn.ConvTranspose2d(
        cin, cout, k, stride, padding=1, bias=not norm
      )
    else:
      pad = dilation * (k - 1) // 2
      self.conv = nn.Conv2d(
        cin, cout, k, stride, pad, dilation=dilation, bias=not norm
      )
    self.bn = nn.BatchNorm2d(cout) if norm else None
    self.act = act

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x)
    return torch.relu(x) if self.act else x


class GLEncoder(nn.Module):
  def __init__(self, c: int = 64):
    super().__init__()
    self.enc1 = ConvModule(4, c, 5)
    self.enc2 = ConvModule(c, 2 * c, 3, 2)
    self.enc3 = ConvModule(2 * c, 2 * c, 3)
    self.enc4 = ConvModule(2 * c, 4 * c, 3, 2)
    self.enc5 = ConvModule(4 * c, 4 * c, 3)
    self.enc6 = ConvModule(4 * c, 4 * c, 3)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i in range(1, 7):
      x = getattr(self, f"enc{i}")(x)
    return x


class GLDilationNeck(nn.Module):
  def __init__(self, c: int = 256):
    super().__init__()
    self.dilation_convs = nn.Sequential(
      *[ConvModule(c, c, 3, dilation=d) for d in (2, 4, 8, 16)]
    )

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.dilation_convs(x)


class GLDecoder(nn.Module):
  def __init__(self, c: int = 64):
    super().__init__()
    self.dec1 = ConvModule(4 * c, 4 * c, 3)
    self.dec2 = ConvModule(4 * c, 4 * c, 3)
    self.dec3 = ConvModule(4 * c, 2 * c, 4, 2, transpose=True)
    self.dec4 = ConvModule(2 * c, 2 * c, 3)
    self.dec5 = ConvModule(2 * c, c, 4, 2, transpose=True)
    self.dec6 = ConvModule(c, c // 2, 3)
    self.dec7 = ConvModule(c // 2, 3, 3, norm=False, act=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i in range(1, 8):
      x = getattr(self, f"dec{i}")(x)
    return torch.clamp(x, -1.0, 1.0)


class GLEncoderDecoder(nn.Module):
  """mmagic's GLEncoderDecoder: [N, 4, H, W] (masked image in [-1, 1],
  mask) -> [N, 3, H, W] in [-1, 1]; H and W multiples of 4."""

  def __init__(self, c: int = 64):
    super().__init__()
    self.encoder = GLEncoder(c)
    self.dilation_neck = GLDilationNeck(4 * c)
    self.decoder = GLDecoder(c)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.decoder(self.dilation_neck(self.encoder(x)))


class GLCompleter(nn.Module):
  """The whole completion: RGB image 0..255 [N, 3, H, W] and mask [N, 1,
  H, W] (1 = hole, 0 = known) -> [N, 3, H, W] RGB 0..255, the generator's
  output in the hole and the input's pixels, unchanged, elsewhere.

  H and W must be multiples of 4 (two stride-2 convolutions and two
  upsamplings); pad other sizes (the JAX `Completer` pads and crops back).
  """

  def __init__(self, generator: GLEncoderDecoder):
    super().__init__()
    self.generator = generator

  def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    unit = image / 127.5 - 1.0
    known = 1.0 - mask
    out = self.generator(torch.cat([unit * known, mask], dim=1))
    return image * known + (out + 1.0) * 127.5 * mask


def generator_from_state_dict(
  state_dict: dict[str, Any], channels: int
) -> GLEncoderDecoder:
  """A generator of width `channels` holding `state_dict` (mmagic's
  names without the `generator.` prefix), in eval mode."""
  generator = GLEncoderDecoder(channels)
  generator.load_state_dict(
    {k: torch.as_tensor(v) for k, v in state_dict.items()}, strict=True
  )
  return generator.eval()


def save(
  path: Any, state_dict: dict[str, Any], channels: int, meta: dict[str, Any]
) -> None:
  """Writes a `--format torch` file to `path` (a path or a binary file)."""
  for key, value in meta.items():
    if not isinstance(value, str | int | float):
      raise TypeError(f"metadata {key}={value!r} is not a str, int or float")
  torch.save(
    {
      "state_dict": {k: torch.as_tensor(v) for k, v in state_dict.items()},
      "meta": {
        **meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "channels": int(channels),
        "channel_order": "rgb",
      },
    },
    path,
  )


def load(path: Any) -> GLCompleter:
  """The `GLCompleter` of a `--format torch` file, in eval mode; its
  metadata is `.meta`."""
  saved = torch.load(path, map_location="cpu", weights_only=True)
  meta = saved.get("meta", {}) if isinstance(saved, dict) else {}
  if meta.get("format") != FORMAT:
    raise ValueError(
      f"{path} is not a glcic-jax generator file (glcic-export --format "
      "torch writes them)"
    )
  completer = GLCompleter(
    generator_from_state_dict(saved["state_dict"], int(meta["channels"]))
  ).eval()
  completer.meta = dict(meta)
  return completer


def to_onnx(
  state_dict: dict[str, Any], channels: int, meta: dict[str, Any], opset: int
) -> bytes:
  """The ONNX model of `GLCompleter` holding `state_dict`: inputs `image`
  and `mask`, output `completion`, N and H = 4 h', W = 4 w' dynamic;
  `meta` in its metadata (and, as JSON, its doc string)."""
  import onnx

  model = GLCompleter(generator_from_state_dict(state_dict, channels)).eval()
  n = torch.export.Dim("n", min=1)
  h = torch.export.Dim("hq", min=1) * 4
  w = torch.export.Dim("wq", min=1) * 4
  # Sizes apart from each other and from 0 and 1: torch.export would take
  # equal example sizes for one symbol, and 1 for a constant.
  example = (torch.zeros(2, 3, 64, 96), torch.zeros(2, 1, 64, 96))
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "generator.onnx")
    torch.onnx.export(
      model,
      example,
      path,
      input_names=["image", "mask"],
      output_names=["completion"],
      dynamic_shapes=({0: n, 2: h, 3: w}, {0: n, 2: h, 3: w}),
      opset_version=opset,
      dynamo=True,
      external_data=False,
      verbose=False,
    )
    proto = onnx.load(path)
  for key, value in meta.items():
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, str(value)
  proto.doc_string = json.dumps(meta)
  return proto.SerializeToString()
