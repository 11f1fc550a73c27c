"""Population evaluation: every genome of a population in one compiled, batched pass.

MOHAQ's inference-only search (Rashed et al. 2021, Sec. III-B) scores a candidate by
post-training fake quantization on the development set. Here a whole population is
scored at once: bit-widths are traced arrays, so one ``jit`` serves every population of
the same shape. Work that does not depend on the genome is done once per call, not once
per genome:

* each weight site is quantized once per bit-width its gene allows (a ``(k, in, out)``
  table), and a genome gathers its kernels from the tables;
* the first stage of the model (e.g. SRU layer 1), which depends on a few genes only,
  is computed once per setting of those genes when that is cheaper;
* duplicate genomes are evaluated once (host side, see :class:`PopulationEvaluator`).

Nothing here knows a model: the model comes from its config
(:func:`mohaq_jax.models.model_of`) and is used only through the model contract (its
sites and its ``first_stage``/``rest_stages`` fast path); what a batch is and which
metrics its logits give is the model's task (:mod:`mohaq_jax.evaluate_tasks`: speech
frames or image classification). With ``stacked=True`` several
param sets (retrained beacons) are evaluated in the same pass, each genome with its own.

The population is processed in chunks (``lax.map`` with ``batch_size``) so large
populations fit memory; the best chunk is small on CPU and large on GPU
(``benchmarks/population_eval.py`` prints the curve).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import metrics, quantize, sharding, sites
from mohaq_jax.data import batching
from mohaq_jax.evaluate_tasks import (  # noqa: F401  (public names of this module)
    ClassificationMetrics,
    PopulationMetrics,
    Task,
    check_batch,
    get_task,
    host_metrics,
    metrics_from_sums,
)
from mohaq_jax.genome import GenomeSpace
from mohaq_jax.models import model_of
from mohaq_jax.qmodel import Calibration, act_clips


def weight_tables(
    params, calib: Calibration, space: GenomeSpace
) -> tuple[jax.Array, ...]:
    """Each site's weight quantized at every bit value its weight gene allows.

    Returns:
      One ``(k_l, *weight_shape)`` array per site, ``k_l`` = allowed values of the gene.
    """
    tables = []
    for i, site in enumerate(space.layers):
        kernel = sites.get_weight(params, site)
        values = jnp.asarray(space.layer_values("w")[i], jnp.int32)
        table = calib.w_clip[i][quantize.bits_index(values)]

        def quant(bits, clip, kernel=kernel):
            return quantize.fake_quant(kernel, bits, clip)

        tables.append(jax.vmap(quant)(values, table))
    return tuple(tables)


def genome_params(params, tables, space: GenomeSpace, genome) -> dict:
    """Params whose weights are the genome's quantized weights (gathered, not recomputed)."""
    new = params
    for i, site in enumerate(space.layers):
        new = sites.set_weight(new, site, tables[i][genome[space.w_gene[i]]])
    return new


def task_of(config) -> Task:
    """The task of ``config``'s model (its ``TASK``; speech frames when absent)."""
    return get_task(getattr(model_of(config), "TASK", "frames"))


def _first_genes(space: GenomeSpace, config) -> tuple[int, ...]:
    """Genes that decide the first stage's output (its sites' weight and activation)."""
    first = model_of(config).first_stage_sites(config)
    return tuple(
        sorted({space.w_gene[s] for s in first} | {space.a_gene[s] for s in first})
    )


def first_stage_combos(space: GenomeSpace, config) -> np.ndarray:
    """Every setting of the genes that decide the first stage's output.

    Returns:
      int32 ``(n_combos, n_genes)`` genomes: the first stage's genes take every
      combination of their levels (mixed radix, first gene slowest), others are 0.
    """
    genes = _first_genes(space, config)
    grids = np.meshgrid(*[np.arange(space.n_levels[g]) for g in genes], indexing="ij")
    combos = np.zeros((grids[0].size if genes else 1, space.n_genes), np.int32)
    for g, grid in zip(genes, grids, strict=True):
        combos[:, g] = grid.reshape(-1)
    return combos


def first_stage_index(space: GenomeSpace, config, genome) -> jax.Array:
    """Row of :func:`first_stage_combos` that matches a genome (traceable)."""
    index = jnp.int32(0)
    for g in _first_genes(space, config):
        index = index * int(space.n_levels[g]) + genome[g]
    return index


def first_stage_outputs(params, tables, calib, batch, *, config, space) -> jax.Array:
    """The first stage's output for every setting of its genes, computed once.

    The first stage (e.g. SRU layer 1 and its projection) sees the same features in
    every genome, so its output depends only on a few genes; genomes that agree on them
    share it. Returns ``(n_combos, ...)`` in :func:`first_stage_combos` order.
    """
    model = model_of(config)

    def one(combo):
        _, bits_a = space.decode(combo)
        qparams = genome_params(params, tables, space, combo)
        return model.first_stage(
            config, qparams, bits_a, act_clips(calib, bits_a), batch
        )

    combos = jnp.asarray(first_stage_combos(space, config))
    return jax.lax.map(one, combos)


