"""nimare_jax: neuroimaging meta-analysis with jit-compiled JAX numerics."""

__version__ = "0.1.0"
