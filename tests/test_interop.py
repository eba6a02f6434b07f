"""Weights move between mmagic's PyTorch layout and Flax without changing the
function: forwards, running-statistic updates and files, both ways."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from glcic_jax import interop, models
from tests import torch_reference as ref
from tests.reference_files import reference_path

ATOL = 1e-4


def _templates(g, d, size=256, local=128):
  return jax.eval_shape(
    lambda: models.init_variables(
      g, d, jax.random.PRNGKey(0), (size, size), (local, local)
    )
  )


@pytest.fixture(scope="module")
def paper_torch():
  torch.manual_seed(0)
  model = ref.GLModel(ref.GLEncoderDecoder(), ref.GLDiscs())
  ref.randomize_(model, seed=1)
  return model


@pytest.fixture(scope="module")
def paper_flax(paper_torch):
  g, d = models.Generator(), models.GLDiscs()
  g_t, d_t = _templates(g, d)
  sd = paper_torch.state_dict()
  g_vars, d_vars = interop.gl_variables(sd, g_t, d_t, channel_order="rgb")
  return g, d, g_vars, d_vars


def _apply(module, variables, *inputs, train: bool):
  """`module.apply`, jitted (eager, each of the Winograd transforms' ops
  would be compiled on its own): (output, batch_stats updates) in
  training mode, the output in eval mode."""
  if train:
    return jax.jit(
      lambda v, *x: module.apply(v, *x, train=True, mutable=["batch_stats"])
    )(variables, *inputs)
  return jax.jit(lambda v, *x: module.apply(v, *x, train=False))(
    variables, *inputs
  )


def _nchw(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


def test_parameter_counts_equal_mmagic():
  g, d = models.Generator(), models.GLDiscs()
  g_t, d_t = _templates(g, d)

  def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))

  assert count(g_t["params"]) == 6_069_155
  assert count(d_t["params"]) == 45_060_225
  assert count(d_t["params"]["global_disc"]) == 25_806_400
  assert count(d_t["params"]["local_disc"]) == 19_251_776
  assert count(d_t["params"]["fc"]) == 2_049
  assert ref.count_trainable(ref.GLEncoderDecoder()) == 6_069_155
  discs = ref.GLDiscs()
  assert ref.count_trainable(discs) == 45_060_225
  assert ref.count_trainable(discs.global_disc) == 25_806_400
  assert ref.count_trainable(discs.local_disc) == 19_251_776


def test_export_keys_and_shapes_are_mmagics():
  g, d = models.Generator(), models.GLDiscs()
  g_t, d_t = _templates(g, d)
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), (g_t, d_t))
  sd = interop.gl_state_dict(*zeros)
  keys_file = reference_path("gl_state_dict_keys.txt")
  expected = {}
  with open(keys_file) as f:
    for line in f:
      if line.startswith("#") or not line.strip():
        continue
      key, shape = line.split(" ", 1)
      expected[key] = tuple(eval(shape))  # noqa: S307 - our own reference file
  assert {k: tuple(v.shape) for k, v in sd.items()} == expected
  assert len(sd) == 170


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("size", [(256, 256), (64, 96)])
def test_generator_forward_matches_pytorch(
  paper_torch, paper_flax, train, size
):
  g, _, g_vars, _ = paper_flax
  tg = paper_torch.generator
  batch = 1 if size[0] == 256 else 2
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, *size, 4)).astype(np.float32)
  x[..., 3] = (rng.uniform(size=(batch, *size)) > 0.7).astype(np.float32)
  state = {k: v.clone() for k, v in tg.state_dict().items()}
  tg.train(train)
  with torch.no_grad():
    want = _nhwc(tg(_nchw(x)))
  if train:
    got, updates = _apply(g, g_vars, x, train=True)
  else:
    got = _apply(g, g_vars, x, train=False)
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=0)
  if train:  # updated running statistics equal PyTorch's
    new = interop.variables_to_state_dict(
      {"batch_stats": updates["batch_stats"]}, "", "rgb"
    )
    torch_new = tg.state_dict()
    for k, v in new.items():
      np.testing.assert_allclose(
        v, torch_new[k].numpy(), atol=ATOL, rtol=0, err_msg=k
      )
    assert int(new["encoder.enc1.bn.num_batches_tracked"]) == int(
      state["encoder.enc1.bn.num_batches_tracked"] + 1
    )
  tg.load_state_dict(state)


@pytest.mark.parametrize("train", [False, True])
def test_discriminators_forward_matches_pytorch(paper_torch, paper_flax, train):
  _, d, _, d_vars = paper_flax
  td = paper_torch.disc
  rng = np.random.default_rng(1)
  img = rng.uniform(-1, 1, (3, 256, 256, 3)).astype(np.float32)
  local = rng.uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
  state = {k: v.clone() for k, v in td.state_dict().items()}
  td.train(train)
  with torch.no_grad():
    want = td(_nchw(img), _nchw(local)).numpy()
  if train:
    got, updates = _apply(d, d_vars, img, local, train=True)
    new = interop.variables_to_state_dict(
      {"batch_stats": updates["batch_stats"]}, "", "rgb"
    )
    for k, v in new.items():
      np.testing.assert_allclose(
        v, td.state_dict()[k].numpy(), atol=ATOL, rtol=0, err_msg=k
      )
  else:
    got = _apply(d, d_vars, img, local, train=False)
  td.load_state_dict(state)
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=1e-4)


def test_golden_generator_from_mmagic():
  """mmagic's own generator outputs, reproduced in Flax and in the mirror."""
  gold = load_file(reference_path("golden", "gl_generator_64px.safetensors"))
  sd = {k: v for k, v in gold.items() if k.startswith("generator.")}
  x = gold["input"].transpose(0, 2, 3, 1)  # stored BGR, as mmagic feeds it
  g = models.Generator()
  g_t = jax.eval_shape(
    lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 4)), False)
  )
  g_vars, _ = interop.gl_variables(sd, g_t, None, channel_order="rgb")
  out_eval = _apply(g, g_vars, x, train=False)
  out_train, upd = _apply(g, g_vars, x, train=True)
  np.testing.assert_allclose(
    out_eval, gold["output_eval"].transpose(0, 2, 3, 1), atol=ATOL, rtol=0
  )
  np.testing.assert_allclose(
    out_train, gold["output_train"].transpose(0, 2, 3, 1), atol=ATOL, rtol=0
  )
  new = interop.variables_to_state_dict(upd, "generator.", "rgb")
  after = {
    k[len("after_train_forward.") :]: v
    for k, v in gold.items()
    if k.startswith("after_train_forward.")
  }
  assert set(after) == set(new)
  for k, v in after.items():
    np.testing.assert_allclose(new[k], v, atol=ATOL, rtol=0, err_msg=k)

  tg = ref.GLModel(ref.GLEncoderDecoder(), torch.nn.Identity())
  tg.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
  tg.eval()
  with torch.no_grad():
    np.testing.assert_allclose(
      tg.generator(torch.from_numpy(gold["input"])).numpy(),
      gold["output_eval"],
      atol=ATOL,
    )


