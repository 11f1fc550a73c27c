"""Faults injected into every checkpoint kind: each is recovered or refused in one line.

Kinds: the search checkpoint (``search_state.msgpack``, written every generation),
the float baseline checkpoint (``baseline.msgpack``; while training it is the
training checkpoint, resumed after an interruption), and any file a writer killed
with SIGKILL was replacing. For each fault the outcome is one of two: recovered with
results identical to an uninterrupted run, or refused with one line that names the
file and the way out (exit status 2 under the command line); never a traceback, a
silently different result, or a lost finished generation.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from mohaq_jax import hardware, train
from mohaq_jax.data.corpus import Corpus, Split
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import sru
from mohaq_jax.orchestration import cli
from mohaq_jax.runtime import atomic, checkpoint
from mohaq_jax.search import mohaq
from tests.conftest import tiny_speech

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- faults ---------------------------------------------------------------------
def truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def corrupt(path):
    """Flips one byte in the middle of the file (inside the arrays)."""
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def delete(path):
    os.remove(path)


def one_line_refusal(fn, capsys) -> str:
    """Runs ``fn`` as the command line does; returns its one error line (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.guarded(fn, prog="run")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- the search checkpoint -------------------------------------------------------
@pytest.fixture(scope="module")
def parts():
    cfg = sru.Config(n_features=5, n_classes=6, hidden=6, n_layers=2, n_proj=3)
    params, calib, batch = tiny_speech(sru, cfg, [12, 9, 6], 3)
    return cfg, params, calib, genome.silago_space(sru.sites(cfg)), batch


def problem_of(parts, params=None, calib=None, batch=None, **settings):
    cfg, base_params, base_calib, space, base_batch = parts
    config = mohaq.SearchConfig(
        **{
            "pop_size": 6,
            "n_offspring": 3,
            "n_generations": 3,
            "seed": 1,
            "max_error": 1.0,
            "memory_limit_mb": 1.0,
            **settings,
        }
    )
    evaluator = evaluate.PopulationEvaluator(
        cfg,
        space,
        np.arange(6),
        base_params if params is None else params,
        base_calib if calib is None else calib,
        chunk_size=3,
        genome_batch=3,
    )
    return mohaq.QuantizationProblem(
        evaluator,
        hardware.get_platform("silago").make_cost_fn(space),
        base_batch if batch is None else batch,
        config,
        ideal=[0.0, -4.0, 0.0],
        nadir=[1.0, -1.0, 1e5],
    )


@pytest.fixture(scope="module")
def uninterrupted(parts, tmp_path_factory):
    return mohaq.run_search(
        problem_of(parts), tmp_path_factory.mktemp("full"), progress=False
    )


@pytest.fixture(scope="module")
def crash_checkpoint(parts, tmp_path_factory):
    """The checkpoint of a search killed after generation 2 (its bytes)."""
    out = tmp_path_factory.mktemp("crashed")
    mohaq.run_search(problem_of(parts), out, progress=False, stop_after=2)
    return open(os.path.join(out, mohaq.STATE_FILE), "rb").read()


@pytest.fixture
def crashed(crash_checkpoint, tmp_path):
    """A fresh copy of the crashed search's folder: the folder and checkpoint path."""
    path = os.path.join(tmp_path, mohaq.STATE_FILE)
    with open(path, "wb") as f:
        f.write(crash_checkpoint)
    return tmp_path, path


def same_result(a, b, rtol=0.0):
    np.testing.assert_array_equal(a.genomes, b.genomes)
    np.testing.assert_array_equal(a.front, b.front)
    for name in a.metrics:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], rtol=rtol)


def test_a_crash_loses_no_finished_generation(crashed):
    _, path = crashed
    assert checkpoint.read_meta(path)["generation"] == 2


@pytest.mark.parametrize("fault", [truncate, corrupt])
def test_damaged_search_checkpoint_is_refused_in_one_line(
    parts, crashed, fault, capsys
):
    out, path = crashed
    fault(path)
    damaged = open(path, "rb").read()
    err = one_line_refusal(
        lambda: mohaq.run_search(problem_of(parts), out, resume=True, progress=False),
        capsys,
    )
    assert f"checkpoint {path} is damaged" in err
    assert "without --resume" in err and "delete it" in err
    assert open(path, "rb").read() == damaged  # refused, not replaced


