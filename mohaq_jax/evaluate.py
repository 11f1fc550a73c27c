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

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax import metrics, quantize
from mohaq_jax.genome import GenomeSpace
from mohaq_jax.models.sru import AcousticModel, ModelConfig
from mohaq_jax.qmodel import Calibration, act_clips


@struct.dataclass
class PopulationMetrics:
    """Per-genome results; every field has shape ``(pop,)``. All are minimized."""

    loss: jax.Array  # mean framewise cross-entropy over valid frames, float32
    frame_error: jax.Array  # fraction of misclassified frames, float32
    phone_error: jax.Array  # phone error rate (39 folded phones), float32
    phone_edits: jax.Array  # summed Levenshtein distance, int32
    n_phones: jax.Array  # summed reference phone count, int32


def weight_tables(params, calib: Calibration, space: GenomeSpace) -> tuple[jax.Array, ...]:
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


def evaluate_genome(params, tables, calib, genome, batch, *, config, space, fold):
    """Metric sums of one genome on one batch (the function that is vmapped/mapped).

    Returns:
      ``(loss_sum, n_frames, frame_wrong, phone_edits, n_phones)`` scalars.
    """
    _, bits_a = space.decode(genome)
    qparams = genome_params(params, tables, space, genome)
    model = AcousticModel(config)
    clips = act_clips(calib, bits_a)

    def one(feats, length):
        return model.apply({"params": qparams}, feats, length, bits_a, clips)

    features, labels, lengths = batch
    logits = jax.vmap(one)(features, lengths)
    pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    loss_sum, n_frames = metrics.masked_cross_entropy(logits, labels, lengths)
    wrong, _ = metrics.frame_errors(pred, labels, lengths)
    edits, n_phones = metrics.phone_error_rate(pred, labels, lengths, fold)
    return (
        jnp.sum(loss_sum), jnp.sum(n_frames), jnp.sum(wrong), jnp.sum(edits),
        jnp.sum(n_phones),
    )


def make_population_eval(
    config: ModelConfig, space: GenomeSpace, fold, chunk_size: int | None = 2
):
    """Builds the jitted population evaluator.

    Args:
      config: model config (static).
      space: genome space (static).
      fold: int ``(n_classes,)`` class -> scoring phone (-1 = not scored).
      chunk_size: genomes evaluated together by ``lax.map``; ``None`` = one ``vmap``
        over the whole population.

    Returns:
      ``evaluate(params, calib, genomes (pop, n_genes) int32, batch) -> PopulationMetrics``,
      jitted; it compiles once per (population, batch) shape.
    """
    fold = np.asarray(fold, np.int32)

    def evaluate(params, calib, genomes, batch):
        tables = weight_tables(params, calib, space)
        fn = functools.partial(
            evaluate_genome, params, tables, calib, batch=batch, config=config,
            space=space, fold=jnp.asarray(fold),
        )
        if chunk_size is None:
            sums = jax.vmap(fn)(genomes)
        else:
            sums = jax.lax.map(fn, genomes, batch_size=chunk_size)
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

    return jax.jit(evaluate)


def check_batch(batch) -> None:
    """Rejects a batch with NaN/inf features or inconsistent shapes, naming the problem."""
    features, labels, lengths = (np.asarray(x) for x in batch)
    if features.ndim != 3:
        raise ValueError(f"features must be (batch, time, features), got {features.shape}")
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
    if np.any(lengths < 1) or np.any(lengths > features.shape[1]):
        raise ValueError(f"lengths must be in 1..{features.shape[1]}, got {lengths}")


@dataclasses.dataclass
class PopulationEvaluator:
    """Host-side wrapper: validates input, skips duplicate genomes, keeps shapes fixed.

    Unique genomes are evaluated once; the population is padded to ``pop_size`` (a
    multiple of ``chunk_size``) so that every call reuses one compiled program.
    """

    config: ModelConfig
    space: GenomeSpace
    fold: np.ndarray
    params: dict
    calib: Calibration
    chunk_size: int | None = 2
    pop_size: int | None = None  # fixed padded size; default: first call's size

    def __post_init__(self):
        self._eval = make_population_eval(self.config, self.space, self.fold, self.chunk_size)

    def __call__(self, genomes, batch, params=None) -> dict[str, np.ndarray]:
        """Evaluates a population on a batch; returns numpy arrays of shape ``(pop,)``."""
        genomes = self.space.validate(genomes)
        if genomes.ndim == 1:
            genomes = genomes[None]
        check_batch(batch)
        unique, inverse = np.unique(genomes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        size = self.pop_size or len(genomes)
        multiple = self.chunk_size or 1
        size = max(size, len(unique))
        size = -(-size // multiple) * multiple
        padded = np.concatenate([unique, np.repeat(unique[:1], size - len(unique), 0)])
        out = self._eval(
            self.params if params is None else params, self.calib, jnp.asarray(padded),
            tuple(jnp.asarray(x) for x in batch),
        )
        return {k: np.asarray(v)[: len(unique)][inverse] for k, v in out.__dict__.items()}
