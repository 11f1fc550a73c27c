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
metrics its logits give is the model's task (:mod:`mohaq_jax.evaluation.evaluate_tasks`: speech
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

from mohaq_jax.data import batching
from mohaq_jax.evaluation.evaluate_tasks import (  # noqa: F401  (public names of this module)
    ClassificationMetrics,
    PopulationMetrics,
    Task,
    check_batch,
    get_task,
    host_metrics,
    metrics_from_sums,
)
from mohaq_jax.evaluation.genome import GenomeSpace
from mohaq_jax.models import model_of, sites
from mohaq_jax.models.qmodel import Calibration, act_clips
from mohaq_jax.numerics import metrics, quantize
from mohaq_jax.runtime import sharding


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
    maskable: bool = False,
):
    """Builds the jitted population evaluator.

    Args:
      config: model config (static); the model is :func:`mohaq_jax.models.model_of`.
      space: genome space (static).
      fold: int ``(n_classes,)`` class -> scoring phone (-1 = not scored); None for
        a classification model.
      chunk_size: genomes evaluated together by ``lax.map``; ``None`` = one ``vmap``
        over the whole population (per device).
      mesh: optional :func:`mohaq_jax.runtime.sharding.population_mesh`; the population is
        split over its ``pop`` axis (padded to a multiple, padding dropped) and the
        batch over its ``batch`` axis. ``None`` = one device.
      decoder: :class:`mohaq_jax.decode.Decoder` of the baseline (decoded PER).
      per_mode: "decoded" (default with a decoder), "smoothed" (default without) or
        "raw"; see :func:`mohaq_jax.numerics.metrics.error_counts`.
      stacked: params are ``n_sets`` param sets stacked on a leading axis (e.g. the
        retrained beacons), and genome ``i`` is evaluated with set ``index[i]``;
        weights are quantized once per (set, site, bits) and first stages shared per
        set.
      return_sums: return the task's per-genome sums, each ``(pop,)``, instead of the
        rates (streaming evaluation adds them up over batches; ``task.from_sums``).
      maskable: the evaluator takes one more argument, ``active`` bool ``(pop,)``: a
        chunk of genomes none of which is active is skipped (``lax.cond``; its sums
        are zeros), so a caller that puts the active genomes first pays only for
        them (racing, :meth:`PopulationEvaluator.race`). Not with ``stacked``.

    Returns:
      ``evaluate(params, calib, genomes (pop, n_genes) int32, batch) -> metrics``
      (:class:`PopulationMetrics` or :class:`ClassificationMetrics`)
      (with ``stacked``: ``evaluate(params, calib, genomes, batch, index (pop,))``),
      jitted; it compiles once per (population, batch) shape.
    """
    task = task_of(config)
    if maskable and stacked:
        raise ValueError("maskable evaluation is not available with stacked params")
    if task.name == "frames":
        fold = jnp.asarray(np.asarray(fold, np.int32))
        per_mode = metrics.resolve_per_mode(per_mode, decoder)
    n_combos = len(first_stage_combos(space, config))
    n_batch_shards = sharding.mesh_size(mesh, sharding.BATCH)

    def first_outputs(params, tables, calib, batch):
        return first_stage_outputs(
            params, tables, calib, batch, config=config, space=space
        )

    def population_sums(params, calib, genomes, batch, *active):
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
        if active:
            return _masked_map(fn, genomes, active[0])
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

    def _masked_map(fn, genomes, active):
        """``_map`` that skips every chunk of genomes with no active genome."""
        size = chunk_size or genomes.shape[0]
        n_chunks = genomes.shape[0] // size  # the host pads to whole chunks
        chunks = genomes.reshape(n_chunks, size, *genomes.shape[1:])
        flags = active.reshape(n_chunks, size)
        run = jax.vmap(fn)
        zeros = jax.tree.map(
            lambda leaf: jnp.zeros(leaf.shape, leaf.dtype),
            jax.eval_shape(run, chunks[0]),
        )

        def one_chunk(args):
            chunk, chunk_flags = args
            return jax.lax.cond(jnp.any(chunk_flags), run, lambda _: zeros, chunk)

        sums = jax.lax.map(one_chunk, (chunks, flags))
        sums = jax.tree.map(lambda s: s.reshape(-1, *s.shape[2:]), sums)
        if n_batch_shards > 1:
            sums = jax.lax.psum(sums, sharding.BATCH)
        return sums

    if stacked:
        sums_fn = sharding.shard_population(
            stacked_sums, mesh, in_axes=(None, None, 0, sharding.BATCH, 0)
        )
    else:
        in_axes = (None, None, 0, sharding.BATCH) + ((0,) if maskable else ())
        sums_fn = sharding.shard_population(population_sums, mesh, in_axes=in_axes)

    def evaluate(params, calib, genomes, batch, *index):
        batch = task.pad(batch, n_batch_shards)
        sums = sums_fn(params, calib, genomes, batch, *index)
        return sums if return_sums else task.from_sums(sums)

    return jax.jit(evaluate)


