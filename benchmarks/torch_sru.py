"""The MOHAQ authors' stack as an outside anchor: PyTorch + the ``sru`` package.

The authors evaluated genomes one at a time with PyTorch and Tao Lei's ``sru`` package
(``pip install sru``; 2.6.0 here, CPU elementwise kernel compiled by ``torch.utils.
cpp_extension`` on first import). This module builds the benchmark's SRU acoustic
model as an ``sru.SRU`` stack with our float weights, fake-quantizes one genome's
weights in torch with the quantizer of :mod:`mohaq_jax.numerics.quantize` (symmetric, clip then
round-half-to-even, ``qmax = 2**(b-1) - 1``; per-channel or per-tensor clips from the
same :class:`mohaq_jax.models.qmodel.Calibration`) and runs it forward.

Every quantization site of our model is quantized here too, weights and input
activations: the matmuls that produce each layer's ``U`` (projection, then the SRU
kernel) are the layer's ``custom_m`` — the hook the ``sru`` package offers for
computing ``U`` — so the projection's output can be fake-quantized before the SRU
kernel, and the highway term still sees the layer's float input, as in
:mod:`mohaq_jax.models.sru`. What differs from our model, and why it is equivalent:

- ``sru`` lays ``U`` out as ``(dirs, hidden, k)``, ours as ``(dirs, k, hidden)``: the
  kernel's columns are permuted after quantization (per-channel clips follow them).
- ``sru`` bakes ``scale_x`` into the 4th matrix; ours multiplies ``U``'s 4th slice by
  it: the quantized kernel's 4th slice is multiplied by ``scale_x`` here (the same
  product, rounded differently in float32).
- Padding: ``sru``'s CPU kernel skips padded frames (state kept, output 0), ours resets
  the state to 0 there; valid frames see the same state either way.
- Recurrence: ``sru``'s C++ loop (``cpu_bi_forward``) instead of our ``lax.scan``.

Only the forward and the frame-level argmax are timed; the phone error rate (and the
decoder) are not computed here.
"""

from __future__ import annotations

import math

import numpy as np

BIT_OPTIONS = (2, 3, 4, 5, 6, 8, 16, 32)  # mohaq_jax.numerics.quantize.BIT_OPTIONS
FLOAT_BITS = 32


def available() -> bool:
    """Whether torch and sru import (the ``bench`` extra)."""
    try:
        import torch  # noqa: F401

        _import_sru()
    except ImportError:
        return False
    return True


def versions() -> str:
    """``"PyTorch X + sru Y"``."""
    import torch

    return f"PyTorch {torch.__version__} + sru {_import_sru().__version__}"


def _import_sru():
    """``import sru``, without its warning that no CUDA kernels were built."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*CUDA kernels of SRU.*")
        import sru

    return sru


def fake_quant(x, bits: int, clip):
    """:func:`mohaq_jax.numerics.quantize.fake_quant` in torch (forward only)."""
    import torch

    if bits >= FLOAT_BITS:
        return x
    levels = 2.0 ** (bits - 1) - 1.0
    clip = torch.clamp(torch.as_tensor(clip, dtype=x.dtype), min=1.1754944e-38)
    step = clip / levels
    levels_q = torch.round(torch.clamp(x, -clip, clip) / step)
    return torch.clamp(levels_q, -levels, levels) * step


def _stages(sites) -> list[tuple[int | None, int]]:
    """``(proj site or None, sru site)`` per SRU layer, from the model's sites."""
    return [
        (i - 1 if i and sites[i - 1].kind == "proj" else None, i)
        for i, site in enumerate(sites)
        if site.kind == "sru"
    ]


