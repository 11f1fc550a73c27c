"""Population evaluation: every genome of a population in one compiled, batched pass.

MOHAQ's inference-only search (Rashed et al. 2021, Sec. III-B) scores a candidate by
post-training fake quantization on the development set. Here a whole population is
scored at once: bit-widths are traced arrays, so one ``jit`` serves every population of
the same shape. Work that does not depend on the genome is done once per call, not once
per genome:

* each weight site is quantized once per bit-width its gene allows (a ``(k, in, out)``
  table), and a genome gathers its kernels from the tables;
* duplicate genomes are evaluated once (host side, see :class:`PopulationEvaluator`).

The population is processed in chunks (``lax.map`` with ``batch_size``) so large
populations fit memory; the best chunk is small on CPU and large on GPU
(``benchmarks/population_eval.py`` prints the curve).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax import metrics, quantize, sharding
from mohaq_jax.data import batching
from mohaq_jax.genome import GenomeSpace
from mohaq_jax.models.sru import ModelConfig, _sru_layout, layer_specs
from mohaq_jax.qmodel import Calibration, act_clips


@struct.dataclass
class PopulationMetrics:
    """Per-genome results; every field has shape ``(pop,)``. All are minimized."""

    loss: jax.Array  # mean framewise cross-entropy over valid frames, float32
    frame_error: jax.Array  # fraction of misclassified frames, float32
    phone_error: jax.Array  # phone error rate (39 folded phones), float32
    phone_edits: jax.Array  # summed Levenshtein distance, int32
    n_phones: jax.Array  # summed reference phone count, int32


def metrics_from_sums(sums) -> PopulationMetrics:
    """Rates from per-genome ``(loss_sum, n_frames, frame_wrong, edits, n_phones)``."""
    loss_sum, n_frames, wrong, edits, n_phones = sums
    n_frames_f = jnp.maximum(n_frames, 1).astype(jnp.float32)
    return PopulationMetrics(
        loss=loss_sum / n_frames_f,
        frame_error=wrong.astype(jnp.float32) / n_frames_f,
        phone_error=edits.astype(jnp.float32)
        / jnp.maximum(n_phones, 1).astype(jnp.float32),
        phone_edits=edits,
        n_phones=n_phones,
    )


def weight_tables(
    params, calib: Calibration, space: GenomeSpace
) -> tuple[jax.Array, ...]:
    """Each layer's kernel quantized at every bit value its weight gene allows.

    Returns:
      One ``(k_l, n_in, n_out)`` array per layer, ``k_l`` = allowed values of the gene.
    """
    tables = []
    for i, spec in enumerate(space.layers):
        kernel = params[spec.name]["kernel"]
        values = jnp.asarray(space.layer_values("w")[i], jnp.int32)
        table = calib.w_clip[i][quantize.bits_index(values)]

        def quant(bits, clip, kernel=kernel):
            return quantize.fake_quant(kernel, bits, clip)

        tables.append(jax.vmap(quant)(values, table))
    return tuple(tables)


def genome_params(params, tables, space: GenomeSpace, genome) -> dict:
    """Params whose kernels are the genome's quantized kernels (gathered, not recomputed)."""
    new = dict(params)
    for i, spec in enumerate(space.layers):
        layer = dict(new[spec.name])
        layer["kernel"] = tables[i][genome[space.w_gene[i]]]
        new[spec.name] = layer
    return new


# --------------------------------------------------------------------------------------
# Time-major forward pass, one stage (optional projection + SRU layer) at a time
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Stage:
    """One SRU layer with its optional input projection, as the model builds it."""

    sru_site: int  # index of the SRU kernel in layer_specs order
    proj_site: int | None  # index of its input projection, if any
    k: int  # 3 or 4 matrices