def race_lower_bound(
    numerators: np.ndarray,
    denominators_seen: np.ndarray,
    denominator_total: int,
    n_batches: int,
    confidence: float = 0.95,
) -> np.ndarray:
    """Lower confidence bound on each genome's whole-split error, from some batches.

    Two bounds, the larger is returned:

    * certain: errors seen so far over the whole split's denominator. A metric's
      numerator is a sum of non-negative terms (edits, wrong frames, losses) and its
      denominator (reference phones, frames, images) depends on the labels only,
      so the final error is at least this, whatever the unseen batches hold.
    * statistical (``confidence`` < 1, at least 2 batches seen): the batches are
      scored in a random order, so the ``k`` seen are a simple random sample without
      replacement of the ``M`` batches. The unseen errors are estimated with the
      ratio estimator ``R = sum(e) / sum(n)`` of the seen batches (``e`` errors,
      ``n`` denominator per batch) and the finite-population standard error of a
      total, ``sqrt(M (M - k) / k) * s`` with ``s`` the standard deviation of the
      residuals ``e - R n`` (Cochran, *Sampling Techniques*, 3rd ed., 1977, Sec.
      6.4 and 9A.4: ratio estimate of a total in cluster sampling). A one-sided
      Student-t quantile with ``k - 1`` degrees of freedom at level
      ``1 - (1 - confidence) / (M - 1)`` makes the bound hold at ``confidence``
      over all ``M - 1`` looks of one genome together (Bonferroni), not only at
      each look.

    Args:
      numerators: ``(k, pop)`` the metric's numerator of each seen batch.
      denominators_seen: ``(k,)`` the seen batches' denominators.
      denominator_total: the whole split's denominator.
      n_batches: ``M``, the batches of the split.
      confidence: 1.0 gives the certain bound only.

    Returns:
      ``(pop,)`` float64 lower bounds of the whole-split error.
    """
    from scipy import stats  # only racing needs it

    numerators = np.asarray(numerators, np.float64)
    seen = np.asarray(denominators_seen, np.float64)
    total = max(float(denominator_total), 1.0)
    errors_seen = numerators.sum(axis=0)
    certain = errors_seen / total
    k = numerators.shape[0]
    if confidence >= 1.0 or k < 2 or k >= n_batches:
        return certain
    ratio = errors_seen / max(seen.sum(), 1.0)
    residuals = numerators - ratio[None] * seen[:, None]
    s = np.sqrt(np.sum(residuals**2, axis=0) / (k - 1))
    standard_error = np.sqrt(n_batches * (n_batches - k) / k) * s
    level = 1.0 - (1.0 - confidence) / (n_batches - 1)
    quantile = stats.t.ppf(level, k - 1)
    rest = max(total - seen.sum(), 0.0)
    rest_low = np.maximum(ratio * rest - quantile * standard_error, 0.0)
    return np.maximum(certain, (errors_seen + rest_low) / total)