def build(config, sites, params):
    """The model as an ``sru.SRU`` (one ``custom_m`` per layer) plus the output layer.

    Args:
      config: :class:`mohaq_jax.models.sru.Config`.
      sites: ``sru.sites(config)``.
      params: float params (nested dict of arrays).

    Returns:
      ``TorchSRUModel``; set a genome with ``set_genome`` before calling it.
    """
    import torch
    from torch import nn

    class QuantizedU(nn.Module):
        """``custom_m`` of one layer: [act-quant, projection,] act-quant, SRU kernel."""

        def __init__(self):
            super().__init__()
            self.proj = None  # quantized projection kernel (n_in, n_proj) or None
            self.kernel = None  # quantized SRU kernel, sru's column order
            self.proj_act = (FLOAT_BITS, 0.0)  # (bits, clip) of the projection input
            self.act = (FLOAT_BITS, 0.0)  # (bits, clip) of the SRU kernel input

        def reset_parameters(self):
            pass

        def forward(self, x):
            x = x.reshape(-1, x.shape[-1])
            if self.proj is not None:
                x = fake_quant(x, *self.proj_act) @ self.proj
            return fake_quant(x, *self.act) @ self.kernel

    class TorchSRUModel:
        def __init__(self):
            self.stages = _stages(sites)
            self.custom = [QuantizedU() for _ in self.stages]
            self.rnn = (
                _import_sru()
                .SRU(
                    config.n_features,
                    config.hidden,
                    num_layers=config.n_layers,
                    bidirectional=config.bidirectional,
                    highway_bias=config.highway_bias,
                    rescale=config.rescale,
                    custom_m=self.custom,
                )
                .eval()
            )
            self.scale_x = (
                math.sqrt(1.0 + 2.0 * math.exp(config.highway_bias))
                if config.rescale
                else 1.0
            )
            self.float_kernels = [
                torch.from_numpy(np.array(params[s.name]["kernel"], np.float32))
                for s in sites
            ]
            d, h = config.n_dirs, config.hidden
            with torch.no_grad():
                for cell, (_, s) in zip(self.rnn.rnn_lst, self.stages, strict=True):
                    layer = params[sites[s].name]
                    # ours (dirs, 2, hidden) -> sru (2, dirs, hidden), flattened
                    cell.weight_c.copy_(
                        torch.from_numpy(
                            np.asarray(layer["v"]).transpose(1, 0, 2).reshape(-1)
                        )
                    )
                    cell.bias.copy_(
                        torch.from_numpy(
                            np.asarray(layer["bias"]).transpose(1, 0, 2).reshape(-1)
                        )
                    )
                    if cell.num_matrices != np.asarray(layer["kernel"]).shape[1] // (
                        d * h
                    ):
                        raise ValueError("sru and the model disagree on the matrices")
            self.fc_bias = torch.from_numpy(np.array(params["fc"]["bias"], np.float32))
            self.fc = None
            self.fc_act = (FLOAT_BITS, 0.0)

        def _sru_order(self, kernel):
            """Our columns (dirs, k, hidden) -> sru's (dirs, hidden, k)."""
            d, h = config.n_dirs, config.hidden
            k = kernel.shape[1] // (d * h)
            kernel = kernel.reshape(-1, d, k, h)
            if k == 4:
                kernel = torch.cat(
                    [kernel[:, :, :3], kernel[:, :, 3:] * self.scale_x], dim=2
                )
            return kernel.permute(0, 1, 3, 2).reshape(-1, d * h * k).contiguous()

        def set_genome(self, bits_w, bits_a, w_clip, a_clip):
            """Fake-quantizes every site's weight for one genome (per genome work).

            Args:
              bits_w, bits_a: ints per site (site order).
              w_clip: per site, the clip at ``bits_w`` (scalar or ``(out,)``).
              a_clip: per site, the activation clip at ``bits_a``.
            """
            qk = [
                fake_quant(kernel, int(b), torch.from_numpy(np.array(c, np.float32)))
                for kernel, b, c in zip(self.float_kernels, bits_w, w_clip, strict=True)
            ]
            acts = [(int(b), float(c)) for b, c in zip(bits_a, a_clip, strict=True)]
            for custom, (proj, s) in zip(self.custom, self.stages, strict=True):
                custom.proj = None if proj is None else qk[proj]
                custom.proj_act = (FLOAT_BITS, 0.0) if proj is None else acts[proj]
                custom.kernel = self._sru_order(qk[s])
                custom.act = acts[s]
            self.fc, self.fc_act = qk[-1], acts[-1]

        def __call__(self, features, mask_pad):
            """Logits ``(T, B, n_classes)`` of time-major features ``(T, B, F)``."""
            hidden, _ = self.rnn(features, mask_pad=mask_pad)
            return fake_quant(hidden, *self.fc_act) @ self.fc + self.fc_bias

    return TorchSRUModel()


def genome_clips(calib, space, genome) -> tuple[list, list, list, list]:
    """Bits and clips of one genome, per site (host-side lookups, numpy)."""
    bits = space.bits_table[np.arange(space.n_genes), np.asarray(genome)]
    bits_w = [int(bits[g]) for g in space.w_gene]
    bits_a = [int(bits[g]) for g in space.a_gene]
    w_clip = [
        np.asarray(calib.w_clip[i])[BIT_OPTIONS.index(b)] for i, b in enumerate(bits_w)
    ]
    a_clip = [
        float(np.asarray(calib.a_clip)[i, BIT_OPTIONS.index(b)])
        for i, b in enumerate(bits_a)
    ]
    return bits_w, bits_a, w_clip, a_clip


def inputs(features, lengths):
    """Time-major torch features ``(T, B, F)`` and sru's pad mask ``(T, B)``."""
    import torch

    features = np.asarray(features, np.float32)
    lengths = np.asarray(lengths)
    feats = torch.from_numpy(np.ascontiguousarray(features.transpose(1, 0, 2)))
    pad = np.arange(features.shape[1])[:, None] >= lengths[None, :]
    return feats, torch.from_numpy(pad)
