"""Search any Flax Linen model: adapt it, calibrate it, search it (no CLI, no contract).

The MOHAQ search (Rashed et al. 2021, Sec. III-IV) needs per-site counts and a
population evaluator; :func:`adapt` derives both from a ``flax.linen`` Module, its
params and one batch (:mod:`mohaq_jax.adapt.flax_model`), :func:`calibrate` measures
the clipping tables on the user's data, :func:`genome_space` builds any registered
space over the discovered sites (tied where one op multiplies several leaves, or
where the user groups sites), and :func:`search` runs NSGA-II on any registered
platform. Site rules are regexes matched in full against a site's name (its module
path, e.g. ``"encoder/attn/query"``), as qwix's ``QuantizationRule.module_path``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import hardware
from mohaq_jax.adapt import flax_model, trace
from mohaq_jax.adapt.flax_model import Config
from mohaq_jax.evaluation import genome as genome_lib
from mohaq_jax.evaluation.evaluate import PopulationEvaluator
from mohaq_jax.models import sites as sites_lib
from mohaq_jax.models.qmodel import Calibration
from mohaq_jax.models.sites import Site
from mohaq_jax.numerics import quantize
from mohaq_jax.search import mohaq
from mohaq_jax.search.problem import objective_bounds


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def site_name(path: Sequence[str]) -> str:
    """A site's name: its module path, plus the param name unless it is ``kernel``."""
    path = tuple(path)
    return "/".join(path[:-1] if path[-1] == "kernel" and len(path) > 1 else path)


def module_path(site: Site) -> str:
    """The flax module path of a site's weight (what qwix rules match)."""
    return "/".join(site.weight_path[:-1])


def _matches(patterns: Sequence[str], name: str) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def _n_items(error, batch) -> int:
    first = jax.tree_util.tree_leaves(batch)[0]
    return (
        int(first.shape[0] * first.shape[1])
        if error == "frames"
        else int(first.shape[0])
    )


class _Ties:
    """Union-find over site indices."""

    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            i = self.parent[i]
        return i

    def join(self, members):
        members = list(members)
        for m in members[1:]:
            a, b = self.find(members[0]), self.find(m)
            self.parent[max(a, b)] = min(a, b)

    def groups(self):
        out = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return tuple(tuple(g) for g in out.values() if len(g) > 1)


