"""glcic-jax: Globally and Locally Consistent Image Completion in JAX/Flax."""

__version__ = "0.1.0"
