"""Data, float baseline and calibration for every experiment, from one config.

The float baseline's checkpoint folder is named after a digest of the model config,
the training config and the corpus settings (:func:`baseline_dir`), so
``experiments/train_baseline.py``, the searches and the switching experiments all load
the same baseline for the same flags. Each phase is announced on the console (with
``progress``) so nothing is silent for long.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from mohaq_jax import train
from mohaq_jax.data import load_corpus, pad_batch, provenance
from mohaq_jax.data.batching import (
    DEFAULT_BATCH_FRAMES,
    BucketedSplit,
    bucketed_batches,
)
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.models import get_model, qmodel
from mohaq_jax.models.sru import paper_config, sites
from mohaq_jax.runtime import atomic, checkpoint
from mohaq_jax.runtime.console import PhaseClock, say
from mohaq_jax.settings.config import (
    DataSettings,
    ExperimentConfig,
    ModelSettings,
    TrainingSettings,
    data_name,
)


@dataclasses.dataclass
class Setup:
    """Everything a search needs, prepared once."""

    corpus: object  # mohaq_jax.data.Corpus
    model_config: Any  # the registered model's Config (mohaq_jax.models contract)
    params: dict  # float baseline params
    calib: qmodel.Calibration
    dev_batch: BucketedSplit  # the dev split, streamed in length-bucketed batches
    test_batch: BucketedSplit
    baseline_info: dict  # as train.get_or_train_baseline returns it
    clock: PhaseClock  # wall seconds and peak RSS per phase (the pipeline adds its own)
    decoder: object = None  # decode.Decoder of the baseline (--per decoded), else None
    per_mode: str | None = "decoded"  # --per: how phone errors are read (None: images)
    # sites of the model the paper's memory limit was set for (None: no default limit)
    paper_sites: tuple | None = None
    report_settings: dict = dataclasses.field(default_factory=dict)  # task's own
    # the task's QAT of k genomes for beacons (search.beacon.BeaconProblem's
    # ``retrain``); None: the speech models' QAT on ``corpus`` (train.qat_finetune)
    retrain: Any = None


def model_config(model: ModelSettings, corpus):
    """The acoustic model's structure for a corpus: the registered model's ``Config``
    with the corpus's ``n_features`` and ``n_classes`` and, of the model flags, the
    fields that ``Config`` declares (``hidden``, ``n_layers``, ``bidirectional``,
    ``n_proj``, ``proj_first``, ``dropout``); its own defaults for the rest."""
    if model.paper_model:
        return paper_config(n_classes=corpus.n_classes, n_features=corpus.n_features)
    config_class = get_model(model.name).Config
    flags = {
        "hidden": model.hidden,
        "n_layers": model.layers,
        "bidirectional": model.bidirectional,
        "n_proj": model.proj,
        "proj_first": model.proj_first,
        "dropout": model.dropout,
    }
    declared = {f.name for f in dataclasses.fields(config_class)}
    return config_class(
        n_features=corpus.n_features,
        n_classes=corpus.n_classes,
        **{k: v for k, v in flags.items() if k in declared},
    )


def train_config(
    training: TrainingSettings, batch_frames: int | None = None
) -> train.TrainConfig:
    """Float training settings (library defaults for what the flags do not set).

    ``batch_frames`` (``--batch-frames``) sizes the streamed dev batches; it changes
    no result, so it is not part of the baseline's identity.
    """
    base = train.TrainConfig()
    if batch_frames is not None:
        base = dataclasses.replace(base, eval_batch_frames=batch_frames)
    return dataclasses.replace(
        base,
        epochs=training.epochs,
        batch_size=training.batch_size,
        lr=training.lr,
        min_lr=training.min_lr,
        grad_clip=training.grad_clip,
        weight_decay=training.weight_decay,
        pad_multiple=training.pad_multiple,
        seed=training.seed,
        max_minutes=training.minutes,
    )


def load_data(data: DataSettings, progress: bool = True):
    """The corpus the settings name (eSpeak by default, TIMIT with a directory)."""
    name = data_name(data)
    started = time.perf_counter()
    if name == "timit":
        say(progress, f"corpus: TIMIT from {data.timit_dir} (features cached)")
        corpus = load_corpus(
            "timit",
            timit_dir=data.timit_dir,
            cache_dir=data.cache_dir,
            allow_partial=data.timit_partial,
            allow_missing_labels=data.allow_missing_labels,
            verbose=progress,
        )
    elif name == "transcribed":
        say(
            progress,
            f"corpus: transcribed recordings in {data.corpus_dir} (pocketsphinx "
            "forced alignment on first use, then cached)",
        )
        corpus = load_corpus(
            "transcribed",
            corpus_dir=data.corpus_dir,
            labels="given" if data.phone_tier is not None else "align",
            phone_tier=data.phone_tier,
            cache_dir=data.cache_dir,
            verbose=progress,
        )
    else:
        say(
            progress,
            f"corpus: synthesized eSpeak NG speech, size {data.espeak_size!r}, seed "
            f"{data.data_seed} (generated on first use, then cached)",
        )
        corpus = load_corpus(
            "espeak",
            seed=data.data_seed,
            size=data.espeak_size,
            cache_dir=data.cache_dir,
            verbose=progress,
        )
    say(
        progress,
        f"corpus: {len(corpus.train)}/{len(corpus.dev)}/{len(corpus.test)} "
        f"train/dev/test utterances, {corpus.n_classes} classes, "
        f"{corpus.n_features} features ({time.perf_counter() - started:.1f} s)",
    )
    return corpus


def baseline_dir(cfg: ExperimentConfig, corpus, model_cfg, train_cfg) -> str:
    """The baseline's checkpoint folder: ``--baseline-dir`` or the cache digest."""
    if cfg.training.baseline_dir is not None:
        return cfg.training.baseline_dir
    # the registry name: two models with the same config fields never share a baseline
    model = "sru" if cfg.model.paper_model else cfg.model.name
    ident = json.dumps(
        [model, model_cfg.to_dict(), train_cfg.to_dict(), train.data_settings(corpus)],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    cache = cfg.data.cache_dir or default_cache_dir()
    return os.path.join(cache, "baselines", f"{corpus.name}-{digest}")


def _announce_baseline(progress, path, retrain, train_cfg) -> None:
    if not progress:
        return
    meta = None
    if os.path.exists(path) and not retrain:
        try:
            meta = checkpoint.read_meta(path)
        except Exception:  # an unreadable checkpoint is reported by the loader
            meta = None
    if meta is not None and meta.get("finished"):
        say(progress, f"float baseline: loading {path}")
    elif meta is not None:
        say(
            progress,
            f"float baseline: resuming interrupted training after epoch "
            f"{meta.get('epoch')} of at most {train_cfg.epochs} -> {path}",
        )
    else:
        say(
            progress,
            f"float baseline: training at most {train_cfg.epochs} epochs (first epoch "
            f"includes compilation) -> {path}",
        )


def get_baseline(cfg: ExperimentConfig, corpus) -> tuple[Any, dict, dict]:
    """The float baseline for ``cfg``: loaded if trained before, else trained.

    Returns:
      ``(model_config, params, info)``; info as
      :func:`mohaq_jax.train.get_or_train_baseline`.
    """
    progress = cfg.output.progress
    model_cfg = model_config(cfg.model, corpus)
    train_cfg = train_config(cfg.training, cfg.search.batch_frames)
    ckpt_dir = baseline_dir(cfg, corpus, model_cfg, train_cfg)
    path = os.path.join(ckpt_dir, train.BASELINE_FILE)
    # One process trains a baseline at a time; the others wait, then load it (the
    # loader looks for the checkpoint only once it holds the lock).
    waiting = f"float baseline: another process is training it, waiting ({path})"
    with atomic.locked(path, waiting if progress else None):
        _announce_baseline(progress, path, cfg.training.retrain, train_cfg)
        params, info = train.get_or_train_baseline(
            corpus,
            model_cfg,
            train_cfg,
            ckpt_dir,
            retrain=cfg.training.retrain,
            progress=progress,
        )
    say(
        progress,
        f"float baseline: {info['epoch']} epochs, best dev PER (smoothed) "
        f"{info['best_dev_per']:.4f}"
        + ("" if info["loaded"] else f" (trained in {info['seconds']:.0f} s)"),
    )
    return model_cfg, params, info


def calibration_batch(corpus, n_utts: int):
    """``n_utts`` training utterances (fixed draw) padded into one batch."""
    n_cal = min(n_utts, len(corpus.train))
    rng = np.random.default_rng(0)
    return pad_batch(corpus.train, rng.choice(len(corpus.train), n_cal, replace=False))


def calibrate_on_train(search, corpus, params, model_cfg) -> qmodel.Calibration:
    """Clipping tables of ``params`` calibrated on ``--calib-utts`` training
    utterances with the ``--calib`` method (``search``: the SearchSettings)."""
    cal = calibration_batch(corpus, search.calib_utts)
    return qmodel.calibrate(
        params,
        model_cfg,
        jnp.asarray(cal.features),
        jnp.asarray(cal.lengths),
        weight_method=search.calib,
        act_method=search.calib,
    )


def whole_split(split, batch_frames: int = DEFAULT_BATCH_FRAMES) -> BucketedSplit:
    """A dev/test split as streamed, length-bucketed batches of ``batch_frames``.

    Memory is bounded by one batch, not by the split (see
    :func:`mohaq_jax.data.batching.bucketed_batches`).
    """
    return bucketed_batches(split, batch_frames)


def prepare(cfg: ExperimentConfig) -> Setup:
    """Data, float baseline (trained on first use), calibration, dev/test batches."""
    progress = cfg.output.progress
    clock = PhaseClock()
    with clock.phase("data"):
        corpus = load_data(cfg.data, progress)
    with clock.phase("baseline"):
        model_cfg, params, info = get_baseline(cfg, corpus)
    say(
        progress,
        f"calibration: {cfg.search.calib} clipping on "
        f"{min(cfg.search.calib_utts, len(corpus.train))} training utterances",
    )
    with clock.phase("calibration"):
        calib = calibrate_on_train(cfg.search, corpus, params, model_cfg)
    say(progress, f"calibration: done ({clock.seconds['calibration']:.1f} s)")
    decoder = None
    if cfg.search.per == "decoded":
        say(
            progress,
            "decoder: phone bigram, priors and LM weight (cached per baseline)",
        )
        ckpt_dir = baseline_dir(cfg, corpus, model_cfg, train_config(cfg.training))
        with clock.phase("decoder"):
            decoder, dinfo = train.baseline_decoder(params, model_cfg, corpus, ckpt_dir)
        say(
            progress,
            f"decoder: LM weight {float(decoder.lm_weight):g}, insertion penalty "
            f"{float(decoder.insertion_penalty):g} ({clock.seconds['decoder']:.1f} s)",
        )
    return Setup(
        decoder=decoder,
        per_mode=cfg.search.per,
        corpus=corpus,
        model_config=model_cfg,
        params=params,
        calib=calib,
        dev_batch=whole_split(corpus.dev, cfg.search.batch_frames),
        test_batch=whole_split(corpus.test, cfg.search.batch_frames),
        baseline_info=info,
        clock=clock,
        paper_sites=sites(paper_config()),
        report_settings={"data_provenance": provenance.describe(corpus)},
    )
