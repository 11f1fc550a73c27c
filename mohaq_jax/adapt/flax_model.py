"""Any Flax Linen model as a model of the mohaq_jax model contract.

:func:`mohaq_jax.adapt.adapt` builds a :class:`Config` from a ``flax.linen``
Module, its params and one batch: the quantization sites are the params leaves that
weight ops multiply (:mod:`mohaq_jax.adapt.trace`), named by their module path, with
MACs from the shapes the trace saw. This module is the contract
(:mod:`mohaq_jax.models`) for that record, so the population evaluator, every genome
space and every platform take it as they take the SRU:

* weights are quantized by the evaluator (its per-bit weight tables, gathered per
  genome) at each site's ``weight_path``;
* :func:`rest_stages` runs the user's forward through the jaxpr interpreter, which
  fake-quantizes each weight op's input at the genome's traced activation bits, so
  one compiled program serves every genome and the evaluator's ``vmap`` / ``lax.map``
  runs the whole population in one pass;
* the evaluator's first-stage sharing works on any model: the traced program is
  split (:func:`mohaq_jax.adapt.trace.split_program`) into what depends only on the
  ``first_sites`` (by default the first site and the sites tied to it) and the
  rest; :func:`first_stage` returns the values the rest reads (a
  :class:`Frontier`), computed once per setting of those sites' genes when that is
  cheaper than once per genome, as the SRU's hand-written first stage.

An *example* of this contract is a whole batch (the user's batch layout); the task
``"flax"`` (:data:`TASK`) turns the model's outputs into error counts with the
model's ``error``: ``"frames"`` (speech batches ``(features, labels, lengths)``,
frame and phone error exactly as the SRU's), ``"classes"`` (``(inputs, labels)``,
label -1 unscored) or a function ``error(outputs, batch) -> (n_wrong, n_items)``.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.adapt import trace
from mohaq_jax.data import batching
from mohaq_jax.evaluation.evaluate_tasks import TASKS, Task, classification_counts
from mohaq_jax.models.sites import Site
from mohaq_jax.numerics import metrics, quantize

#: The task name of every adapted model (registered in ``evaluate_tasks.TASKS``).
TASK = "flax"

#: Built-in error functions; anything else must be a callable.
ERRORS = ("frames", "classes")


@dataclasses.dataclass(frozen=True, eq=False)
class Config:
    """A Flax module with its discovered sites: this model's contract ``Config``.

    Hashed by identity (it holds the module and functions); built by
    :func:`mohaq_jax.adapt.adapt`, never by hand.
    """

    module: Any  # the flax.linen Module
    inputs: Callable  # batch -> positional args of module.apply
    per_example: bool  # vmap module.apply over the examples of a batch
    error: Any  # "frames" | "classes" | callable(outputs, batch) -> (n_wrong, n_items)
    sites: tuple[Site, ...]  # quantization sites, forward order
    site_of_leaf: tuple[int, ...]  # per params leaf (flatten order): site or -1
    channel_shapes: tuple[tuple[int, ...], ...]  # per site: per-channel clip shape
    ties: tuple[tuple[int, ...], ...]  # sites sharing genes (one op, or a user group)
    pinned: tuple[int, ...]  # sites kept at the space's widest bits (float on export)
    ops: tuple[trace.WeightOp, ...]  # every weight op seen, trace order
    variables: Any = None  # other collections passed to apply (e.g. batch_stats)
    first_sites: tuple[int, ...] = ()  # sites computed once per gene setting
    first_auto: bool = False  # first_sites may be re-chosen per space and pop size

    def to_dict(self) -> dict:
        return {
            "module": type(self.module).__name__,
            "sites": [s.name for s in self.sites],
            "ties": [list(t) for t in self.ties],
            "pinned": list(self.pinned),
            "error": self.error if isinstance(self.error, str) else "custom",
        }


def forward(config: Config) -> Callable:
    """``forward(params, batch) -> outputs``: the user's float model on a batch."""

    def fwd(params, batch):
        variables = {"params": params, **(config.variables or {})}

        def call(*args):
            return config.module.apply(variables, *args)

        args = config.inputs(batch)
        return jax.vmap(call)(*args) if config.per_example else call(*args)

    return fwd


class _Quantize(trace.Hook):
    """Fake-quantizes each weight op's input at its site's bits and clip."""

    def __init__(self, site_of_leaf, bits_a, clips):
        super().__init__()
        self.site_of_leaf, self.bits_a, self.clips = site_of_leaf, bits_a, clips

    def weight_op(self, eqn, invals, weight_index, leaves, multiplier):
        site = _site_of_op(self.site_of_leaf, leaves)
        if site >= 0:
            a = 1 - weight_index
            invals = list(invals)
            invals[a] = quantize.fake_quant(
                invals[a], self.bits_a[site], self.clips[site]
            )
        return super().weight_op(eqn, invals, weight_index, leaves, multiplier)