def _stages(config: ModelConfig) -> tuple[tuple[_Stage, ...], int]:
    """The model's stages in forward order and the site index of the output layer."""
    stages, site = [], 0
    for i in range(config.n_layers):
        _, _, n_proj, k = _sru_layout(config, i)
        proj_site = None
        if n_proj:
            proj_site, site = site, site + 1
        stages.append(_Stage(site, proj_site, k))
        site += 1
    return tuple(stages), site


def _sru_time_major(config: ModelConfig, layer, x_mm, x_cell, valid):
    """One SRU layer over a batch of utterances, time-major, both directions in one scan.

    Same arithmetic as :class:`mohaq_jax.models.sru.SRULayer`, laid out for speed: the
    inputs stay ``(T, B, ...)`` so the scan needs no transposes, and the backward
    direction is a plain reversed scan whose state is reset to zero on padding frames
    (equivalent to the model's per-utterance reversal by length, without gathers).

    Args:
      config: model config.
      layer: the layer's params (``kernel`` already quantized, ``v``, ``bias``).
      x_mm: ``(T, B, n_in)`` matmul input (activation already quantized).
      x_cell: ``(T, B, d_in)`` the layer's float input (the highway term).
      valid: bool ``(T, B)``.

    Returns:
      ``(T, B, dirs * hidden)``, zero at padding frames.
    """
    n_time, n_batch = x_mm.shape[:2]
    h, d = config.hidden, config.n_dirs
    kernel = layer["kernel"]
    k = kernel.shape[-1] // (d * h)
    u = (x_mm @ kernel).reshape(n_time, n_batch, d, k, h)
    scale_x = (
        math.sqrt(1.0 + 2.0 * math.exp(config.highway_bias)) if config.rescale else 1.0
    )
    if k == 4:
        skip = u[:, :, :, 3] * scale_x
    elif x_cell.shape[-1] == config.output_size:
        skip = x_cell.reshape(n_time, n_batch, d, h) * scale_x
    else:
        skip = None

    def directions(a):
        """Forward direction as is, backward direction reversed in time."""
        if d == 1:
            return a
        return jnp.stack([a[:, :, 0], jnp.flip(a[:, :, 1], axis=0)], axis=2)

    v, b = layer["v"], layer["bias"]  # (dirs, 2, hidden)
    mask = directions(
        jnp.broadcast_to(valid[:, :, None, None], (n_time, n_batch, d, 1))
    )
    u = directions(u[:, :, :, :3])
    # Only the forget gate and the cell state are sequential; the reset gate and the
    # output are computed for all frames at once after the scan (same arithmetic).
    gate_f = u[:, :, :, 1] + b[None, None, :, 0]
    x_tilde = u[:, :, :, 0]
    v_f = v[None, :, 0]

    def step(carry, t):
        c_prev, c_seq = carry
        f = jax.nn.sigmoid(
            jax.lax.dynamic_index_in_dim(gate_f, t, 0, False) + v_f * c_prev
        )
        c = f * c_prev + (1.0 - f) * jax.lax.dynamic_index_in_dim(x_tilde, t, 0, False)
        # Zero state on padding frames: the reversed direction starts clean.
        c = jnp.where(jax.lax.dynamic_index_in_dim(mask, t, 0, False), c, 0.0)
        return (c, jax.lax.dynamic_update_index_in_dim(c_seq, c, t, 0)), None

    # Indexing by t (not scanning over xs) keeps a vmapped population axis in front,
    # so batching the scan inserts no transposes.
    c0 = jnp.zeros((n_batch, d, h), u.dtype)
    (_, c_seq), _ = jax.lax.scan(
        step, (c0, jnp.zeros_like(x_tilde)), jnp.arange(n_time)
    )
    c_prev = jnp.concatenate([jnp.zeros_like(c_seq[:1]), c_seq[:-1]])
    r = jax.nn.sigmoid(
        u[:, :, :, 2] + v[None, None, :, 1] * c_prev + b[None, None, :, 1]
    )
    h_seq = r * c_seq if skip is None else r * c_seq + (1.0 - r) * directions(skip)
    h_seq = jnp.where(mask, h_seq, 0.0)
    return directions(h_seq).reshape(n_time, n_batch, d * h)