def evaluate_genome(
    params,
    tables,
    calib,
    genome,
    batch,
    *,
    config,
    space,
    fold,
    first=None,
    decoder=None,
    per_mode=None,
):
    """Metric sums of one genome on one batch (the function that is vmapped/mapped).

    Args:
      params, tables, calib: float params, :func:`weight_tables`, clipping tables.
      genome: int ``(n_genes,)``.
      batch: one batch of the model's task (speech: ``(features (B, T, F), labels
        (B, T), lengths (B,))``; images: ``(images (B, H, W, C), labels (B,))``).
      config, space, fold: static model config, genome space, class -> phone folding
        (speech; unused by classification).
      first: optional :func:`first_stage_outputs`; when given, the genome's first
        stage is gathered from it instead of computed.
      decoder, per_mode: how PER reads phones (:func:`metrics.error_counts`).

    Returns:
      The task's sums: speech ``(loss_sum, n_frames, frame_wrong, phone_edits,
      n_phones)``, classification ``(loss_sum, n_samples, n_wrong)``; scalars.
    """
    model = model_of(config)
    _, bits_a = space.decode(genome)
    qparams = genome_params(params, tables, space, genome)
    clips = act_clips(calib, bits_a)
    if first is None:
        hidden = model.first_stage(config, qparams, bits_a, clips, batch)
    else:
        hidden = first[first_stage_index(space, config, genome)]
    logits = model.rest_stages(config, qparams, bits_a, clips, hidden, batch)
    return task_of(config).sums(logits, batch, fold, decoder, per_mode)


def make_population_eval(
    config,
    space: GenomeSpace,
    fold,
    chunk_size: int | None = 2,
    mesh=None,
    decoder=None,
    per_mode: str | None = None,
    stacked: bool = False,
    return_sums: bool = False,
):
    """Builds the jitted population evaluator.

    Args:
      config: model config (static); the model is :func:`mohaq_jax.models.model_of`.
      space: genome space (static).
      fold: int ``(n_classes,)`` class -> scoring phone (-1 = not scored); None for
        a classification model.
      chunk_size: genomes evaluated together by ``lax.map``; ``None`` = one ``vmap``
        over the whole population (per device).
      mesh: optional :func:`mohaq_jax.sharding.population_mesh`; the population is
        split over its ``pop`` axis (padded to a multiple, padding dropped) and the
        batch over its ``batch`` axis. ``None`` = one device.
      decoder: :class:`mohaq_jax.decode.Decoder` of the baseline (decoded PER).
      per_mode: "decoded" (default with a decoder), "smoothed" (default without) or
        "raw"; see :func:`mohaq_jax.metrics.error_counts`.
      stacked: params are ``n_sets`` param sets stacked on a leading axis (e.g. the
        retrained beacons), and genome ``i`` is evaluated with set ``index[i]``;
        weights are quantized once per (set, site, bits) and first stages shared per
        set.
      return_sums: return the task's per-genome sums, each ``(pop,)``, instead of the
        rates (streaming evaluation adds them up over batches; ``task.from_sums``).

    Returns:
      ``evaluate(params, calib, genomes (pop, n_genes) int32, batch) -> metrics``
      (:class:`PopulationMetrics` or :class:`ClassificationMetrics`)
      (with ``stacked``: ``evaluate(params, calib, genomes, batch, index (pop,))``),
      jitted; it compiles once per (population, batch) shape.
    """
    task = task_of(config)
    if task.name == "frames":
        fold = jnp.asarray(np.asarray(fold, np.int32))
        per_mode = metrics.resolve_per_mode(per_mode, decoder)
    n_combos = len(first_stage_combos(space, config))
    n_batch_shards = sharding.mesh_size(mesh, sharding.BATCH)

    def first_outputs(params, tables, calib, batch):
        return first_stage_outputs(
            params, tables, calib, batch, config=config, space=space
        )

    def population_sums(params, calib, genomes, batch):
        """Per-genome metric sums, ``(pop,)`` each, for the genomes and data given."""
        tables = weight_tables(params, calib, space)
        first = None
        if n_combos < genomes.shape[0]:
            # Fewer settings of the first stage than genomes: compute each once.
            first = first_outputs(params, tables, calib, batch)
        fn = functools.partial(
            evaluate_genome,
            params,
            tables,
            calib,
            batch=batch,
            config=config,
            space=space,
            fold=fold,
            first=first,
            decoder=decoder,
            per_mode=per_mode,
        )
        return _map(fn, genomes)

    def stacked_sums(params, calib, genomes, batch, index):
        """As ``population_sums``; genome ``i`` uses param set ``index[i]``."""
        tables = jax.vmap(lambda p: weight_tables(p, calib, space))(params)
        n_sets = jax.tree_util.tree_leaves(params)[0].shape[0]
        first = None
        if n_sets * n_combos < genomes.shape[0]:
            first = jax.vmap(first_outputs, in_axes=(0, 0, None, None))(
                params, tables, calib, batch
            )

        def one(args):
            genome, i = args
            return evaluate_genome(
                jax.tree_util.tree_map(lambda leaf: leaf[i], params),
                tuple(t[i] for t in tables),
                calib,
                genome,
                batch,
                config=config,
                space=space,
                fold=fold,
                first=None if first is None else first[i],
                decoder=decoder,
                per_mode=per_mode,
            )

        return _map(one, (genomes, index))

    def _map(fn, xs):
        if chunk_size is None:
            sums = jax.vmap(fn)(xs)
        else:
            sums = jax.lax.map(fn, xs, batch_size=chunk_size)
        if n_batch_shards > 1:
            sums = jax.lax.psum(sums, sharding.BATCH)
        return sums

    if stacked:
        sums_fn = sharding.shard_population(
            stacked_sums, mesh, in_axes=(None, None, 0, sharding.BATCH, 0)
        )
    else:
        sums_fn = sharding.shard_population(
            population_sums, mesh, in_axes=(None, None, 0, sharding.BATCH)
        )

    def evaluate(params, calib, genomes, batch, *index):
        batch = task.pad(batch, n_batch_shards)
        sums = sums_fn(params, calib, genomes, batch, *index)
        return sums if return_sums else task.from_sums(sums)

    return jax.jit(evaluate)