class _Capture(trace.Hook):
    """Records each weight op's input, keyed by its site."""

    def __init__(self, site_of_leaf):
        super().__init__()
        self.site_of_leaf = site_of_leaf

    def weight_op(self, eqn, invals, weight_index, leaves, multiplier):
        site = _site_of_op(self.site_of_leaf, leaves)
        if site >= 0:
            self.frames[-1].append((site, invals[1 - weight_index]))
        return super().weight_op(eqn, invals, weight_index, leaves, multiplier)


def _site_of_op(site_of_leaf, leaves) -> int:
    found = [site_of_leaf[leaf] for leaf in leaves if site_of_leaf[leaf] >= 0]
    return min(found) if found else -1


# ------------------------------------------------------------------ model contract


def sites(config: Config) -> tuple[Site, ...]:
    """The discovered sites (forward order of their first use)."""
    return config.sites


def init_params(key: jax.Array, config: Config, batch) -> dict:
    """Fresh params of the module for ``batch``'s shapes."""
    args = config.inputs(batch)
    if config.per_example:
        args = jax.tree_util.tree_map(lambda x: x[0], args)
    return config.module.init(key, *args)["params"]


@dataclasses.dataclass(frozen=True)
class _Program:
    """The traced forward for one set of shapes, split at the first stage."""

    jaxpr: Any  # ClosedJaxpr: inputs = params leaves, then batch leaves
    out_tree: Any
    early: tuple[bool, ...]  # per equation: part of the first stage
    frontier: tuple  # first-stage vars the rest reads


_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _program(config: Config, params, batch) -> _Program:
    """The traced program of ``config`` for these shapes (traced once, cached)."""
    leaves, treedef = jax.tree_util.tree_flatten((params, batch))
    key = (treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))
    cache = _PROGRAMS.setdefault(config, {})
    if key not in cache:
        closed, _ = trace.trace(forward(config), params, batch)
        out_tree = jax.tree_util.tree_structure(
            jax.eval_shape(forward(config), params, batch)
        )
        first = set(config.first_sites)
        late = [
            leaf
            for leaf, site in enumerate(config.site_of_leaf)
            if site >= 0 and site not in first
        ]
        early, frontier = trace.split_program(closed.jaxpr, late)
        cache[key] = _Program(closed, out_tree, early, frontier)
    return cache[key]


def _run(config, params, batch, hook, **kwargs):
    program = _program(config, params, batch)
    args = jax.tree_util.tree_leaves((params, batch))
    n_params = len(jax.tree_util.tree_leaves(params))
    leaves = [frozenset({i}) for i in range(n_params)]
    leaves += [trace.NO_LEAVES] * (len(args) - n_params)
    outs, _ = trace.run_jaxpr(
        program.jaxpr.jaxpr, program.jaxpr.consts, args, leaves, hook, **kwargs
    )
    return program, outs


def apply(params, config: Config, batch, act_bits=None, act_clip=None, **_):
    """Outputs on a batch, float or with each site's input fake-quantized.

    ``act_bits``/``act_clip``: ``(n_sites,)``; the weights are used as given.
    """
    if act_bits is None:
        return forward(config)(params, batch)
    hook = _Quantize(config.site_of_leaf, act_bits, act_clip)
    program, outs = _run(config, params, batch, hook)
    return jax.tree_util.tree_unflatten(program.out_tree, outs)


def capture(params, config: Config, batch) -> list[jax.Array]:
    """Float input of every site on a batch, flattened, one array per site.

    A site whose weight several ops use gets all their inputs concatenated.
    """
    hook = _Capture(config.site_of_leaf)
    trace.interpret(forward(config), params, batch, hook)
    per_site: list[list] = [[] for _ in config.sites]
    for site, value in hook.frames[0]:
        per_site[site].append(jnp.ravel(value))
    for tied in config.ties:  # one op's leaves share the op's input
        shared = [v for s in tied for v in per_site[s]]
        for s in tied:
            per_site[s] = shared
    return [jnp.concatenate(values) for values in per_site]


def first_stage_sites(config: Config) -> tuple[int, ...]:
    """The sites whose bits decide :func:`first_stage` (``config.first_sites``)."""
    return config.first_sites


@struct.dataclass
class Frontier:
    """The first stage's values the rest of the program reads (indexable as a stack)."""

    values: tuple

    def __getitem__(self, index):
        return Frontier(tuple(v[index] for v in self.values))


def first_stage(config: Config, qparams, bits_a, clips, batch) -> Frontier:
    """The part of the quantized forward that only the first sites' bits decide."""
    hook = _Quantize(config.site_of_leaf, bits_a, clips)
    program = _program(config, qparams, batch)
    _, values = _run(
        config, qparams, batch, hook, run=program.early, returns=program.frontier
    )
    return Frontier(tuple(values))


