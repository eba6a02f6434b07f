"""Weights in and out (glcic-import / glcic-export): mmagic files ->
workdir -> mmagic files."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

from glcic_jax import (
  checkpointing,
  interop,
  models,
  train,
  train_state,
  weights,
)
from tests import torch_reference as ref
from tests.test_train_steps import load_config


@pytest.fixture(scope="module")
def mmagic_pth(tmp_path_factory):
  """A paper-shape mmagic checkpoint with random weights and statistics."""
  model = ref.GLModel(ref.GLEncoderDecoder(), ref.GLDiscs())
  ref.randomize_(model, seed=7)
  path = tmp_path_factory.mktemp("mmagic") / "gl.pth"
  torch.save({"state_dict": model.state_dict(), "meta": {"iter": 3}}, path)
  return path, model


def test_import_then_export_round_trips_paper_checkpoint(mmagic_pth, tmp_path):
  path, model = mmagic_pth
  workdir = str(tmp_path / "w")
  summary = weights.import_checkpoint(str(path), workdir, step=500_000)
  assert summary["generator_parameters"] == 6_069_155
  assert summary["disc_parameters"] == 45_060_225
  assert checkpointing.existing_steps(workdir) == [500_000]
  out = str(tmp_path / "back.pth")
  s = weights.export_checkpoint(workdir, out)
  assert s["step"] == 500_000
  back = torch.load(out, weights_only=True)
  assert back["meta"]["iter"] == 500_000
  sd = model.state_dict()
  assert set(back["state_dict"]) == set(sd)
  for k, v in sd.items():  # bgr in, bgr out: bit-identical
    assert torch.equal(back["state_dict"][k], v), k
  fresh = ref.GLModel(ref.GLEncoderDecoder(), ref.GLDiscs())
  fresh.load_state_dict(back["state_dict"], strict=True)

  # The imported generator completes RGB as mmagic's completes BGR.
  g_vars, _, _ = checkpointing.restore_generator(workdir)
  x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 4)).astype("f4")
  model.eval()
  with torch.no_grad():
    want = model.generator(
      torch.from_numpy(x[..., [2, 1, 0, 3]].transpose(0, 3, 1, 2).copy())
    )
  generator = models.Generator()
  got = jax.jit(lambda v, x: generator.apply(v, x, train=False))(g_vars, x)
  np.testing.assert_allclose(
    np.asarray(got)[..., ::-1], want.numpy().transpose(0, 2, 3, 1), atol=1e-4
  )
  with pytest.raises(FileExistsError, match="already holds checkpoints"):
    weights.import_checkpoint(str(path), workdir)


def test_imported_checkpoint_resumes_training(tmp_path):
  """An imported (tiny) checkpoint is a workdir glcic-train continues."""
  config = load_config("tiny")
  config.eval_every = 0
  g, d = models.build_models(config.model)
  g_vars, d_vars = models.init_variables(
    g, d, jax.random.PRNGKey(9), (32, 32), (16, 16)
  )
  pth = tmp_path / "tiny.pth"
  interop.write_state_dict(pth, interop.gl_state_dict(g_vars, d_vars))
  workdir = str(tmp_path / "w")
  weights.import_checkpoint(str(pth), workdir, config, step=6)
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 8
  assert checkpointing.existing_steps(workdir) == [6, 8]


def test_export_any_config_and_errors(tmp_path):
  config = load_config("tiny")
  state = jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0)))
  workdir = str(tmp_path / "w")
  with checkpointing.Checkpointer(workdir, save_every=1, keep=2) as ckpt:
    ckpt.save(state, config, force=True)
  out = str(tmp_path / "tiny.safetensors")
  weights.export_checkpoint(workdir, out, channel_order="rgb")
  sd = interop.read_state_dict(out)
  assert sd["disc.global_disc.fc.linear.weight"].shape == (16, 16 * 4 * 4)
  with pytest.raises(ValueError, match=".pth or .safetensors"):
    weights.export_checkpoint(workdir, str(tmp_path / "x.bin"))
  with pytest.raises(FileNotFoundError):
    weights.export_checkpoint(str(tmp_path / "none"), out)
  with pytest.raises(FileNotFoundError, match=r"\[0\]"):
    weights.export_checkpoint(workdir, out, step=5)


def test_console_scripts_print_what_they_did(mmagic_pth, tmp_path):
  path, _ = mmagic_pth
  workdir = str(tmp_path / "w")
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
  cli = [sys.executable, "-m"]
  done = subprocess.run(
    cli
    + [
      "glcic_jax.commands.import_weights",
      f"--checkpoint={path}",
      f"--workdir={workdir}",
    ],
    capture_output=True,
    text=True,
    env=env,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Imported 170 tensors" in done.stdout
  assert "6,069,155" in done.stdout and "bgr -> RGB" in done.stdout
  out = tmp_path / "o.pth"
  done = subprocess.run(
    cli
    + [
      "glcic_jax.commands.export_weights",
      f"--workdir={workdir}",
      f"--output={out}",
    ],
    capture_output=True,
    text=True,
    env=env,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "170 tensors" in done.stdout and "RGB -> bgr" in done.stdout
  bad = tmp_path / "truncated.pth"
  bad.write_bytes(path.read_bytes()[:1000])
  done = subprocess.run(
    cli
    + [
      "glcic_jax.commands.import_weights",
      f"--checkpoint={bad}",
      f"--workdir={tmp_path / 'w2'}",
    ],
    capture_output=True,
    text=True,
    env=env,
    check=False,
  )
  assert done.returncode != 0
  assert "truncated.pth" in done.stderr
  assert not os.path.exists(tmp_path / "w2")


def test_unusable_weights_are_refused_at_import_naming_each(
  mmagic_pth, tmp_path
):
  """NaN, inf, integer and boolean weights would paint every hole black:
  glcic-import refuses them, naming each tensor, in its last lines, and
  creates no workdir."""
  path, model = mmagic_pth
  sd = {k: v.clone() for k, v in model.state_dict().items()}
  sd["generator.encoder.enc1.conv.weight"][0, 0, 0, 0] = float("nan")
  sd["disc.global_disc.fc.linear.bias"][3] = float("inf")
  sd["generator.decoder.dec2.bn.weight"] = sd[
    "generator.decoder.dec2.bn.weight"
  ].to(torch.int64)
  sd["generator.encoder.enc2.bn.bias"] = (
    sd["generator.encoder.enc2.bn.bias"] > 0
  )
  bad = tmp_path / "bad.pth"
  torch.save({"state_dict": sd}, bad)
  workdir = tmp_path / "w"
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "glcic_jax.commands.import_weights",
      f"--checkpoint={bad}",
      f"--workdir={workdir}",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    check=False,
  )
  assert done.returncode == 1
  tail = done.stderr[done.stderr.index("glcic-import: error:") :]
  for problem in (
    "non-finite values: generator.encoder.enc1.conv.weight holds 1 NaN",
    "non-finite values: disc.global_disc.fc.linear.bias holds 1 NaN or inf",
    "wrong dtype: generator.decoder.dec2.bn.weight int64",
    "wrong dtype: generator.encoder.enc2.bn.bias bool",
  ):
    assert problem in tail, tail
  assert "Traceback" not in done.stderr
  assert not workdir.exists()


def _tiny_workdir(tmp_path, step=5):
  config = load_config("tiny")
  state = jax.device_get(train_state.init_state(config, jax.random.PRNGKey(0)))
  workdir = str(tmp_path / "tiny_w")
  with checkpointing.Checkpointer(workdir, save_every=1, keep=2) as ckpt:
    ckpt.save(state.replace(step=np.int32(step)), config, force=True)
  return workdir, config, state


def test_exports_record_their_config_so_imports_need_none(tmp_path):
  workdir, config, state = _tiny_workdir(tmp_path)
  for name in ("tiny.pth", "tiny.safetensors"):
    out = str(tmp_path / name)
    weights.export_checkpoint(workdir, out)
    summary = weights.import_checkpoint(out, str(tmp_path / f"back_{name}"))
    assert summary["config"] == "tiny" and summary["step"] == 5
    assert summary["channel_order"] == "bgr"
    back, _, step = checkpointing.restore_generator(tmp_path / f"back_{name}")
    assert step == 5
    for a, b in zip(
      jax.tree.leaves(back["params"]), jax.tree.leaves(state.g_params)
    ):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_file_of_other_shapes_gets_the_config_to_pass(tmp_path):
  """A tiny file without metadata, imported with the paper's default: one
  message naming the project's config that fits and the shapes as flags,
  instead of a list of every tensor."""
  _, config, state = _tiny_workdir(tmp_path)
  bare = tmp_path / "bare.pth"
  interop.write_state_dict(
    bare,
    interop.gl_state_dict(state.generator_variables(), state.disc_variables()),
  )
  workdir = tmp_path / "w"
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "glcic_jax.commands.import_weights",
      f"--checkpoint={bare}",
      f"--workdir={workdir}",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    check=False,
  )
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert "pass --config=configs/tiny.py, or a config with" in last, last
  for flag in (
    "--config.image_size=32",
    "--config.local_size=16",
    "--config.model.generator_channels=8",
    "--config.model.global_num_convs=3",
    "--config.model.disc_fc_features=16",
  ):
    assert flag in last, last
  assert not workdir.exists()


def test_glcic_export_formats_and_errors(tmp_path):
  workdir, _, _ = _tiny_workdir(tmp_path)

  def export(*flags):
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "glcic_jax.commands.export_weights",
        f"--workdir={workdir}",
        *flags,
      ],
      capture_output=True,
      text=True,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
      check=False,
    )

  out = tmp_path / "out"
  out.mkdir()
  done = export("--format=torch", f"--output={out / 'g.pth'}")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Exported the generator of step 5" in done.stdout
  for flags, message in (
    (["--format=webp", f"--output={out / 'g.x'}"], "webp"),
    (["--format=onnx", f"--output={out / 'g.pth'}"], "must end in .onnx"),
    (
      ["--format=onnx", f"--output={tmp_path / 'no' / 'g.onnx'}"],
      "does not exist",
    ),
    (["--format=onnx", "--step=9", f"--output={out / 'g.onnx'}"], r"\[5\]"),
  ):
    done = export(*flags)
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr
  assert sorted(os.listdir(out)) == ["g.pth"]  # nothing partial left


def test_import_by_url_downloads_once_into_the_cache(tmp_path):
  """glcic-import --checkpoint URL from a server on 127.0.0.1; the second
  import, --offline, after the server is gone, reads the cache."""
  import functools
  import hashlib
  import http.server
  import threading

  workdir, _, _ = _tiny_workdir(tmp_path)
  served = tmp_path / "served"
  served.mkdir()
  plain = served / "plain.pth"
  weights.export_checkpoint(workdir, str(plain))
  digest = hashlib.sha256(plain.read_bytes()).hexdigest()[:8]
  name = f"gl_tiny-{digest}.pth"
  plain.rename(served / name)
  handler = functools.partial(
    http.server.SimpleHTTPRequestHandler, directory=str(served)
  )
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  url = f"http://127.0.0.1:{httpd.server_port}/{name}"
  env = dict(
    os.environ, CUDA_VISIBLE_DEVICES="", GLCIC_WEIGHTS_CACHE=str(tmp_path / "c")
  )

  def run_import(target, *flags):
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "glcic_jax.commands.import_weights",
        f"--checkpoint={url}",
        f"--workdir={tmp_path / target}",
        *flags,
      ],
      capture_output=True,
      text=True,
      env=env,
      check=False,
    )

  try:
    done = run_import("a")
  finally:
    httpd.shutdown()
  assert done.returncode == 0, done.stderr[-2000:]
  assert os.listdir(tmp_path / "c") == [name]
  assert "config tiny" in done.stdout and "as step 5" in done.stdout
  done = run_import("b", "--offline")
  assert done.returncode == 0, done.stderr[-2000:]
  assert checkpointing.existing_steps(tmp_path / "b") == [5]
