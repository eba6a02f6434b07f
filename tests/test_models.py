"""Model-level facts: the networks compute PyTorch's functions from
mmagic's parameters, whatever convolution forms they run with (so
checkpoints and interop are untouched)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from glcic_jax import config as config_lib
from glcic_jax import interop, models
from glcic_jax.cpu import conv as cpu_conv
from tests import torch_reference as ref


def test_generator_with_odd_quarter_size_matches_pytorch():
  """20x28 inputs put 5x7 maps into dec3: the odd case, whole network, in
  training mode, with weights moved by interop as mmagic's would be."""
  torch.manual_seed(0)
  tg = ref.GLEncoderDecoder(8)
  ref.randomize_(tg, seed=3)
  g = models.Generator(channels=8)
  template = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 20, 28, 4)), False)
  )
  sd = {f"generator.{k}": v for k, v in tg.state_dict().items()}
  variables, _ = interop.gl_variables(sd, template, None, channel_order="rgb")
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 20, 28, 4)).astype(np.float32)
  got, _ = g.apply(variables, x, train=True, mutable=["batch_stats"])
  tg.train()
  with torch.no_grad():
    want = tg(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-4)


def test_generator_parameters_unchanged():
  g, _ = models.build_models(config_lib.get_model_config())
  shapes = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 4)), False)
  )
  dec3 = shapes["params"]["decoder"]["dec3"]["conv"]["kernel"]
  assert dec3.shape == (4, 4, 128, 256)
  dec5 = shapes["params"]["decoder"]["dec5"]["conv"]["kernel"]
  assert dec5.shape == (4, 4, 64, 128)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert n == 6_069_155


def test_discriminators_keep_their_parameters():
  # The CPU forms (the tests' backend) hold the same parameters.
  _, d = models.build_models(config_lib.get_model_config())
  assert d.conv.func is cpu_conv.Conv
  shapes = jax.eval_shape(
    lambda: d.init(
      jax.random.PRNGKey(0),
      np.zeros((1, 256, 256, 3)),
      np.zeros((1, 128, 128, 3)),
      False,
    )
  )
  kernel = shapes["params"]["global_disc"]["conv4"]["conv"]["kernel"]
  assert kernel.shape == (5, 5, 256, 512)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert n == 45_060_225