def test_deleted_search_checkpoint_starts_over_with_the_same_result(
    parts, crashed, uninterrupted
):
    out, path = crashed
    delete(path)
    resumed = mohaq.run_search(problem_of(parts), out, resume=True, progress=False)
    assert not resumed.resumed
    same_result(resumed, uninterrupted)


def test_resume_after_a_crash_equals_the_uninterrupted_search(
    parts, crashed, uninterrupted
):
    out, path = crashed
    # a writer killed mid-write leaves a temporary file beside the checkpoint
    with open(os.path.join(out, f".tmp-{mohaq.STATE_FILE}-x"), "wb") as f:
        f.write(open(path, "rb").read()[:100])
    resumed = mohaq.run_search(problem_of(parts), out, resume=True, progress=False)
    assert resumed.resumed
    same_result(resumed, uninterrupted)


def _other_params(parts):
    return jax.tree.map(lambda x: x * 1.01, parts[1])


def _other_calib(parts):
    return dataclasses.replace(parts[2], a_clip=parts[2].a_clip * 1.01)


def _other_batch(parts):
    feats, labels, lengths = parts[4]
    return feats + 0.01, labels, lengths


@pytest.mark.parametrize(
    "testcase_name, changed, field",
    [
        ("baseline", lambda p: {"params": _other_params(p)}, "baseline_params"),
        ("calibration", lambda p: {"calib": _other_calib(p)}, "calibration"),
        ("data", lambda p: {"batch": _other_batch(p)}, "data"),
        ("explicit max error", lambda p: {"max_error": 0.9}, "constraints"),
        ("seed", lambda p: {"seed": 2}, "seed"),
        ("metric", lambda p: {"error_metric": "frame_error"}, "metric"),
    ],
)
def test_resume_refuses_a_checkpoint_scored_otherwise(
    parts, crashed, testcase_name, changed, field, capsys
):
    out, path = crashed
    err = one_line_refusal(
        lambda: mohaq.run_search(
            problem_of(parts, **changed(parts)), out, resume=True, progress=False
        ),
        capsys,
    )
    assert f"a different {field} than this run" in err, testcase_name
    assert path in err


def test_batching_of_the_same_data_is_not_a_difference(parts, crashed, uninterrupted):
    """Scores do not depend on how the dev data are batched, so neither does the
    identity: the same utterances in two batches resume the search (the loss, a sum
    of floats in another order, may differ in the last bit; the errors cannot)."""
    out, _ = crashed
    feats, labels, lengths = parts[4]
    rebatched = [
        (feats[:1], labels[:1], lengths[:1]),
        (feats[1:], labels[1:], lengths[1:]),
    ]
    resumed = mohaq.run_search(
        problem_of(parts, batch=rebatched), out, resume=True, progress=False
    )
    assert resumed.resumed
    same_result(resumed, uninterrupted, rtol=1e-6)
    np.testing.assert_array_equal(
        resumed.metrics["error"], uninterrupted.metrics["error"]
    )


# ---- the float baseline / training checkpoint -------------------------------------
N_CLASSES, N_FEATURES = 4, 6
MODEL = sru.Config(
    n_features=N_FEATURES, n_classes=N_CLASSES, hidden=8, n_layers=1, dropout=0.1
)
TRAINING = train.TrainConfig(epochs=2, batch_size=8, lr=1e-2, pad_multiple=32)


def tiny_corpus() -> Corpus:
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(N_CLASSES, N_FEATURES)).astype(np.float32)

    def split(n, tag):
        labels = [np.repeat(rng.integers(0, N_CLASSES, 4), 4) for _ in range(n)]
        feats = [
            (templates[lab] + 0.5 * rng.normal(size=(16, N_FEATURES))).astype(
                np.float32
            )
            for lab in labels
        ]
        labels = [lab.astype(np.int32) for lab in labels]
        return Split(feats, labels, ["spk"] * n, [f"{tag}{i}" for i in range(n)])

    return Corpus(
        name="synthetic",
        train=split(16, "tr"),
        dev=split(8, "dv"),
        test=split(8, "te"),
        classes=tuple(f"c{i}" for i in range(N_CLASSES)),
        fold39=np.arange(N_CLASSES, dtype=np.int32),
        n_features=N_FEATURES,
        synthetic=True,
        notice="",
        settings={"seed": 0},
    )