def test_bgr_import_completes_rgb_as_mmagic_completes_bgr(paper_torch):
  """channel_order='bgr': RGB in Flax == BGR in PyTorch, channels reversed."""
  tg = paper_torch.generator.eval()
  g, d = models.Generator(), models.GLDiscs()
  g_t, d_t = _templates(g, d)
  g_vars, d_vars = interop.gl_variables(paper_torch.state_dict(), g_t, d_t)
  rng = np.random.default_rng(2)
  rgb = rng.uniform(-1, 1, (1, 64, 64, 4)).astype(np.float32)
  bgr = rgb[..., [2, 1, 0, 3]]
  with torch.no_grad():
    want_bgr = _nhwc(tg(_nchw(bgr)))
  got_rgb = np.asarray(_apply(g, g_vars, rgb, train=False))
  np.testing.assert_allclose(got_rgb[..., ::-1], want_bgr, atol=ATOL)
  img = rng.uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)
  loc = rng.uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
  td = paper_torch.disc.eval()
  with torch.no_grad():
    want = td(_nchw(img[..., ::-1]), _nchw(loc[..., ::-1])).numpy()
  got = _apply(d, d_vars, img, loc, train=False)
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_export_loads_strict_and_round_trips(tmp_path, suffix, order):
  g, d = models.Generator(), models.GLDiscs()
  g_vars, d_vars = models.init_variables(
    g, d, jax.random.PRNGKey(3), (256, 256), (128, 128)
  )
  # Non-trivial running statistics, so their mapping is exercised.
  g_vars["batch_stats"] = jax.tree.map(
    lambda x: x + 0.25 if x.dtype == jnp.float32 else x + 7,
    g_vars["batch_stats"],
  )
  path = tmp_path / f"out{suffix}"
  interop.write_state_dict(
    path, interop.gl_state_dict(g_vars, d_vars, order), {"step": 5}
  )
  if suffix == ".pth":
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == {"step": 5}
  sd = interop.read_state_dict(path)
  model = ref.GLModel(ref.GLEncoderDecoder(), ref.GLDiscs())
  model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
  model.eval()
  rng = np.random.default_rng(4)
  x = rng.uniform(-1, 1, (1, 64, 64, 4)).astype(np.float32)
  x_torch = x[..., [2, 1, 0, 3]] if order == "bgr" else x
  with torch.no_grad():
    want = _nhwc(model.generator(_nchw(x_torch)))
  if order == "bgr":
    want = want[..., ::-1]
  np.testing.assert_allclose(
    _apply(g, g_vars, x, train=False), want, atol=ATOL, rtol=0
  )
  # import(export(x)) == x exactly
  g2, d2 = interop.gl_variables(sd, g_vars, d_vars, order)
  for a, b in zip(
    jax.tree.leaves((g_vars, d_vars)), jax.tree.leaves((g2, d2)), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tiny_config_round_trips():
  """Any width/size a config defines exports with shapes that follow it."""
  g = models.Generator(channels=8)
  d = models.GLDiscs(3, 2, base_channels=4, max_channels=8, fc_features=16)
  g_vars, d_vars = models.init_variables(
    g, d, jax.random.PRNGKey(5), (32, 32), (16, 16)
  )
  sd = interop.gl_state_dict(g_vars, d_vars)
  assert sd["disc.global_disc.fc.linear.weight"].shape == (16, 8 * 4 * 4)
  assert sd["generator.decoder.dec3.conv.weight"].shape == (32, 16, 4, 4)
  g2, d2 = interop.gl_variables(sd, g_vars, d_vars)
  for a, b in zip(jax.tree.leaves((g_vars, d_vars)), jax.tree.leaves((g2, d2))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _paper_sd():
  g, d = models.Generator(), models.GLDiscs()
  g_t, d_t = _templates(g, d)
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), (g_t, d_t))
  return interop.gl_state_dict(*zeros), g_t, d_t


