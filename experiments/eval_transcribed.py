"""Evaluates the float baseline (trained on synthesized speech) on real recordings.

    python -m experiments.eval_transcribed                       # shared recordings
    python -m experiments.eval_transcribed --corpus-dir LibriSpeech/dev-clean
    python -m experiments.eval_transcribed --corpus-dir DIR --labels given

The default corpus is ``<repo>/../shared/data/real_speech`` (or $MOHAQ_SHARED/...):
about 2 minutes from 3 speakers with their given phone times. Every utterance is
scored (no training split); the frame error and PER of a model trained on eSpeak NG
speech measure its domain gap to real speech, not its quality on real speech data
it was trained for. The logic lives in :mod:`mohaq_jax.data.transcribed` and
:func:`mohaq_jax.train.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from mohaq_jax.orchestration import cli
from mohaq_jax.runtime import atomic

# JAX and the data/model modules are imported by the functions that use them, after
# the flags were checked (a flag error costs no JAX import).

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_recordings() -> pathlib.Path:
    """$MOHAQ_SHARED/data/real_speech, else <repo>/../shared/data/real_speech."""
    shared = os.environ.get("MOHAQ_SHARED") or REPO.parent / "shared"
    return pathlib.Path(shared) / "data" / "real_speech"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--corpus-dir",
        default=None,
        help="LibriSpeech-layout or plain folder of recordings; default: the "
        "shared real-speech recordings",
    )
    p.add_argument(
        "--labels",
        choices=("align", "given"),
        default=None,
        help="frame labels from pocketsphinx forced alignment of the transcripts, "
        "or from phone-times files beside the audio (default: given for the "
        "shared recordings, align otherwise)",
    )
    p.add_argument(
        "--phone-tier",
        default=None,
        help="with --labels given: the TextGrid tier holding the phones (default: "
        "the tier named 'phones', else the only one whose name contains 'phone')",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="baseline checkpoint (folder or baseline.msgpack); default: the search "
        "experiments' default baseline if cached, else the one finished baseline "
        "of the default eSpeak corpus under CACHE/baselines (several: refused)",
    )
    p.add_argument(
        "--cache-dir", default=None, help="default: $MOHAQ_CACHE or ~/.cache/mohaq_jax"
    )
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def default_baseline_path(cache_dir=None) -> pathlib.Path | None:
    """Where the search experiments' default float baseline is cached.

    Forms the key exactly as :func:`mohaq_jax.orchestration.prepare.baseline_dir` does for the
    default flags (default model, training settings and eSpeak corpus).
    """
    import dataclasses as _dc

    from mohaq_jax import train
    from mohaq_jax.orchestration import prepare
    from mohaq_jax.settings import config as config_lib

    cfg = config_lib.ExperimentConfig()
    if cache_dir is not None:
        cfg = _dc.replace(cfg, data=_dc.replace(cfg.data, cache_dir=str(cache_dir)))
    corpus = prepare.load_data(cfg.data, progress=False)
    model_cfg = prepare.model_config(cfg.model, corpus)
    train_cfg = prepare.train_config(cfg.training)
    folder = prepare.baseline_dir(cfg, corpus, model_cfg, train_cfg)
    return pathlib.Path(folder) / train.BASELINE_FILE


def refuse(message: str):
    """A user error: one line on stderr, exit status 2."""
    print(f"eval_transcribed: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


def find_baseline(cache_dir=None) -> pathlib.Path:
    """The one finished baseline trained on the default-size eSpeak corpus.

    Every ``CACHE/baselines/*/baseline.msgpack`` is considered (whatever the folder
    naming); tiny smoke-test corpora and other data sets are passed over. Several
    candidates (other training settings or models) are ambiguous: which one is meant
    is the user's choice, so they are listed and none is taken.

    Raises:
      SystemExit(2): none, or more than one, is there (says what to do).
    """
    from mohaq_jax import train
    from mohaq_jax.data import corpus as corpus_lib
    from mohaq_jax.runtime import checkpoint

    root = pathlib.Path(cache_dir or corpus_lib.default_cache_dir()) / "baselines"
    found = []
    for path in root.glob("*/" + train.BASELINE_FILE):
        meta = checkpoint.read_meta(path)
        data = meta.get("data_settings", {})
        size = data.get("settings", {}).get("size", "default")
        if meta.get("finished") and data.get("name") == "espeak" and size == "default":
            found.append(path)
    if not found:
        refuse(
            f"no finished eSpeak baseline under {root}; train one first "
            "(python -m experiments.train_baseline, or any search experiment) "
            "or pass --baseline"
        )
    if len(found) > 1:
        names = ", ".join(str(p.parent) for p in sorted(found))
        refuse(
            f"{len(found)} finished eSpeak baselines under {root} and none is the "
            f"default flags' one; pass --baseline with one of: {names}"
        )
    return found[0]


