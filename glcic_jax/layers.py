"""The layers the networks are built from, and the one place that picks
how their convolutions are computed.

`Conv` and `ConvTranspose` hold mmagic's parameters (`nn.Conv`'s [k, k, in,
out] `kernel` and `nn.ConvTranspose(transpose_kernel=True)`'s [4, 4, out,
in], optional `bias`) and compute them with XLA's native convolutions, as
cuDNN and PyTorch do: what GPUs and TPUs run. `conv_layers` is the layer
factory: on the CPU backend it hands out subclasses from `glcic_jax.cpu`
that keep the same parameters and compute the same functions as matmuls,
because XLA's CPU convolutions are slow (docs/performance.md). The choice
is made once, when `models.build_models` builds the networks; no layer
looks at the backend or the mesh.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
ModuleDef = Callable[..., nn.Module]

# What `conv_layers` accepts: 'auto' is 'cpu' on the CPU backend and
# 'native' everywhere else.
CONV_FORMS = ("auto", "native", "cpu")

# mmcv's kaiming_init(mode='fan_out', nonlinearity='relu', distribution=
# 'normal'): std = sqrt(2 / fan_out), untruncated, with fan_out = k*k*dim0 of
# the PyTorch weight. For a Conv ([out, in, k, k] in PyTorch, HWIO here) that
# is k*k*out, Flax's last axis. For a ConvTranspose PyTorch's dim 0 is the
# *input* channel count; the Flax kernel of `ConvTranspose(transpose_kernel=
# True)` is [k, k, out, in], so its last axis is again PyTorch's dim 0.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def output_dtype(dtype: Dtype) -> Dtype:
  """float32 for bfloat16/float32 activations; float64 stays float64 (tests)."""
  return jnp.promote_types(dtype, jnp.float32)


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# The kernel gradient as a convolution of the input with the output's
# cotangent: the batch becomes the contracted feature axis.
_KERNEL_GRAD_DIMENSIONS = ("CHWN", "IHWO", "HWNC")


def _conv(x, kernel, strides, padding, lhs_dilation, rhs_dilation):
  """XLA's convolution in this module's layouts, operands as given."""
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=_DIMENSIONS,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _low_precision_conv(
  x, kernel, strides, padding, lhs_dilation, rhs_dilation
):
  """The convolution of low-precision `x` with the float32 `kernel` cast to
  x.dtype, whose kernel gradient is accumulated and returned in float32.

  XLA sums the kernel gradient's per-device parts where the convolution
  that makes it ends; with bfloat16 operands that would be a bfloat16
  all-reduce. PyTorch DDP reduces in float32, and so does this: the
  gradient convolution outputs float32 (`preferred_element_type`).
  """
  geometry = (strides, padding, lhs_dilation, rhs_dilation)
  return _conv(x, kernel.astype(x.dtype), *geometry)


def _low_precision_conv_fwd(x, kernel, *geometry):
  cast = kernel.astype(x.dtype)
  return _low_precision_conv(x, kernel, *geometry), (x, cast)


def _low_precision_conv_bwd(
  strides, padding, lhs_dilation, rhs_dilation, res, g
):
  x, kernel = res
  geometry = (strides, padding, lhs_dilation, rhs_dilation)
  _, x_vjp = jax.vjp(lambda x: _conv(x, kernel, *geometry), x)
  # Per spatial axis: the low padding as in the forward, the high one such
  # that the gradient covers the kernel's extent exactly.
  high = [
    (out - 1) * s - (size - 1) * ld + (k - 1) * rd - lo
    for out, s, size, ld, k, rd, (lo, _) in zip(
      g.shape[1:3],
      strides,
      x.shape[1:3],
      lhs_dilation,
      kernel.shape[:2],
      rhs_dilation,
      padding,
    )
  ]
  kernel_grad = jax.lax.conv_general_dilated(
    x,
    g,
    window_strides=rhs_dilation,
    padding=[(lo, hi) for (lo, _), hi in zip(padding, high)],
    lhs_dilation=lhs_dilation,
    rhs_dilation=strides,
    dimension_numbers=_KERNEL_GRAD_DIMENSIONS,
    preferred_element_type=jnp.float32,
  )
  return x_vjp(g)[0], kernel_grad


_low_precision_conv.defvjp(_low_precision_conv_fwd, _low_precision_conv_bwd)


def _convolve(
  x, kernel, strides, padding, lhs_dilation=(1, 1), rhs_dilation=(1, 1)
):
  """x (compute dtype) with the kernel: as is when their dtypes agree,
  through `_low_precision_conv` for bfloat16 x with a float32 kernel."""
  geometry = (
    tuple(strides),
    tuple(map(tuple, padding)),
    tuple(lhs_dilation),
    tuple(rhs_dilation),
  )
  if _is_low_precision(x, kernel):
    return _low_precision_conv(x, kernel, *geometry)
  return _conv(x, kernel.astype(x.dtype), *geometry)


def conv2d(
  x: jax.Array, kernel: jax.Array, stride: int = 1, dilation: int = 1
) -> jax.Array:
  """PyTorch's Conv2d(padding=dilation * (k - 1) // 2) on NHWC `x` with an
  HWIO kernel (float32, cast to x.dtype). Explicit symmetric padding: XLA's
  'SAME' would pad stride-2 convolutions asymmetrically."""
  pad = dilation * (kernel.shape[0] - 1) // 2
  return _convolve(
    x,
    kernel,
    (stride, stride),
    ((pad, pad), (pad, pad)),
    rhs_dilation=(dilation, dilation),
  )


def conv_transpose2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) from the [4, 4, out, in]
  kernel of `nn.ConvTranspose(transpose_kernel=True)` (float32, cast to
  x.dtype): an input-dilated convolution with the kernel flipped and its
  channel axes swapped, which doubles the spatial size."""
  flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  return _convolve(x, flipped, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2))


