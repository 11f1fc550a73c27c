"""Deploy a searched solution with qwix: rules, qwix's PTQ, and its error beside ours.

A genome of an adapted model (:mod:`mohaq_jax.adapt`) gives bits per site; each site
is a flax module path, which is what a ``qwix.QuantizationRule`` matches. The export
writes one rule per site (``module_path`` = the escaped path) with

* ``weight_qtype``: ``int2``/``int3``/``int5``/``int6``/``int7`` (qwix's synthetic
  integer types) or ``jnp.int4``/``jnp.int8``; 16 bits and float: no rule (float);
* ``weight_calibration_method = "absmax,<s>"`` with ``s = (qmax + 0.5) / qmax``:
  qwix's symmetric bound is ``qmax + 0.5``
  (``qwix/_src/core/numerics.py: get_symmetric_bound``), so this makes its step
  ``absmax / qmax``, MOHAQ's (:mod:`mohaq_jax.numerics.quantize`), and every weight lands
  on the same level ``-qmax..qmax``; per channel over the weight's non-contracted
  axes, as :func:`mohaq_jax.adapt.flax_model.per_channel_shape`;
* ``act_qtype`` and ``act_calibration_method = "fixed,-r,r"``: the search's static
  per-tensor clip ``c`` at those bits, ``r = c s``, so the step is ``c / qmax``
  too.

So with ``"max"`` weight calibration (:func:`mohaq_jax.adapt.calibrate`'s default)
qwix computes the search's weights exactly, and its activations too except one
level: qwix's integer grid runs down to ``-(qmax + 1)`` and an activation at or
below ``-r`` lands there (``round(-(qmax + 0.5))`` is even), where MOHAQ's
symmetric quantizer gives ``-qmax`` (noticeable at 2-3 bits on inputs with a long
negative tail, nothing at 8). What qwix 0.1.8
cannot express is reported per site, never rounded silently: a weight that qwix does
not see as a param at its op (``x @ W`` via ``jnp.matmul``, which it does not
intercept; kernels concatenated before the op, as in ``OptimizedLSTMCell``) stays
float; a conv needs equal weight and activation qtypes; quantized activations
with a float (16-bit) weight are not quantized by qwix (a rule without
``weight_qtype`` skips the op); MSE-calibrated weight clips differ from ``absmax``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.adapt import flax_model
from mohaq_jax.adapt.api import module_path
from mohaq_jax.adapt.flax_model import Config
from mohaq_jax.models import qmodel
from mohaq_jax.models import sites as sites_lib
from mohaq_jax.numerics import bootstrap, metrics, quantize

#: Bits at or above which a site is left in float (qwix has no 16-bit integer qtype).
FLOAT_FROM = 16


def qtype(bits: int):
    """qwix's qtype for ``bits`` (None: float); ValueError for an unknown width."""
    bits = int(bits)
    if bits >= FLOAT_FROM:
        return None
    if bits == 4:
        return jnp.int4
    if bits == 8:
        return jnp.int8
    if 2 <= bits <= 7:
        return f"int{bits}"
    raise ValueError(f"qwix has no qtype for {bits}-bit integers")


def _scale(bits: int) -> float:
    qmax = 2 ** (int(bits) - 1) - 1
    return (qmax + 0.5) / qmax


@dataclasses.dataclass(frozen=True)
class SiteExport:
    """How one site is exported, and what qwix does differently (``notes``)."""

    site: str
    module_path: str
    w_bits: int
    a_bits: int
    weight_qtype: Any
    act_qtype: Any
    act_clip: float | None
    notes: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return not self.notes