def _run_stage(config, stage: _Stage, qparams, bits_a, clips, x, valid):
    """Projection (if any) and SRU layer of one stage, time-major ``(T, B, .)``."""
    layers = layer_specs(config)
    x_cell, x_mm = x, x
    if stage.proj_site is not None:
        s = stage.proj_site
        x_q = quantize.fake_quant(x, bits_a[s], clips[s])
        x_mm = x_q @ qparams[layers[s].name]["kernel"]
    s = stage.sru_site
    x_mm = quantize.fake_quant(x_mm, bits_a[s], clips[s])
    return _sru_time_major(config, qparams[layers[s].name], x_mm, x_cell, valid)


def _stage_genes(space: GenomeSpace, stage: _Stage) -> tuple[int, ...]:
    """Genes that decide a stage's output (its sites' weight and activation genes)."""
    sites = [s for s in (stage.proj_site, stage.sru_site) if s is not None]
    return tuple(
        sorted({space.w_gene[s] for s in sites} | {space.a_gene[s] for s in sites})
    )


def first_stage_combos(space: GenomeSpace, config: ModelConfig) -> np.ndarray:
    """Every setting of the genes that decide the first stage's output.

    Returns:
      int32 ``(n_combos, n_genes)`` genomes: the first stage's genes take every
      combination of their levels (mixed radix, first gene slowest), others are 0.
    """
    genes = _stage_genes(space, _stages(config)[0][0])
    grids = np.meshgrid(*[np.arange(space.n_levels[g]) for g in genes], indexing="ij")
    combos = np.zeros((grids[0].size, space.n_genes), np.int32)
    for g, grid in zip(genes, grids, strict=True):
        combos[:, g] = grid.reshape(-1)
    return combos


def first_stage_index(space: GenomeSpace, config: ModelConfig, genome) -> jax.Array:
    """Row of :func:`first_stage_combos` that matches a genome (traceable)."""
    genes = _stage_genes(space, _stages(config)[0][0])
    index = jnp.int32(0)
    for g in genes:
        index = index * int(space.n_levels[g]) + genome[g]
    return index


def _time_major(batch):
    features, _, lengths = batch
    x = jnp.swapaxes(features, 0, 1)  # (T, B, F)
    valid = jnp.arange(features.shape[1])[:, None] < lengths[None, :]  # (T, B)
    return x, valid


def first_stage_outputs(params, tables, calib, batch, *, config, space) -> jax.Array:
    """The first stage's output for every setting of its genes, computed once.

    The first stage (SRU layer 1 and its projection) sees the same features in every
    genome, so its output depends only on a few genes; genomes that agree on them share
    it. Returns ``(n_combos, T, B, n_out)`` in :func:`first_stage_combos` order.
    """
    x, valid = _time_major(batch)
    stage = _stages(config)[0][0]

    def one(combo):
        _, bits_a = space.decode(combo)
        qparams = genome_params(params, tables, space, combo)
        return _run_stage(
            config, stage, qparams, bits_a, act_clips(calib, bits_a), x, valid
        )

    combos = jnp.asarray(first_stage_combos(space, config))
    return jax.lax.map(one, combos)