@dataclasses.dataclass(frozen=True)
class RaceResult:
    """What :meth:`PopulationEvaluator.race` measured.

    ``results`` holds the evaluator's metrics per genome (name -> ``(pop,)``): for a
    completed genome exactly :meth:`PopulationEvaluator.__call__`'s, for a stopped
    one the metrics of the batches it saw (a partial estimate). ``work_done`` /
    ``work_full``: frames (or images) times genome rows the device computed, with
    racing and as a full evaluation of the same padded population would.
    """

    results: dict[str, np.ndarray]
    completed: np.ndarray  # shape=(pop,) bool: scored on the whole split
    batches_seen: np.ndarray  # shape=(pop,) int64
    units_seen: np.ndarray  # shape=(pop,) int64: frames (images) it was scored on
    units_total: int  # frames (images) of the whole split
    work_done: int
    work_full: int


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
        self._eval = self._make(maskable=False)
        self._masked_eval = None  # built on the first race
        self._references = {}  # id(batches) -> (batches, per-batch reference sums)

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

    def _make(self, maskable: bool):
        """The jitted evaluator of these settings, returning per-genome sums."""
        return make_population_eval(
            self.config,
            self.space,
            self.fold,
            self.chunk_size,
            self.mesh,
            decoder=self.decoder,
            per_mode=self.per_mode,
            return_sums=True,
            maskable=maskable,
        )

    def _padded_size(self, n_unique: int) -> int:
        size = max(self.genome_batch or n_unique, n_unique)
        multiple = (self.chunk_size or 1) * sharding.mesh_size(self.mesh)
        return -(-size // multiple) * multiple

    def reference_sums(self, batches) -> list[tuple[np.ndarray, ...]]:
        """Per batch, the sums of a model that is always right (cached per split).

        Their denominators (frames, reference phones, images) are those of every
        genome: they depend on the labels only, and are computed by the task's own
        sums function.
        """
        cached = self._references.get(id(batches))
        if cached is not None and cached[0] is batches:
            return cached[1]
        task = task_of(self.config)
        n_classes = len(self.fold) if self.fold is not None else None
        if n_classes is None:
            n_classes = int(self.config.n_classes)

        @jax.jit
        def reference(batch):
            logits = task.reference_logits(batch, n_classes)
            return task.sums(logits, batch, self.fold, None, "raw")

        refs = [
            tuple(np.asarray(x) for x in reference(tuple(jnp.asarray(x) for x in b)))
            for b in batches
        ]
        self._references[id(batches)] = (batches, refs)
        return refs

    def race(
        self,
        genomes,
        batch,
        metric: str,
        max_error: float,
        confidence: float = 0.95,
        seed: int = 0,
        doomed=None,
    ) -> RaceResult:
        """Scores genomes batch by batch, stopping those above ``max_error``.

        The batches are scored in a random order (fixed by ``seed``); after each, a
        genome whose lower confidence bound on its whole-split error
        (:func:`race_lower_bound`) exceeds ``max_error`` stops: it is recorded with
        the metric of the batches it saw (a partial estimate, marked as such). A
        genome that completes has exactly the integer sums, hence the error,
        :meth:`__call__` gives (float sums such as the loss up to the order of
        float64 additions).

        Active genomes are put first, so whole chunks of stopped genomes are skipped
        (:func:`make_population_eval` with ``maskable``).

        Args:
          genomes: int ``(pop, n_genes)``.
          batch: the split (one batch or a sequence of batches).
          metric: the error metric the bound applies to (a ``Task.ratios`` name).
          max_error: the error constraint.
          confidence: of each genome's stop (see :func:`race_lower_bound`); 1.0
            keeps only the certain bound.
          seed: the order of the batches.
          doomed: bool ``(pop,)``, genomes already infeasible by an exact constraint
            (e.g. memory, from the cost model): their error cannot make them
            feasible, so they stop after the first batch, with its estimate (None:
            none).

        Returns:
          :class:`RaceResult`.
        """
        genomes = self.space.validate(genomes)
        if genomes.ndim == 1:
            genomes = genomes[None]
        doomed = np.zeros(len(genomes), bool) if doomed is None else np.asarray(doomed)
        task = task_of(self.config)
        numerator, denominator = task.ratio(metric)
        batches = task.as_batches(batch)
        for one in batches:
            task.check(one)
        if self._masked_eval is None:
            self._masked_eval = self._make(maskable=True)
        refs = self.reference_sums(batches)
        n_batches = len(batches)
        denominators = np.asarray([int(r[denominator]) for r in refs], np.int64)
        unique, first, inverse = np.unique(
            genomes, axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.reshape(-1)
        n_unique = len(unique)
        stop_first = np.zeros(self._padded_size(n_unique), bool)
        stop_first[:n_unique] = doomed[first]
        size = self._padded_size(n_unique)
        chunk = self.chunk_size or size
        padded = np.concatenate([unique, np.repeat(unique[:1], size - n_unique, 0)])
        active = np.zeros(size, bool)
        active[:n_unique] = True
        total = None
        batches_seen = np.zeros(size, np.int64)
        units_seen = np.zeros(size, np.int64)
        numerators = []  # per batch scored, (size,) numerators of the bound's metric
        work_done = work_full = 0
        visit = np.random.default_rng(seed).permutation(n_batches)
        for step, index in enumerate(visit):
            one, ref = batches[index], refs[index]
            order = np.argsort(~active, kind="stable")  # active genomes first
            flags = active[order]
            out = self._masked_eval(
                self.params,
                self.calib,
                jnp.asarray(padded[order]),
                tuple(jnp.asarray(x) for x in one),
                jnp.asarray(flags),
            )
            part = [np.empty(size, self._host_dtype(x)) for x in out]
            for dst, src in zip(part, out, strict=True):
                dst[order] = sharding.to_host(src)
            part = [np.where(active, p, 0) for p in part]
            total = (
                part
                if total is None
                else [t + p for t, p in zip(total, part, strict=True)]
            )
            numerators.append(part[numerator])
            batches_seen += active
            units = int(ref[task.unit])
            units_seen += active * units
            n_chunks_run = -(-int(flags.sum()) // chunk)
            work_done += units * n_chunks_run * chunk
            work_full += units * size
            if step + 1 == n_batches:
                break
            bound = race_lower_bound(
                np.stack(numerators),
                denominators[visit[: step + 1]],
                int(denominators.sum()),
                n_batches,
                confidence,
            )
            active &= ~(bound > max_error) & ~stop_first
            if not active[:n_unique].any():
                break
        completed = batches_seen == n_batches
        out = host_metrics(tuple(total), task)
        results = {k: v[:n_unique][inverse] for k, v in out.__dict__.items()}
        return RaceResult(
            results=results,
            completed=completed[:n_unique][inverse],
            batches_seen=batches_seen[:n_unique][inverse],
            units_seen=units_seen[:n_unique][inverse],
            units_total=int(sum(int(r[task.unit]) for r in refs)),
            work_done=work_done,
            work_full=work_full,
        )

    @staticmethod
    def _host_dtype(x):
        return np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