def _is_low_precision(x: jax.Array, param: jax.Array) -> bool:
  """bfloat16 (or float16) activations meeting a float32 parameter."""
  return jnp.dtype(x.dtype).itemsize < jnp.dtype(param.dtype).itemsize


@jax.custom_vjp
def _low_precision_add(y, bias):
  """y + bias cast to y.dtype, with the bias gradient summed in float32 (the
  sum over the batch is the part XLA all-reduces across devices)."""
  return y + bias.astype(y.dtype)


def _low_precision_add_fwd(y, bias):
  return _low_precision_add(y, bias), None


def _low_precision_add_bwd(_, g):
  return g, g.astype(jnp.float32).sum(axis=tuple(range(g.ndim - 1)))


_low_precision_add.defvjp(_low_precision_add_fwd, _low_precision_add_bwd)


@jax.custom_vjp
def _low_precision_matmul(x, kernel):
  """x @ kernel cast to x.dtype; the kernel gradient in float32, as
  `_low_precision_conv`'s."""
  return x @ kernel.astype(x.dtype)


def _low_precision_matmul_fwd(x, kernel):
  cast = kernel.astype(x.dtype)
  return x @ cast, (x, cast)


def _low_precision_matmul_bwd(res, g):
  x, kernel = res
  kernel_grad = jax.lax.dot_general(
    x, g, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
  )
  return g @ kernel.T, kernel_grad


_low_precision_matmul.defvjp(
  _low_precision_matmul_fwd, _low_precision_matmul_bwd
)


def _bias(module: nn.Module, y: jax.Array) -> jax.Array:
  if not module.use_bias:
    return y
  bias = module.param(
    "bias", nn.initializers.zeros, (module.features,), jnp.float32
  )
  if _is_low_precision(y, bias):
    return _low_precision_add(y, bias)
  return y + bias.astype(y.dtype)