@pytest.fixture(scope="module")
def corpus():
    return tiny_corpus()


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    """A finished baseline: its folder and the checkpoint's bytes."""
    folder = tmp_path_factory.mktemp("baseline")
    train.get_or_train_baseline(corpus, MODEL, TRAINING, folder, progress=False)
    return folder, open(os.path.join(folder, train.BASELINE_FILE), "rb").read()


def _copy_of(baseline, tmp_path) -> str:
    folder, data = baseline
    path = tmp_path / train.BASELINE_FILE
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("fault", [truncate, corrupt])
def test_damaged_baseline_is_refused_in_one_line(
    corpus, baseline, tmp_path, fault, capsys
):
    path = _copy_of(baseline, tmp_path)
    fault(path)
    damaged = open(path, "rb").read()
    err = one_line_refusal(
        lambda: train.get_or_train_baseline(
            corpus, MODEL, TRAINING, tmp_path, progress=False
        ),
        capsys,
    )
    assert f"checkpoint {path} is damaged" in err and "--retrain-baseline" in err
    assert open(path, "rb").read() == damaged  # never replaced silently


def test_damaged_baseline_is_retrained_on_request(corpus, baseline, tmp_path):
    path = _copy_of(baseline, tmp_path)
    corrupt(path)
    train.get_or_train_baseline(
        corpus, MODEL, TRAINING, tmp_path, retrain=True, progress=False
    )
    assert open(path, "rb").read() == baseline[1]


def test_deleted_baseline_is_trained_again_identically(corpus, baseline, tmp_path):
    path = _copy_of(baseline, tmp_path)
    delete(path)
    _, info = train.get_or_train_baseline(
        corpus, MODEL, TRAINING, tmp_path, progress=False
    )
    assert not info["loaded"]
    assert open(path, "rb").read() == baseline[1]


def test_interrupted_training_resumes_to_the_same_bytes(corpus, baseline, tmp_path):
    path = str(tmp_path / train.BASELINE_FILE)
    train.fit(corpus, MODEL, TRAINING, path, until_epoch=1, progress=False)
    assert not checkpoint.read_meta(path)["finished"]  # the epoch is not lost
    _, info = train.get_or_train_baseline(
        corpus, MODEL, TRAINING, tmp_path, progress=False
    )
    assert info["resumed_from"] == 1
    assert open(path, "rb").read() == baseline[1]


# ---- a writer killed with SIGKILL, and two processes sharing one cache -----------
WRITER = textwrap.dedent(
    """
    import sys
    from mohaq_jax.runtime import atomic
    path, first, second = sys.argv[1:]
    versions = [open(first, "rb").read(), open(second, "rb").read()]
    n = 0
    while True:
        atomic.write_bytes(path, versions[n % 2])
        n += 1
        print("written", flush=True)
    """
)


def test_a_writer_killed_mid_write_leaves_a_whole_checkpoint(tmp_path):
    versions = []
    for i in range(2):  # two checkpoints of a few MB: writes take a while
        state = {"w": np.full((400_000,), float(i), np.float32)}
        data = checkpoint.to_bytes(state, {"version": i})
        (tmp_path / f"v{i}").write_bytes(data)
        versions.append(data)
    path = tmp_path / "ckpt.msgpack"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, tmp_path / "v0", tmp_path / "v1"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    for _ in range(3):  # a few whole writes, then a kill during the next one
        assert writer.stdout.readline() == b"written\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert open(path, "rb").read() in versions
    state, meta = checkpoint.load(path)
    np.testing.assert_array_equal(state["w"], meta["version"])


