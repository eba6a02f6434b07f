"""PyTorch modules with mmagic's Global&Local module names (tests only).

Written from ../shared/reference/gl_mmagic.md, not copied from mmagic: the
discriminators (GLDiscs) here, the generator (GLEncoderDecoder) from the
package's `glcic_jax.torch_generator` (one copy of it), whose
`state_dict()` keys and shapes equal mmagic's, so interop tests can load our
exports with `strict=True` and compare forwards. NCHW, as PyTorch.
"""

from __future__ import annotations

import torch
from torch import nn

from glcic_jax.torch_generator import (  # noqa: F401  (tests use them here)
  ConvModule,
  GLDecoder,
  GLDilationNeck,
  GLEncoder,
  GLEncoderDecoder,
)


class LinearModule(nn.Module):
  """mmagic's LinearModule: `linear` then ReLU."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.linear = nn.Linear(cin, cout)

  def forward(self, x):
    return torch.relu(self.linear(x))


class MultiLayerDiscriminator(nn.Module):
  def __init__(
    self,
    num_convs: int,
    input_size: int,
    base: int = 64,
    max_channels: int = 512,
    fc_out: int = 1024,
  ):
    super().__init__()
    cin = 3
    for i in range(num_convs):
      cout = min(base * 2**i, max_channels)
      setattr(self, f"conv{i + 1}", ConvModule(cin, cout, 5, 2))
      cin = cout
    self.num_convs = num_convs
    side = input_size // 2**num_convs
    self.fc = LinearModule(cin * side * side, fc_out)

  def forward(self, x):
    for i in range(self.num_convs):
      x = getattr(self, f"conv{i + 1}")(x)
    return self.fc(x.flatten(1))


class GLDiscs(nn.Module):
  def __init__(
    self,
    image_size: int = 256,
    local_size: int = 128,
    global_num_convs: int = 6,
    local_num_convs: int = 5,
    base: int = 64,
    max_channels: int = 512,
    fc_out: int = 1024,
  ):
    super().__init__()
    kw = dict(base=base, max_channels=max_channels, fc_out=fc_out)
    self.global_disc = MultiLayerDiscriminator(
      global_num_convs, image_size, **kw
    )
    self.local_disc = MultiLayerDiscriminator(local_num_convs, local_size, **kw)
    self.fc = nn.Linear(2 * fc_out, 1)

  def forward(self, img, local):
    return self.fc(
      torch.cat([self.global_disc(img), self.local_disc(local)], dim=1)
    )


class GLModel(nn.Module):
  """Holds `generator` and `disc` so state_dict keys carry mmagic's prefixes."""

  def __init__(self, generator: nn.Module, disc: nn.Module):
    super().__init__()
    self.generator = generator
    self.disc = disc


def model_for_config(config) -> GLModel:
  """The PyTorch networks a glcic-jax config describes (mmagic's names)."""
  m = config.model
  return GLModel(
    GLEncoderDecoder(m.generator_channels),
    GLDiscs(
      config.image_size,
      config.local_size,
      m.global_num_convs,
      m.local_num_convs,
      m.disc_base_channels,
      m.disc_max_channels,
      m.disc_fc_features,
    ),
  )


def count_trainable(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters() if p.requires_grad)


def randomize_(module: nn.Module, seed: int) -> None:
  """Random weights and random BN running statistics (not the init values)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in module.state_dict().items():
      if name.endswith("num_batches_tracked"):
        t.fill_(int(torch.randint(0, 1000, (), generator=g)))
      elif name.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
      elif name.endswith("running_mean"):
        t.copy_(torch.randn(t.shape, generator=g) * 0.1)
      elif name.endswith("bn.weight"):
        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
      else:
        fan_in = max(1, t[0].numel()) if t.ndim > 1 else t.numel()
        t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)


def crop_local(images: torch.Tensor, local_bbox, size: int) -> torch.Tensor:
  """Per-example (top, left) crops of `size` x `size` (NCHW)."""
  return torch.stack(
    [
      img[:, int(t) : int(t) + size, int(lft) : int(lft) + size]
      for img, (t, lft, *_) in zip(images, local_bbox)
    ]
  )


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
  target = torch.ones_like(logits) if real else torch.zeros_like(logits)
  return nn.functional.binary_cross_entropy_with_logits(logits, target)


def mmagic_train_step(
  model: GLModel,
  opt_g: torch.optim.Optimizer,
  opt_d: torch.optim.Optimizer,
  batch: dict,
  cur_iter: int,
  *,
  iter_tc: int,
  iter_td: int,
  local_size: int,
  gan_weight: float = 0.001,
) -> dict[str, float]:
  """GLInpaintor.train_step (disc_step=1) as the reference facts describe it.

  batch: NCHW tensors `image` in [-1, 1], `mask` (1 = hole) and a list of
  local boxes `local_bbox`. Returns mmagic's logged losses.
  """
  img, mask, boxes = batch["image"], batch["mask"], batch["local_bbox"]
  fake_res = model.generator(torch.cat([img * (1 - mask), mask], dim=1))
  fake_img = img * (1 - mask) + fake_res * mask
  fake_local = crop_local(fake_img, boxes, local_size)
  logs = {}
  if cur_iter > iter_tc:
    for p in model.disc.parameters():
      p.requires_grad_(True)
    opt_d.zero_grad()
    fake_loss = _bce(model.disc(fake_img.detach(), fake_local.detach()), False)
    fake_loss.backward()
    real_loss = _bce(model.disc(img, crop_local(img, boxes, local_size)), True)
    real_loss.backward()
    opt_d.step()
    logs.update(fake_loss=fake_loss.item(), real_loss=real_loss.item())
    if cur_iter <= iter_td:
      return logs
  for p in model.disc.parameters():
    p.requires_grad_(False)
  weight = mask.expand_as(fake_res)
  l1 = (torch.abs(fake_res - img) * weight).sum() / (weight.sum() + 1e-12)
  loss = l1
  if cur_iter > iter_td:
    gan = gan_weight * _bce(model.disc(fake_img, fake_local), True)
    loss = loss + gan
    logs["loss_g_fake"] = gan.item()
  opt_g.zero_grad()
  loss.backward()
  opt_g.step()
  for p in model.disc.parameters():
    p.requires_grad_(True)
  logs["loss_l1_hole"] = l1.item()
  return logs