@dataclasses.dataclass
class PopulationEvaluator:
    """Host-side wrapper: validates input, skips duplicate genomes, keeps shapes fixed.

    Unique genomes are evaluated once; the population is padded to ``genome_batch`` (a
    multiple of ``chunk_size``) so that every call reuses one compiled program per
    batch shape. The data is one batch or a split streamed as batches
    (:func:`mohaq_jax.data.batching.bucketed_batches`): per-genome sums are added up
    over the batches, so memory is bounded by one batch and one population chunk.
    """

    config: Any  # a registered model's Config
    space: GenomeSpace
    fold: np.ndarray | None  # class -> scoring phone (speech); None for images
    params: dict
    calib: Calibration
    chunk_size: int | None = 2
    genome_batch: int | None = (
        None  # genomes per compiled call (padded); None: first call's
    )
    mesh: Any = (
        None  # sharding.population_mesh(...) to split the population; None = 1 device
    )
    decoder: Any = None  # decode.Decoder of the baseline: PER by Viterbi decoding
    per_mode: str | None = None  # "decoded" / "smoothed" / "raw"; None: see metrics

    def __post_init__(self):
        self._eval = make_population_eval(
            self.config,
            self.space,
            self.fold,
            self.chunk_size,
            self.mesh,
            decoder=self.decoder,
            per_mode=self.per_mode,
            return_sums=True,
        )

    def __call__(self, genomes, batch, params=None) -> dict[str, np.ndarray]:
        """Evaluates a population on data; returns numpy arrays of shape ``(pop,)``.

        Args:
          genomes: int ``(pop, n_genes)`` (or one genome ``(n_genes,)``).
          batch: one batch of the model's task, or a sequence of them (e.g. a
            :class:`~mohaq_jax.data.batching.BucketedSplit`).
          params: float params to use instead of ``self.params``.
        """
        genomes = self.space.validate(genomes)
        if genomes.ndim == 1:
            genomes = genomes[None]
        task = task_of(self.config)
        batches = task.as_batches(batch)
        for one in batches:
            task.check(one)
        unique, inverse = np.unique(genomes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        size = self.genome_batch or len(genomes)
        # Every device gets a whole number of chunks.
        multiple = (self.chunk_size or 1) * sharding.mesh_size(self.mesh)
        size = max(size, len(unique))
        size = -(-size // multiple) * multiple
        padded = jnp.asarray(
            np.concatenate([unique, np.repeat(unique[:1], size - len(unique), 0)])
        )
        params = self.params if params is None else params
        sums = batching.accumulate_sums(
            lambda one: self._eval(
                params, self.calib, padded, tuple(jnp.asarray(x) for x in one)
            ),
            batches,
            to_host=sharding.to_host,
        )
        out = host_metrics(sums, task)
        return {k: v[: len(unique)][inverse] for k, v in out.__dict__.items()}