def test_mismatched_state_dicts_list_every_problem():
  sd, g_t, d_t = _paper_sd()
  bad = dict(sd)
  del bad["generator.encoder.enc3.bn.running_var"]
  bad["disc.global_disc.conv2.conv.weight"] = np.zeros((128, 64, 3, 3))
  bad["disc.extra.weight"] = np.zeros(3)
  bad["optimizer.lr"] = np.zeros(1)
  with pytest.raises(interop.StateDictMismatchError) as e:
    interop.gl_variables(bad, g_t, d_t)
  assert "unexpected: optimizer.lr" in str(e.value)
  del bad["optimizer.lr"]
  with pytest.raises(interop.StateDictMismatchError) as e:
    interop.gl_variables(bad, g_t, d_t)
  msg = str(e.value)
  assert "missing: generator.encoder.enc3.bn.running_var" in msg
  assert "unexpected: disc.extra.weight" in msg
  assert (
    "wrong shape: disc.global_disc.conv2.conv.weight (128, 64, 3, 3)" in msg
  )
  assert "expected (128, 64, 5, 5)" in msg


def test_unreadable_files_get_clear_errors(tmp_path):
  sd, _, _ = _paper_sd()
  small = {k: v for k, v in sd.items() if k.startswith("generator.encoder")}
  for suffix in (".pth", ".safetensors"):
    path = tmp_path / f"x{suffix}"
    interop.write_state_dict(path, small)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"x{suffix}"):
      interop.read_state_dict(path)
  with pytest.raises(FileNotFoundError, match="nope.pth"):
    interop.read_state_dict(tmp_path / "nope.pth")
  with pytest.raises(ValueError, match="channel_order"):
    interop.gl_state_dict({"params": {}}, {"params": {}}, "grb")


class NotATensor:
  """A pickled object that `torch.load(weights_only=True)` must refuse."""


def test_pickle_is_refused_unless_allowed(tmp_path):
  path = tmp_path / "pickled.pth"
  sd = {"generator.x": torch.ones(2)}
  torch.save({"state_dict": sd, "meta": NotATensor()}, path)
  with pytest.raises(ValueError, match="--allow_pickle"):
    interop.read_state_dict(path)
  loaded = interop.read_state_dict(path, allow_pickle=True)
  np.testing.assert_array_equal(loaded["generator.x"], np.ones(2))