@dataclasses.dataclass(frozen=True)
class Outputs:
    """The model's outputs and the model they came from, for the task's sums."""

    values: Any
    config: Config


def rest_stages(config: Config, qparams, bits_a, clips, hidden, batch) -> Outputs:
    """The rest of the quantized forward of one genome, from :func:`first_stage`."""
    hook = _Quantize(config.site_of_leaf, bits_a, clips)
    program = _program(config, qparams, batch)
    late = tuple(not e for e in program.early)
    preset = dict(zip(program.frontier, hidden.values, strict=True))
    _, outs = _run(config, qparams, batch, hook, run=late, preset=preset)
    values = jax.tree_util.tree_unflatten(program.out_tree, outs)
    return Outputs(values, config)


# -------------------------------------------------------------------- the task


@struct.dataclass
class AdaptedMetrics:
    """Per-genome results of an adapted model; every field ``(pop,)``, minimized.

    ``frame_error`` and ``class_error`` are the same number (wrong / scored items:
    frames, samples, or what a custom error counts), so either name selects it.
    """

    loss: jax.Array  # mean cross-entropy per item (0 for a custom error)
    frame_error: jax.Array  # n_wrong / n_items, float32
    class_error: jax.Array  # the same
    phone_error: jax.Array  # phone edits / reference phones ("frames" only)
    phone_edits: jax.Array  # int32
    n_phones: jax.Array  # int32
    n_wrong: jax.Array  # int32
    n_items: jax.Array  # int32


def _sums(out: Outputs, batch, fold, decoder, per_mode):
    error = out.config.error
    zero = jnp.int32(0)
    if error == "frames":
        _, labels, lengths = batch
        return metrics.error_counts(
            out.values,
            labels,
            lengths,
            jnp.asarray(fold, jnp.int32),
            decoder=decoder,
            per_mode=metrics.resolve_per_mode(per_mode, decoder),
        )
    if error == "classes":
        loss_sum, n_items, n_wrong = classification_counts(out.values, batch[1])
    else:
        counts = error(out.values, batch)
        n_wrong, n_items = counts[0], counts[1]
        loss_sum = counts[2] if len(counts) > 2 else jnp.float32(0.0)
    return (
        jnp.asarray(loss_sum, jnp.float32),
        jnp.asarray(n_items, jnp.int32),
        jnp.asarray(n_wrong, jnp.int32),
        zero,
        zero,
    )


def _from_sums(sums) -> AdaptedMetrics:
    loss_sum, n_items, n_wrong, edits, n_phones = sums
    n_f = jnp.maximum(n_items, 1).astype(jnp.float32)
    error = n_wrong.astype(jnp.float32) / n_f
    return AdaptedMetrics(
        loss=loss_sum / n_f,
        frame_error=error,
        class_error=error,
        phone_error=edits.astype(jnp.float32)
        / jnp.maximum(n_phones, 1).astype(jnp.float32),
        phone_edits=edits,
        n_phones=n_phones,
        n_wrong=n_wrong,
        n_items=n_items,
    )


def _pad(batch, multiple: int):
    if multiple != 1:
        raise ValueError(
            "an adapted model's batch is not padded for sharding over a batch "
            "mesh axis; give batches that split evenly"
        )
    return batch


def _check(batch) -> None:
    if not isinstance(batch, tuple):
        raise ValueError(f"a batch is a tuple of arrays, got {type(batch).__name__}")


def _as_batches(data):
    return batching.as_batches(data) if not isinstance(data, tuple) else [data]


FLAX_TASK = Task(
    TASK,
    _sums,
    _from_sums,
    (np.float32, np.int32, np.int32, np.int32, np.int32),
    _pad,
    _check,
    _as_batches,
)
TASKS.setdefault(TASK, FLAX_TASK)


def per_channel_shape(leaf_shape: tuple[int, ...], n_contract: int) -> tuple[int, ...]:
    """Trailing axes of a weight that hold its output channels (one clip each).

    A weight whose ops contract ``n_contract`` of its elements per output has
    ``size / n_contract`` channels; they are the shortest trailing run of axes of
    that size (``(in, out)`` -> ``(out,)``; ``DenseGeneral`` ``(d, heads, head_dim)``
    -> ``(heads, head_dim)``; conv ``HWIO`` -> ``(O,)``), else the last axis.
    """
    size = math.prod(leaf_shape)
    n_channels = size // max(n_contract, 1)
    for k in range(len(leaf_shape) - 1, -1, -1):
        if math.prod(leaf_shape[k:]) == n_channels:
            return tuple(leaf_shape[k:])
    return tuple(leaf_shape[-1:])


__all__ = [
    "FLAX_TASK",
    "TASK",
    "AdaptedMetrics",
    "Config",
    "Frontier",
    "Outputs",
    "apply",
    "capture",
    "first_stage",
    "first_stage_sites",
    "forward",
    "init_params",
    "per_channel_shape",
    "rest_stages",
    "sites",
]