def adapt(
    module,
    params,
    batch,
    *,
    inputs: Callable | None = None,
    per_example: bool = False,
    error: Any = "classes",
    exclude: Sequence[str] = (),
    keep_float: Sequence[str] = (),
    groups: Sequence[str] = (),
    variables: dict | None = None,
    items: Callable | None = None,
    first_sites: str | None = None,
) -> Config:
    """Discovers the quantization sites of a Flax Linen module.

    Args:
      module: a ``flax.linen`` Module.
      params: its float params (a nested dict).
      batch: one batch (a tuple of arrays) of the data it will be searched on.
      inputs: ``batch -> tuple`` of positional args of ``module.apply``;
        default ``(batch[0],)``.
      per_example: the module takes ONE example; ``jax.vmap`` it over the batch.
      error: ``"classes"`` (batch ``(inputs, labels)``, outputs ``(B, n_classes)``),
        ``"frames"`` (batch ``(features, labels (B, T), lengths)``, outputs ``(B, T,
        n_classes)``, frame and phone error) or ``error(outputs, batch) ->
        (n_wrong, n_items[, loss_sum])`` (traceable).
      exclude: regexes of site names left in float and out of the genome and of the
        cost models.
      keep_float: regexes of sites kept at the genome space's widest bits (16 in
        MOHAQ's spaces), which the qwix export leaves in float.
      groups: regexes; the sites one regex matches share their genes.
      variables: other flax collections for ``apply`` (e.g. ``{"batch_stats": ...}``).
      items: ``batch -> int``: examples the MACs are counted per; default the batch
        size, or batch x time for ``"frames"`` (MACs per frame).
      first_sites: regex of the sites whose part of the forward the evaluator
        computes once per setting of their genes (its first stage); default: the
        first site and those tied to it, and :func:`evaluator` / :func:`search`
        choose the prefix of sites that saves the most (:func:`for_population`).

    Returns:
      A :class:`~mohaq_jax.adapt.flax_model.Config` (the contract's config).
    """
    if isinstance(error, str) and error not in flax_model.ERRORS:
        raise ValueError(
            f"error must be one of {flax_model.ERRORS} or a function, got {error!r}"
        )
    draft = Config(
        module,
        inputs or (lambda b: (b[0],)),
        per_example,
        error,
        (),
        (),
        (),
        (),
        (),
        (),
        variables,
    )
    ops = trace.find_weight_ops(flax_model.forward(draft), params, batch)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [tuple(_key_name(k) for k in path) for path, _ in flat]
    shapes = [tuple(np.shape(leaf)) for _, leaf in flat]
    n_items = items(batch) if items else _n_items(error, batch)

    used: list[int] = []  # leaves that weight ops multiply, order of first use
    for op in ops:
        used.extend(leaf for leaf in op.leaves if leaf not in used)
    used = [leaf for leaf in used if not _matches(exclude, site_name(paths[leaf]))]
    if not used:
        raise ValueError("no weight op multiplies a parameter of this model")
    site_of_leaf = [-1] * len(paths)
    for s, leaf in enumerate(used):
        site_of_leaf[leaf] = s

    macs = [0.0] * len(used)
    n_contract = [0] * len(used)
    for op in ops:
        w_size = math.prod(op.weight_shape)
        for leaf in op.leaves:
            s = site_of_leaf[leaf]
            if s >= 0:
                macs[s] += op.macs * math.prod(shapes[leaf]) / w_size
                n_contract[s] = n_contract[s] or op.n_contract

    # Other params of a site's module: biases (16-bit) and vectors, to the first site.
    n_bias, n_vector = [0] * len(used), [0] * len(used)
    owner: dict[tuple, int] = {}
    for s, leaf in enumerate(used):
        owner.setdefault(paths[leaf][:-1], s)
    weight_leaves = {leaf for op in ops for leaf in op.leaves}
    for leaf, path in enumerate(paths):
        s = owner.get(path[:-1])
        if s is None or leaf in weight_leaves:
            continue
        size = math.prod(shapes[leaf])
        if "bias" in path[-1]:
            n_bias[s] += size
        else:
            n_vector[s] += size

    out, channel_shapes = [], []
    for s, leaf in enumerate(used):
        size = math.prod(shapes[leaf])
        n_in = n_contract[s] if size % max(n_contract[s], 1) == 0 else shapes[leaf][0]
        kind = (
            "conv"
            if any(leaf in op.leaves and op.primitive != "dot_general" for op in ops)
            else "matmul"
        )
        out.append(
            Site(
                site_name(paths[leaf]),
                kind,
                int(n_in),
                int(size // n_in),
                n_bias=n_bias[s],
                n_vector=n_vector[s],
                path=paths[leaf],
                shape=shapes[leaf],
                macs=max(1, round(macs[s] / n_items)),
            )
        )
        channel_shapes.append(flax_model.per_channel_shape(shapes[leaf], n_in))

    ties = _Ties(len(used))
    for op in ops:  # one op's leaves form one matrix: one precision
        ties.join(site_of_leaf[leaf] for leaf in op.leaves if site_of_leaf[leaf] >= 0)
    for pattern in groups:
        ties.join(i for i, site in enumerate(out) if re.fullmatch(pattern, site.name))
    pinned = tuple(i for i, site in enumerate(out) if _matches(keep_float, site.name))
    tie_groups = ties.groups()
    if first_sites is None:
        first = next((g for g in tie_groups if 0 in g), (0,))
    else:
        first = tuple(
            i for i, site in enumerate(out) if re.fullmatch(first_sites, site.name)
        )
    return dataclasses.replace(
        draft,
        sites=tuple(out),
        site_of_leaf=tuple(site_of_leaf),
        channel_shapes=tuple(channel_shapes),
        ties=tie_groups,
        pinned=pinned,
        ops=tuple(ops),
        first_sites=tuple(first),
        first_auto=first_sites is None,
    )


def tie_space(space: genome_lib.GenomeSpace, ties, pinned=()) -> genome_lib.GenomeSpace:
    """``space`` with each tie group on its first site's genes, pinned genes fixed.

    A pinned site's genes keep only their widest value; unused genes are dropped.
    """
    w, a = list(space.w_gene), list(space.a_gene)
    size = {}
    for group in ties:
        for s in group[1:]:
            w[s], a[s] = w[group[0]], a[group[0]]
        for g in {w[group[0]], a[group[0]]}:
            size[g] = len(group)
    pinned_genes = {w[s] for s in pinned} | {a[s] for s in pinned}
    kept = sorted(set(w) | set(a))
    index = {g: i for i, g in enumerate(kept)}
    names, values = [], []
    for g in kept:
        extra = size.get(g, 1) - 1
        names.append(space.gene_names[g] + (f"+{extra}" if extra else ""))
        vals = space.gene_values[g]
        values.append((vals[-1],) if g in pinned_genes else vals)
    return genome_lib.GenomeSpace(
        name=space.name,
        layers=space.layers,
        gene_names=tuple(names),
        gene_values=tuple(values),
        w_gene=tuple(index[g] for g in w),
        a_gene=tuple(index[g] for g in a),
    )


def genome_space(model: Config, name: str) -> genome_lib.GenomeSpace:
    """The registered genome space ``name`` over the model's sites, ties and pins."""
    base = genome_lib.get_space(name, model.sites)
    return tie_space(base, model.ties, model.pinned)


def calibrate(
    model: Config,
    params,
    batches,
    weight_method: str = "max",
    act_method: str = "mse",
    per_channel: bool = True,
) -> Calibration:
    """Clipping tables of every site, for every bit-width (as :mod:`mohaq_jax.models.qmodel`).

    Weights: one clip per output channel (:func:`flax_model.per_channel_shape`) or
    per tensor; activations: per tensor, from every input the site's ops saw on
    ``batches`` (all rows: padding frames included). ``"max"`` weights (the
    default) are what qwix's ``absmax`` PTQ computes, so an exported solution
    quantizes its weights as the search did.
    """
    tables = []
    for site, channels in zip(model.sites, model.channel_shapes, strict=True):
        kernel = jnp.asarray(sites_lib.get_weight(params, site), jnp.float32)
        if per_channel:
            flat = kernel.reshape(-1, math.prod(channels))
            table = quantize.clip_table(flat, weight_method, -1)
            tables.append(table.reshape((table.shape[0],) + tuple(channels)))
        else:
            tables.append(quantize.clip_table(kernel, weight_method, None))
    capture = jax.jit(lambda p, b: flax_model.capture(p, model, b))
    per_site = [[] for _ in model.sites]
    for batch in flax_model.FLAX_TASK.as_batches(batches):
        for s, x in enumerate(capture(params, batch)):
            per_site[s].append(x)
    a_clip = jnp.stack(
        [quantize.clip_table(jnp.concatenate(x), act_method, None) for x in per_site]
    )
    return Calibration(w_clip=tuple(tables), a_clip=a_clip)


def for_population(model: Config, space, genome_batch: int) -> Config:
    """``model`` with the first stage that saves the most for this space and size.

    The evaluator computes the first stage once per setting of its genes instead of
    once per genome when there are fewer settings than genomes; a longer prefix of
    sites saves more MACs per genome but has more settings. Among the prefixes of
    whole tie groups (forward order) this picks the one maximizing
    ``(genome_batch - settings) x MACs of the prefix`` (none if no prefix has fewer
    settings than genomes). A model adapted with an explicit ``first_sites`` is
    returned as is.
    """
    if not model.first_auto:
        return model
    group_of = {s: min(g) for g in model.ties for s in g}
    best, best_saving, prefix, genes, macs = (), 0.0, [], set(), 0.0
    for s in range(len(model.sites)):
        if s in prefix:
            continue
        members = [t for t in range(len(model.sites)) if group_of.get(t, t) == s]
        members = members or [s]
        prefix.extend(members)
        for t in members:
            genes |= {space.w_gene[t], space.a_gene[t]}
            macs += model.sites[t].macs_per_frame
        settings = math.prod(int(space.n_levels[g]) for g in genes)
        if settings >= genome_batch:
            break
        saving = (genome_batch - settings) * macs
        if saving > best_saving:
            best, best_saving = tuple(prefix), saving
    return dataclasses.replace(model, first_sites=best)


def evaluator(
    model: Config, space, params, calib: Calibration, fold=None, **kwargs
) -> PopulationEvaluator:
    """The population evaluator of the adapted model (``kwargs``: its fields).

    With a fixed ``genome_batch`` the first stage is chosen for it
    (:func:`for_population`).
    """
    if kwargs.get("genome_batch"):
        model = for_population(model, space, kwargs["genome_batch"])
    return PopulationEvaluator(model, space, fold, params, calib, **kwargs)


def default_error_metric(model: Config) -> str:
    """``frame_error`` for speech frames, ``class_error`` otherwise."""
    return "frame_error" if model.error == "frames" else "class_error"


@dataclasses.dataclass(frozen=True)
class Searched:
    """A finished search of an adapted model."""

    result: mohaq.SearchResult  # genomes, metrics, front, feasible ...
    problem: mohaq.QuantizationProblem  # re-scores genomes on other data
    space: genome_lib.GenomeSpace
    platform: Any  # the hardware.Platform

    def front(self) -> list[dict]:
        """The Pareto front: genome, bits per site and metrics, one dict each."""
        rows = []
        for i in np.flatnonzero(self.result.front):
            genome = self.result.genomes[i]
            rows.append(
                {
                    "genome": genome,
                    "bits": self.space.describe(genome),
                    **{k: float(v[i]) for k, v in self.result.metrics.items()},
                }
            )
        return rows


def search(
    model: Config,
    params,
    dev,
    calib: Calibration,
    *,
    platform: str = "bitfusion",
    space: str | None = None,
    objectives: Sequence[str] | None = None,
    max_error: float = 1.0,
    error_metric: str | None = None,
    pop_size: int = 40,
    n_offspring: int = 10,
    n_generations: int = 15,
    seed: int = 0,
    fold=None,
    chunk_size: int | None = 2,
    out_dir=None,
    progress: bool = False,
) -> Searched:
    """MOHAQ's NSGA-II search of an adapted model on a registered platform.

    Args:
      model, params, calib: from :func:`adapt` and :func:`calibrate`.
      dev: the batches errors are measured on (one batch or a list).
      platform: a ``mohaq_jax.hardware`` registry name; ``space``: one of its
        genome spaces (default its first).
      objectives: ``"error"`` and the platform's metrics; default error and the
        platform's first objective metric.
      max_error: the error constraint (fraction); default none (1.0).
      error_metric: evaluator metric of the error; default
        :func:`default_error_metric`.
      pop_size, n_offspring, n_generations, seed: NSGA-II settings.
      fold: class -> scoring phone, for ``phone_error`` of a ``"frames"`` model.
      chunk_size: genomes per ``lax.map`` step (``None``: the whole population in
        one ``vmap``).
    """
    plat = hardware.get_platform(platform)
    space_obj = genome_space(model, space or plat.space_name)
    plat.check_space(space_obj)
    objectives = tuple(objectives or ("error", plat.objectives()[0]))
    maximize = plat.check_objectives(objectives)
    cost_fn = plat.make_cost_fn(space_obj)
    ideal, nadir = objective_bounds(cost_fn, space_obj, objectives, maximize, max_error)
    config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=pop_size,
        n_offspring=n_offspring,
        n_generations=n_generations,
        seed=seed,
        max_error=max_error,
        memory_metric=None,
        error_metric=error_metric or default_error_metric(model),
    )
    ev = evaluator(
        model,
        space_obj,
        params,
        calib,
        fold,
        chunk_size=chunk_size,
        genome_batch=n_offspring,
    )
    problem = mohaq.QuantizationProblem(ev, cost_fn, dev, config, ideal, nadir)
    result = mohaq.run_search(problem, out_dir, progress=progress)
    return Searched(result, problem, space_obj, plat)


__all__ = [
    "Searched",
    "adapt",
    "calibrate",
    "default_error_metric",
    "evaluator",
    "for_population",
    "genome_space",
    "module_path",
    "search",
    "site_name",
    "tie_space",
]