def export(model: Config, space, genome, calib: qmodel.Calibration, params=None):
    """qwix rules of one genome, and per site how it is exported.

    Args:
      model, space, calib: the adapted model, its genome space and calibration.
      genome: int ``(n_genes,)``.
      params: float params; when given, MSE-calibrated weight clips (which qwix
        cannot express) are detected and noted.

    Returns:
      ``(rules, sites)``: a tuple of ``qwix.QuantizationRule`` (one per quantized
      site) and a tuple of :class:`SiteExport`.
    """
    import qwix

    bits_w, bits_a = (np.asarray(b) for b in space.decode(jnp.asarray(genome)))
    clips = np.asarray(qmodel.act_clips(calib, jnp.asarray(bits_a)))
    rules, out, by_path = [], [], {}
    for i, site in enumerate(model.sites):
        w, a = int(bits_w[i]), int(bits_a[i])
        wq, aq = qtype(w), qtype(a)
        notes = []
        if aq is not None and wq is None:
            notes.append(
                f"{a}-bit activations with float weights: qwix skips the op "
                "(activations stay float)"
            )
            aq = None
        if site.kind == "conv" and wq is not None and aq != wq:
            notes.append(
                f"conv with {w}-bit weights and {a}-bit activations: qwix needs "
                "equal qtypes (site left float)"
            )
            wq = aq = None
        if wq is not None and params is not None:
            kernel = jnp.asarray(sites_lib.get_weight(params, site), jnp.float32)
            channels = model.channel_shapes[i]
            absmax = quantize.max_abs(kernel.reshape(-1, int(np.prod(channels))), -1)
            used = calib.w_clip[i][quantize.bits_index(jnp.int32(w))].reshape(-1)
            if not np.allclose(np.asarray(used), np.asarray(absmax), rtol=1e-6):
                notes.append(
                    "search weight clips are not absmax (e.g. MSE): qwix uses absmax"
                )
        clip = None
        first = by_path.get(module_path(site))
        if first is not None:  # qwix rules match modules, not single ops
            if (first.w_bits, first.a_bits) != (w, a):
                notes.append(
                    f"shares module {module_path(site)!r} with site {first.site}: "
                    f"qwix applies that site's rule ({first.w_bits}/{first.a_bits} bits)"
                )
            wq = None  # no second rule for the same module
        if wq is not None:
            rule = dict(
                module_path=re.escape(module_path(site)),
                weight_qtype=wq,
                weight_calibration_method=f"absmax,{_scale(w)!r}",
            )
            if aq is not None:
                clip = float(clips[i])
                r = clip * _scale(a)
                rule.update(act_qtype=aq, act_calibration_method=f"fixed,{-r!r},{r!r}")
            rules.append(qwix.QuantizationRule(**rule))
        exported = SiteExport(
            site.name, module_path(site), w, a, wq, aq, clip, tuple(notes)
        )
        by_path.setdefault(module_path(site), exported)
        out.append(exported)
    return tuple(rules), tuple(out)


def _provider(rules):
    """qwix's PTQ provider; on CPU with its dequantize-first matmul and conv.

    qwix 0.1.8 multiplies two quantized operands in their integer types when it can
    (``_fast_dot_general``); XLA's CPU backend of this jax rejects the int4 (and
    int2/int3, stored as int4) dot that makes ("does not support custom element
    sizes on non-sub-byte types"). Its own slow path dequantizes the same QArrays
    first: the same quantized values, multiplied in float32.
    """
    import functools

    import qwix
    from qwix._src.core import conv_general, dot_general, einsum

    if jax.default_backend() != "cpu":
        return qwix.PtqProvider(list(rules))
    slow_dot = dot_general._slow_dot_general  # noqa: SLF001 (see docstring)
    slow_conv = conv_general._slow_conv_general_dilated  # noqa: SLF001
    return qwix.PtqProvider(
        list(rules),
        _dot_general_fn=slow_dot,
        _einsum_fn=functools.partial(einsum.einsum, _qwix_dot_general=slow_dot),
        _conv_general_dilated_fn=slow_conv,
    )


def ptq(model: Config, params, rules, batch):
    """qwix's PTQ of the float model: ``(forward(params, batch), qparams, seen)``.

    ``seen``: per site, whether qwix quantized its weight (it became a qwix
    ``WithAux`` param when the PTQ model was initialized on ``batch``'s first
    example or batch).
    """
    import qwix
    from qwix._src.providers.ptq import WithAux

    qmodule = qwix.quantize_model(model.module, _provider(rules))
    qmodel_ = dataclasses.replace(model, module=qmodule)
    args = model.inputs(batch)
    if model.per_example:
        args = jax.tree_util.tree_map(lambda x: x[0], args)
    variables = jax.eval_shape(lambda: qmodule.init(jax.random.key(0), *args))
    abstract = variables["params"]
    qparams = qwix.quantize_params(params, abstract)
    seen = []
    for site in model.sites:
        node = abstract
        for key in site.weight_path:
            node = node.get(key) if isinstance(node, dict) else None
        seen.append(isinstance(node, WithAux))
    return flax_model.forward(qmodel_), qparams, tuple(seen)


def item_counts(model: Config, outputs, batch):
    """Errors and totals per example of a batch, ``(B,)`` each (for the bootstrap)."""
    if model.error == "frames":
        _, labels, lengths = batch
        pred = jnp.argmax(outputs, -1).astype(jnp.int32)
        return metrics.frame_errors(pred, labels, lengths)
    if model.error == "classes":
        labels = batch[1]
        wrong = (jnp.argmax(outputs, -1) != labels) & (labels >= 0)
        return wrong.astype(jnp.int32), (labels >= 0).astype(jnp.int32)

    def one(out, example):
        counts = model.error(
            jax.tree_util.tree_map(lambda x: x[None], out),
            jax.tree_util.tree_map(lambda x: x[None], example),
        )
        return counts[0], counts[1]

    return jax.vmap(one)(outputs, batch)


