"""Numerics: fake quantization, error metrics, bootstrap intervals."""