def evaluate_genome(
    params, tables, calib, genome, batch, *, config, space, fold, first=None
):
    """Metric sums of one genome on one batch (the function that is vmapped/mapped).

    Args:
      params, tables, calib: float params, :func:`weight_tables`, clipping tables.
      genome: int ``(n_genes,)``.
      batch: ``(features (B, T, F), labels (B, T), lengths (B,))``.
      config, space, fold: static model config, genome space, class -> phone folding.
      first: optional :func:`first_stage_outputs`; when given, the genome's first
        stage is gathered from it instead of computed.

    Returns:
      ``(loss_sum, n_frames, frame_wrong, phone_edits, n_phones)`` scalars.
    """
    _, bits_a = space.decode(genome)
    qparams = genome_params(params, tables, space, genome)
    clips = act_clips(calib, bits_a)
    stages, fc_site = _stages(config)
    x, valid = _time_major(batch)
    if first is None:
        x = _run_stage(config, stages[0], qparams, bits_a, clips, x, valid)
    else:
        x = first[first_stage_index(space, config, genome)]
    for stage in stages[1:]:
        x = _run_stage(config, stage, qparams, bits_a, clips, x, valid)
    fc = qparams[layer_specs(config)[fc_site].name]
    x = quantize.fake_quant(x, bits_a[fc_site], clips[fc_site])
    logits = jnp.swapaxes(x @ fc["kernel"] + fc["bias"][None, None], 0, 1)  # (B, T, C)

    features, labels, lengths = batch
    return metrics.error_counts(logits, labels, lengths, fold)


def _pad_utterances(batch, multiple: int):
    """Pads a batch with empty utterances (length 0: no frames, no phones, no errors)."""
    features, labels, lengths = batch
    n = features.shape[0]
    extra = -(-n // multiple) * multiple - n
    if extra == 0:
        return batch
    return (
        jnp.concatenate(
            [features, jnp.zeros((extra,) + features.shape[1:], features.dtype)]
        ),
        jnp.concatenate(
            [labels, jnp.full((extra,) + labels.shape[1:], -1, labels.dtype)]
        ),
        jnp.concatenate([lengths, jnp.zeros((extra,), lengths.dtype)]),
    )


def make_population_eval(
    config: ModelConfig,
    space: GenomeSpace,
    fold,
    chunk_size: int | None = 2,
    mesh=None,
    return_sums: bool = False,
):
    """Builds the jitted population evaluator.

    Args:
      config: model config (static).
      space: genome space (static).
      fold: int ``(n_classes,)`` class -> scoring phone (-1 = not scored).
      chunk_size: genomes evaluated together by ``lax.map``; ``None`` = one ``vmap``
        over the whole population (per device).
      mesh: optional :func:`mohaq_jax.sharding.population_mesh`; the population is
        split over its ``pop`` axis (padded to a multiple, padding dropped) and the
        batch over its ``batch`` axis. ``None`` = one device.
      return_sums: return the per-genome sums ``(loss_sum, n_frames, frame_wrong,
        phone_edits, n_phones)``, each ``(pop,)``, instead of the rates (streaming
        evaluation adds them up over batches; see :func:`metrics_from_sums`).

    Returns:
      ``evaluate(params, calib, genomes (pop, n_genes) int32, batch) -> PopulationMetrics``,
      jitted; it compiles once per (population, batch) shape.
    """
    fold = np.asarray(fold, np.int32)
    n_combos = len(first_stage_combos(space, config))
    n_batch_shards = sharding.mesh_size(mesh, sharding.BATCH)

    def population_sums(params, calib, genomes, batch):
        """Per-genome metric sums, ``(pop,)`` each, for the genomes and data given."""
        tables = weight_tables(params, calib, space)
        first = None
        if n_combos < genomes.shape[0]:
            # Fewer settings of the first stage than genomes: compute each once.
            first = first_stage_outputs(
                params, tables, calib, batch, config=config, space=space
            )
        fn = functools.partial(
            evaluate_genome,
            params,
            tables,
            calib,
            batch=batch,
            config=config,
            space=space,
            fold=jnp.asarray(fold),
            first=first,
        )
        if chunk_size is None:
            sums = jax.vmap(fn)(genomes)
        else:
            sums = jax.lax.map(fn, genomes, batch_size=chunk_size)
        if n_batch_shards > 1:
            sums = jax.lax.psum(sums, sharding.BATCH)
        return sums

    sums_fn = sharding.shard_population(
        population_sums,
        mesh,
        in_axes=(None, None, 0, sharding.BATCH),
    )

    def evaluate(params, calib, genomes, batch):
        batch = _pad_utterances(batch, n_batch_shards)
        sums = sums_fn(params, calib, genomes, batch)
        return sums if return_sums else metrics_from_sums(sums)

    return jax.jit(evaluate)


def check_batch(batch) -> None:
    """Rejects a batch with NaN/inf features or inconsistent shapes, naming the problem."""
    features, labels, lengths = (np.asarray(x) for x in batch)
    if features.ndim != 3:
        raise ValueError(
            f"features must be (batch, time, features), got {features.shape}"
        )
    if labels.shape != features.shape[:2] or lengths.shape != features.shape[:1]:
        raise ValueError(
            f"labels {labels.shape} / lengths {lengths.shape} do not match features "
            f"{features.shape}"
        )
    bad = ~np.isfinite(features)
    if np.any(bad):
        utt, frame, feat = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"features contain NaN or inf ({int(bad.sum())} values; first at utterance "
            f"{utt}, frame {frame}, feature {feat})"
        )
    # Length 0 marks an empty row (bucketed batches fill their last batch with them).
    if np.any(lengths < 0) or np.any(lengths > features.shape[1]):
        raise ValueError(f"lengths must be in 0..{features.shape[1]}, got {lengths}")