LOCKED_BUILD = textwrap.dedent(
    """
    import os, sys
    from mohaq_jax.runtime import atomic
    path, log = sys.argv[1:]
    with atomic.locked(path, waiting="waiting"):
        print("locked", flush=True)
        if not os.path.exists(path):  # the re-check once the lock is held
            with open(log, "a") as f:
                f.write(f"built by {os.getpid()}\\n")
            sys.stdin.readline()  # a long training: until the test says so
            atomic.write_text(path, "baseline")
    print(open(path).read(), flush=True)
    """
)


def test_two_processes_build_a_shared_baseline_once(tmp_path):
    path, log = tmp_path / "baseline.msgpack", tmp_path / "log"

    def start():
        return subprocess.Popen(
            [sys.executable, "-c", LOCKED_BUILD, path, log],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": REPO},
        )

    first = start()
    assert first.stdout.readline() == b"locked\n"  # building
    second = start()
    assert second.stdout.readline() == b"waiting\n"  # blocked on the lock
    outputs = [first.communicate(b"done\n")[0], second.communicate()[0]]
    assert [first.returncode, second.returncode] == [0, 0]
    assert outputs == [b"baseline\n", b"locked\nbaseline\n"]
    assert len(log.read_text().splitlines()) == 1  # built once


def test_get_baseline_trains_under_the_lock(monkeypatch, tmp_path):
    """prepare.get_baseline holds the baseline's lock while it loads or trains."""
    import fcntl

    from mohaq_jax.orchestration import prepare
    from mohaq_jax.settings import config

    seen = {}

    def fake_train(corpus, model_cfg, train_cfg, ckpt_dir, **kwargs):
        lock = os.path.join(ckpt_dir, train.BASELINE_FILE) + ".lock"
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen["locked"] = False
            except BlockingIOError:
                seen["locked"] = True
        return {}, {"epoch": 1, "best_dev_per": 0.5, "loaded": True}

    monkeypatch.setattr(train, "get_or_train_baseline", fake_train)
    cfg = config.ExperimentConfig()
    cfg = dataclasses.replace(
        cfg,
        training=dataclasses.replace(cfg.training, baseline_dir=str(tmp_path)),
        output=dataclasses.replace(cfg.output, progress=False),
    )
    prepare.get_baseline(cfg, tiny_corpus())
    assert seen == {"locked": True}


def test_atomic_writes_leave_the_old_file_on_error(tmp_path):
    path = tmp_path / "report.md"
    atomic.write_text(path, "old")
    with pytest.raises(RuntimeError), atomic.atomic_open(path) as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.md"]


@pytest.mark.parametrize("script", ["timit_silago", "vision_mohaq"])
def test_a_damaged_search_checkpoint_is_refused_before_any_work(
    script, crashed, monkeypatch, capsys
):
    import importlib

    from mohaq_jax.orchestration import pipeline, vision_search

    def work(*args):
        raise AssertionError("work started before the checkpoint was read")

    monkeypatch.setattr(pipeline, "run_mohaq", work)
    monkeypatch.setattr(vision_search, "run", work)
    out, path = crashed
    truncate(path)
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"experiments.{script}").main(
            ["--out", str(out), "--resume"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {path} is damaged" in err


def test_vgg_baseline_trains_under_the_lock(monkeypatch, tmp_path):
    """vision_search.float_baseline holds the VGG baseline's lock while it trains."""
    import fcntl

    from mohaq_jax.orchestration import vision_search
    from mohaq_jax.retrain import vision

    seen = {}

    def fake_fit(data, model_cfg, train_cfg, progress=True):
        (lock,) = [p for p in os.listdir(tmp_path) if p.endswith(".lock")]
        with open(tmp_path / lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen["locked"] = False
            except BlockingIOError:
                seen["locked"] = True
        raise RuntimeError("stop after the check")

    monkeypatch.setattr(vision, "fit", fake_fit)
    cfg = vision_search.default_config()
    cfg = dataclasses.replace(
        cfg,
        training=dataclasses.replace(cfg.training, baseline_dir=str(tmp_path)),
        output=dataclasses.replace(cfg.output, progress=False),
    )
    data = vision_search.load_data(cfg.data)
    with pytest.raises(RuntimeError, match="stop after the check"):
        vision_search.float_baseline(cfg, data, vision_search.model_config(cfg, data))
    assert seen == {"locked": True}
