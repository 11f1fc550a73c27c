"""mohaq_jax: multi-objective, hardware-aware mixed-precision quantization in JAX."""

__version__ = "0.1.0"