@dataclasses.dataclass
class PopulationEvaluator:
    """Host-side wrapper: validates input, skips duplicate genomes, keeps shapes fixed.

    Unique genomes are evaluated once; the population is padded to ``pop_size`` (a
    multiple of ``chunk_size``) so that every call reuses one compiled program per
    batch shape. The data is one batch or a split streamed as batches
    (:func:`mohaq_jax.data.batching.bucketed_batches`): per-genome sums are added up
    over the batches, so memory is bounded by one batch and one population chunk.
    """

    config: ModelConfig
    space: GenomeSpace
    fold: np.ndarray
    params: dict
    calib: Calibration
    chunk_size: int | None = 2
    pop_size: int | None = None  # fixed padded size; default: first call's size
    mesh: Any = (
        None  # sharding.population_mesh(...) to split the population; None = 1 device
    )

    def __post_init__(self):
        self._eval = make_population_eval(
            self.config,
            self.space,
            self.fold,
            self.chunk_size,
            self.mesh,
            return_sums=True,
        )

    def __call__(self, genomes, batch, params=None) -> dict[str, np.ndarray]:
        """Evaluates a population on data; returns numpy arrays of shape ``(pop,)``.

        Args:
          genomes: int ``(pop, n_genes)`` (or one genome ``(n_genes,)``).
          batch: one ``(features (B, T, F), labels (B, T), lengths (B,))`` batch, or
            a sequence of them (a :class:`~mohaq_jax.data.batching.BucketedSplit`).
          params: float params to use instead of ``self.params``.
        """
        genomes = self.space.validate(genomes)
        if genomes.ndim == 1:
            genomes = genomes[None]
        batches = batching.as_batches(batch)
        for one in batches:
            check_batch(one)
        unique, inverse = np.unique(genomes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        size = self.pop_size or len(genomes)
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
        out = host_metrics(sums)
        return {k: v[: len(unique)][inverse] for k, v in out.__dict__.items()}


def host_metrics(sums) -> PopulationMetrics:
    """:func:`metrics_from_sums` of host sums (int64/float64), as numpy arrays."""
    loss_sum, n_frames, wrong, edits, n_phones = sums
    out = metrics_from_sums(
        (
            np.asarray(loss_sum, np.float32),
            np.asarray(n_frames, np.int32),
            np.asarray(wrong, np.int32),
            np.asarray(edits, np.int32),
            np.asarray(n_phones, np.int32),
        )
    )
    return jax.tree.map(np.asarray, out)