def _counts(fn, batches):
    errors, totals = [], []
    for batch in flax_model.FLAX_TASK.as_batches(batches):
        e, t = fn(batch)
        errors.append(np.asarray(e, np.float64))
        totals.append(np.asarray(t, np.float64))
    return np.concatenate(errors), np.concatenate(totals)


def compare(
    model: Config,
    params,
    calib: qmodel.Calibration,
    space,
    genomes,
    splits: dict,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict]:
    """The search's fake-quant error and qwix's PTQ error of each genome, per split.

    Args:
      model, params, calib, space: the adapted model and its search's setup.
      genomes: int ``(g, n_genes)`` (e.g. the default front).
      splits: name -> batches (e.g. ``{"dev": dev, "test": test}``).
      n_resamples, confidence, seed: of the percentile bootstrap over examples
        (:func:`mohaq_jax.numerics.bootstrap.bootstrap_intervals`, the same draws for both).

    Returns:
      One dict per (genome, split): bits, the exported sites' notes, and for
      ``search`` and ``qwix`` the error with its interval, the paired interval of
      qwix minus search and whether qwix's error lies in the search's interval.
    """
    rows = []
    for genome in np.asarray(genomes):
        rules, exported = export(model, space, genome, calib, params)
        bits_w, bits_a = space.decode(jnp.asarray(genome))
        clips = qmodel.act_clips(calib, bits_a)
        qparams = qmodel.quantize_params(params, model, bits_w, calib)
        first = flax_model.FLAX_TASK.as_batches(next(iter(splits.values())))[0]
        q_forward, q_params, seen = ptq(model, params, rules, first)

        @jax.jit
        def ours(batch, qparams=qparams, bits_a=bits_a, clips=clips):
            out = flax_model.apply(qparams, model, batch, bits_a, clips)
            return item_counts(model, out, batch)

        @jax.jit
        def theirs(batch, q_forward=q_forward, q_params=q_params):
            return item_counts(model, q_forward(q_params, batch), batch)

        notes = {
            s.site: list(s.notes)
            + (
                []
                if ok or s.weight_qtype is None
                else [
                    "qwix did not see this weight at its op (x @ W, or kernels "
                    "concatenated before the matmul): float in qwix"
                ]
            )
            for s, ok in zip(exported, seen, strict=True)
        }
        notes = {k: v for k, v in notes.items() if v}
        for name, batches in splits.items():
            e_s, t_s = _counts(ours, batches)
            e_q, t_q = _counts(theirs, batches)
            ci = bootstrap.bootstrap_intervals(
                np.stack([e_s, e_q]),
                np.stack([t_s, t_q]),
                n_resamples,
                confidence,
                seed,
                reference=(e_s, t_s),
            )
            rows.append(
                {
                    "genome": [int(g) for g in genome],
                    "bits": space.describe(genome),
                    "split": name,
                    "search": [float(ci[k][0]) for k in ("rate", "low", "high")],
                    "qwix": [float(ci[k][1]) for k in ("rate", "low", "high")],
                    "qwix_minus_search": [
                        float(ci["diff_low"][1]),
                        float(ci["diff_high"][1]),
                    ],
                    "inside": bool(ci["low"][0] <= ci["rate"][1] <= ci["high"][0]),
                    "notes": notes,
                }
            )
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of :func:`compare`'s rows (one line each, notes below)."""
    lines = [
        f"{'split':6} {'search error [95% CI]':28} {'qwix PTQ error [95% CI]':28} "
        "inside  bits"
    ]
    for row in rows:
        s, q = row["search"], row["qwix"]
        bits = " ".join(f"{k}:{v['w']}/{v['a']}" for k, v in row["bits"].items())
        lines.append(
            f"{row['split']:6} {s[0]:.4f} [{s[1]:.4f}, {s[2]:.4f}]{'':6} "
            f"{q[0]:.4f} [{q[1]:.4f}, {q[2]:.4f}]{'':6} {str(row['inside']):7} {bits}"
        )
        for site, notes in row["notes"].items():
            lines.extend(f"    {site}: {note}" for note in notes)
    return "\n".join(lines)


__all__ = [
    "FLOAT_FROM",
    "SiteExport",
    "compare",
    "export",
    "format_rows",
    "item_counts",
    "ptq",
    "qtype",
]