class Dense(nn.Module):
  """`nn.Dense`'s parameters ([in, out] `kernel`, `bias`) in float32,
  arithmetic in `dtype`, and under bfloat16 float32 parameter gradients
  (see `_low_precision_conv`)."""

  features: int
  kernel_init: Callable = nn.initializers.lecun_normal()
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32
    )
    x = x.astype(self.dtype)
    if _is_low_precision(x, kernel):
      y = _low_precision_matmul(x, kernel)
    else:
      y = x @ kernel.astype(x.dtype)
    return _bias(self, y)


class Conv(nn.Module):
  """`nn.Conv` with PyTorch's symmetric padding; parameters in float32,
  arithmetic in `dtype`. Subclasses change `convolve` only, so every form
  of the layer holds the same parameters."""

  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    if k % 2 != 1:
      raise ValueError(f"Conv needs an odd kernel size, got {k}")
    kernel = self.param(
      "kernel",
      conv_kernel_init,
      (k, k, x.shape[-1], self.features),
      jnp.float32,
    )
    y = self.convolve(x.astype(self.dtype), kernel)
    return _bias(self, y)

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x in the compute dtype, the float32 kernel (each form casts it)."""
    return conv2d(x, kernel, self.stride, self.dilation)


class ConvTranspose(nn.Module):
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1), the generator's two
  upsampling layers, holding `nn.ConvTranspose(transpose_kernel=True)`'s
  [4, 4, out, in] kernel. Subclasses change `convolve` only."""

  features: int
  use_bias: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      conv_kernel_init,
      (4, 4, self.features, x.shape[-1]),
      jnp.float32,
    )
    y = self.convolve(x.astype(self.dtype), kernel)
    return _bias(self, y)

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x in the compute dtype, the float32 kernel (each form casts it)."""
    return conv_transpose2d(x, kernel)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch's semantics, so running statistics match mmagic.

  Differences from `flax.linen.BatchNorm` that matter for parity: the running
  variance is updated with the *unbiased* batch variance (normalisation uses
  the biased one), `momentum` is PyTorch's (weight of the new batch), and a
  `num_batches_tracked` counter is kept so the PyTorch state_dict round-trips.
  Statistics are taken over every axis but the last; under `jax.jit` with a
  batch sharded over devices that is the global batch (SyncBN semantics).
  Statistics and the affine transform are computed in float32 whatever the
  activation dtype.
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable(
      "batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)
    )
    ra_var = self.variable(
      "batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)
    )
    count = self.variable(
      "batch_stats", "num_batches_tracked", lambda: jnp.zeros((), jnp.int32)
    )
    xf = x.astype(output_dtype(x.dtype))
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
        ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        count.value = count.value + 1
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    y = xf * mul + (bias - mean * mul)
    return y.astype(self.dtype or x.dtype)


def conv_layers(
  forms: str = "auto", batch_per_device: int | None = None
) -> tuple[ModuleDef, ModuleDef]:
  """The (conv, transposed conv) layer classes the networks are built with.

  `forms`: 'native' (XLA's convolutions), 'cpu' (the matmul forms of
  `glcic_jax.cpu`, which pay on the CPU backend only) or 'auto' (the
  backend's). `batch_per_device` is how many examples one device runs per
  call: the CPU forms choose by it (None: the traced batch, one device).
  Equal choices give the same (hashable) classes, so networks built twice
  compare equal.
  """
  if forms not in CONV_FORMS:
    raise ValueError(f"conv_forms must be one of {CONV_FORMS}, not {forms!r}")
  if forms == "auto":
    forms = "cpu" if jax.default_backend() == "cpu" else "native"
  if forms == "native":
    return Conv, ConvTranspose
  return _cpu_layers(batch_per_device)


@functools.cache
def _cpu_layers(batch_per_device: int | None) -> tuple[ModuleDef, ModuleDef]:
  from glcic_jax.cpu import conv, subpixel

  return (
    functools.partial(conv.Conv, batch_per_device=batch_per_device),
    subpixel.ConvTranspose,
  )