def evaluate_by_speaker(params, model_config, corpus) -> dict:
    """PER and frame error over all test utterances and per speaker."""
    split = corpus.test
    from mohaq_jax import train
    from mohaq_jax.data import corpus as corpus_lib

    rows = {"all": (split, train.evaluate(params, model_config, split, corpus.fold39))}
    for speaker in sorted(set(split.speakers)):
        keep = [i for i, s in enumerate(split.speakers) if s == speaker]
        part = corpus_lib.Split(
            [split.features[i] for i in keep],
            [split.labels[i] for i in keep],
            [split.speakers[i] for i in keep],
            [split.utt_ids[i] for i in keep],
        )
        rows[speaker] = (
            part,
            train.evaluate(params, model_config, part, corpus.fold39),
        )
    return {
        name: {
            "utterances": len(part),
            "seconds": part.n_frames * corpus.settings["feature_config"]["hop"],
            "per": rates["per"],
            "fer": rates["fer"],
        }
        for name, (part, rates) in rows.items()
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    corpus_dir = args.corpus_dir or shared_recordings()
    labels = args.labels or ("align" if args.corpus_dir else "given")
    if not pathlib.Path(corpus_dir).is_dir():
        refuse(f"--corpus-dir {corpus_dir}: no such folder")
    from mohaq_jax import train  # JAX, once the flags and folders are good
    from mohaq_jax.data import load_corpus
    from mohaq_jax.models import sru

    corpus = load_corpus(
        "transcribed",
        corpus_dir=corpus_dir,
        labels=labels,
        phone_tier=args.phone_tier,
        all_test=True,
        cache_dir=args.cache_dir,
        verbose=not args.no_progress,
    )
    print(corpus.notice)
    if args.baseline:
        path = pathlib.Path(args.baseline)
    else:
        path = default_baseline_path(args.cache_dir)
        if path is None or not path.exists():
            path = find_baseline(args.cache_dir)
    if path.is_dir():
        path = path / train.BASELINE_FILE
    params, meta = train.load_params(path)
    model_config = sru.Config(**meta["model_config"])
    if (model_config.n_features, model_config.n_classes) != (
        corpus.n_features,
        corpus.n_classes,
    ):
        refuse(
            f"--baseline {path}: model for {model_config.n_features} features / "
            f"{model_config.n_classes} classes, corpus has {corpus.n_features} / "
            f"{corpus.n_classes}"
        )
    trained_on = meta["data_settings"]["name"]
    dev = meta["best_dev_rates"]
    rows = evaluate_by_speaker(params, model_config, corpus)
    synthetic = trained_on == "espeak"
    print(
        f"float baseline {path} (trained on the {trained_on} corpus"
        + (", synthesized speech" if synthetic else "")
        + f", {meta['epoch']} epochs; its own dev PER (smoothed) {dev['per']:.4f}, "
        f"frame error {dev['fer']:.4f})"
    )
    print(f"evaluated on real speech: {corpus_dir} (labels: {labels})")
    print("| part | utterances | seconds | frame error | PER (smoothed) |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['utterances']} | {row['seconds']:.1f} | "
            f"{row['fer']:.4f} | {row['per']:.4f} |"
        )
    gap = rows["all"]["per"] - dev["per"]
    print(
        f"domain gap: PER (smoothed) {dev['per']:.4f} on its own dev set -> "
        f"{rows['all']['per']:.4f} on these real recordings ({gap:+.4f})"
        + (
            "; a model trained on synthesized speech, not a real-speech result"
            if synthetic
            else ""
        )
    )
    if args.json:
        doc = {
            "baseline": str(path),
            "trained_on": trained_on,
            "baseline_dev": dev,
            "corpus_dir": str(corpus_dir),
            "labels": labels,
            "notice": corpus.notice,
            "per_read_by": "smoothed",  # no decoder here: both PERs are smoothed
            "rows": rows,
        }
        atomic.write_text(args.json, json.dumps(doc, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main, prog="eval_transcribed"))
