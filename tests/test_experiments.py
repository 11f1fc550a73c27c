"""The experiment scripts: flags, early one-line errors, and a tiny end-to-end run.

The tiny run's artifacts (cache, baseline, two searches with one seed) are shared by
the module-scoped fixture ``tiny_runs``; every other end-to-end check reads them.
"""

import contextlib
import csv
import importlib
import importlib.util
import io
import json
import os

import numpy as np
import pytest

from mohaq_jax.orchestration import cli, prepare
from mohaq_jax.settings import config

SCRIPTS = [
    "timit_silago",
    "timit_bitfusion",
    "timit_compression",
    "train_baseline",
    "switching_sru",
    "switching_vgg",
    "vision_mohaq",
]

TINY_DATA = ["--espeak-size", "tiny", "--hidden", "16", "--layers", "1", "--proj", "0"]
TINY_TRAIN = ["--epochs", "1"]
TINY_SEARCH = ["--pop", "6", "--offspring", "3", "--generations", "2"]
TINY_SEARCH += ["--calib-utts", "4", "--calib", "max", "--bootstrap", "200"]
TINY_SEARCH += ["--no-progress"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_flag_and_default(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text or "--baseline-dir" in text
    # every option's help (its own lines up to the next option) shows a default
    blocks = text.split("options:", 1)[1].split("\n  -")[1:]
    for block in blocks:
        if block.startswith("h, --help"):
            continue
        assert "(default:" in " ".join(block.split()), f"{name}: -{block.split()[0]}"


def _offered_flags(name, capsys) -> set[str]:
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out.split("options:", 1)[1]
    return {line.split()[0].rstrip(",") for line in text.splitlines()
            if line.startswith("  -")}  # fmt: skip


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_experiment_flag_comes_from_the_flag_table(name, capsys):
    table = {flag.flag: flag for flag in cli.FLAGS}
    offered = _offered_flags(name, capsys) - {"-h"}
    assert offered and offered <= set(table), sorted(offered - set(table))
    images = {f for f in offered if table[f].images}
    assert not images or name in ("switching_vgg", "vision_mohaq"), sorted(images)


def test_the_image_experiments_share_their_data_flags(capsys):
    vgg = _offered_flags("switching_vgg", capsys)
    search = _offered_flags("vision_mohaq", capsys)
    assert {"--cifar-dir", "--max-train-images"} <= vgg & search
    assert "--dataset" not in search and "--max-train" not in search


def test_one_name_per_flag_everywhere():
    # a flag name sets one config field, and a field has one flag
    by_flag, by_field = {}, {}
    for flag in cli.FLAGS:
        assert by_flag.setdefault(flag.flag, flag.target) == flag.target or (
            flag.flag == "--seed"  # the experiment's own seed: search or retraining
        )
        assert by_field.setdefault(flag.target, flag.flag) == flag.flag
    # every field of every settings dataclass has a flag (and so a --help line)
    for section, kind in cli.SECTION_TYPES.items():
        for field in kind.__dataclass_fields__:
            assert f"{section}.{field}" in by_field, f"{section}.{field} has no flag"


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if any data, baseline or search work starts."""

    def boom(*args, **kwargs):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(prepare, "load_data", boom)
    from mohaq_jax.orchestration import pipeline, switching_runs

    monkeypatch.setattr(pipeline, "run_mohaq", boom)
    monkeypatch.setattr(switching_runs, "run_sru", boom)
    monkeypatch.setattr(switching_runs, "run_vgg", boom)
    from mohaq_jax.orchestration import vision_search

    monkeypatch.setattr(vision_search, "run", boom)


@pytest.mark.parametrize(
    "script, argv, expected",
    [
        ("timit_silago", ["--pop", "-5"], "--pop must be >= 2, got -5"),
        ("timit_silago", ["--timit-dir", "/nonexistent"], "--timit-dir /nonexistent"),
        ("timit_bitfusion", ["--chunk-size", "0"], "--chunk-size must be >= 1"),
        ("timit_silago", ["--devices", "2", "--data-shards", "3"], "--data-shards 3"),
        ("timit_silago", ["--model", "vgg"], "--model vgg: not a registered speech"),
        ("timit_silago", ["--model", "gru"], "registered: sru, lstm"),
        ("timit_silago", ["--per", "best"], "--per: invalid choice: 'best'"),
        ("timit_silago", ["--batch-frames", "8"], "--batch-frames must be >= 16"),
        ("timit_silago", ["--algorithm", "cmaes"], "--algorithm: invalid choice"),
        ("timit_silago", ["--compare", "nsga2"], "'nsga2' is not another algorithm"),
        ("timit_silago", ["--compare", "de,cmaes"], "'cmaes' is not another"),
        (
            "timit_bitfusion",
            ["--compare", "de", "--beacons"],
            "--compare runs plain searches",
        ),
        ("timit_silago", ["--data", "transcribed"], "needs --corpus-dir DIR"),
        (
            "timit_silago",
            ["--model", "lstm", "--paper-model"],
            "--paper-model is the authors' SRU",
        ),
        ("timit_compression", ["--margin", "-1"], "--margin must be in [0, 1]"),
        ("timit_silago", ["--max-error", "2"], "--max-error must be an error rate"),
        ("timit_silago", ["--error-margin", "5"], "--error-margin must be in [0, 1]"),
        ("timit_silago", ["--out", "/proc/x"], "--out /proc/x: cannot create it"),
        (
            "timit_bitfusion",
            ["--beacon-max-ptq-error", "3"],
            "--beacon-max-ptq-error must be an error rate",
        ),
        ("timit_silago", ["--beacon-min-speedup", "-1"], "--beacon-min-speedup"),
        ("switching_sru", ["--calib-utts", "0"], "--calib-utts must be >= 1, got 0"),
        ("timit_silago", ["--devices", "4096"], "--devices 4096: only"),
        ("train_baseline", ["--epochs", "0"], "--epochs must be >= 1, got 0"),
        ("switching_sru", ["--runs", "u4,x9"], "--runs u4,x9: unknown run(s) x9"),
        ("timit_silago", ["--pop", "many"], "--pop: invalid int value: 'many'"),
        ("timit_silago", ["--calib", "best"], "--calib: invalid choice: 'best'"),
        ("vision_mohaq", ["--image-size", "4"], "--image-size must be a positive"),
        ("vision_mohaq", ["--cifar-dir", "/nonexistent"], "--cifar-dir /nonexistent"),
        ("switching_vgg", ["--cifar-dir", "/nonexistent"], "--cifar-dir /nonexistent"),
        ("switching_vgg", ["--max-train-images", "0"], "--max-train-images must be"),
        ("switching_vgg", ["--image-noise", "-1"], "--image-noise must be >= 0"),
        ("switching_vgg", ["--seeds", "0"], "--seeds must be >= 1, got 0"),
        ("vision_mohaq", ["--max-train-images", "0"], "--max-train-images must be"),
        ("timit_silago", ["--max-train-images", "5"], "unrecognized arguments"),
        ("timit_silago", ["--hid", "5"], "unrecognized arguments: --hid"),
        (
            "timit_silago",
            ["--export-qwix", "--model", "lstm"],
            "--model lstm is not a Flax Linen module",
        ),
        (
            "timit_bitfusion",
            ["--export-qwix", "--beacons"],
            "--export-qwix deploys PTQ solutions: use it without --beacons",
        ),
        ("vision_mohaq", ["--export-qwix"], "unrecognized arguments: --export-qwix"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_any_work(
    script, argv, expected, no_work, capsys
):
    module = importlib.import_module(f"experiments.{script}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err and "error:" in err


FLAG_ERROR = """
import sys
from experiments import {script}
try:
    {script}.main({argv!r})
except SystemExit as exit:
    loaded = sorted(m for m in ("jax", "numpy", "scipy") if m in sys.modules)
    print(exit.code, loaded)
"""


@pytest.mark.parametrize(
    "script, argv",
    [
        ("timit_silago", ["--pop", "0"]),
        ("timit_compression", ["--out", "/proc/x"]),
        ("vision_mohaq", ["--max-error", "2"]),
        ("switching_sru", ["--calib-utts", "0"]),
        ("switching_vgg", ["--runs", "x"]),
        ("train_baseline", ["--epochs", "0"]),
        ("timit_silago", ["--export-qwix", "--model", "lstm"]),
        ("eval_transcribed", ["--corpus-dir", "/nonexistent"]),
    ],
)
def test_a_flag_error_imports_no_jax(script, argv):
    """Flags are checked before JAX, numpy or the data code is imported, so a typo
    costs a fraction of a second (JAX alone takes over a second to import)."""
    import subprocess
    import sys

    code = FLAG_ERROR.format(script=script, argv=argv)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": repo},
        cwd=repo,
    )
    assert run.stdout == "2 []\n", run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and "error:" in run.stderr


def test_what_flags_are_checked_against_agrees_with_the_library():
    """The command line checks --model and --espeak-size against tables that import
    nothing; they must say what the model modules and the corpus code say."""
    from mohaq_jax import models
    from mohaq_jax.data import espeak_voices

    for name in models.MODELS:
        assert models.TASKS[name] == getattr(models.get_model(name), "TASK", "frames")
    assert set(config.AVAILABLE["espeak_size"]) == set(espeak_voices.SIZES)


def test_out_under_a_regular_file_is_refused_early(tmp_path, no_work, capsys):
    (tmp_path / "file").write_text("x")
    from experiments import timit_silago

    with pytest.raises(SystemExit) as exit_info:
        timit_silago.main(["--out", str(tmp_path / "file" / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file, not a folder" in err


def test_debug_shows_the_traceback(no_work):
    from experiments import timit_silago

    with pytest.raises(config.ConfigError, match="--pop"):
        timit_silago.main(["--pop", "-5", "--debug"])


def test_config_is_built_from_flags_without_namespace():
    parser = cli.build_parser("x", cli.SEARCH_SECTIONS, defaults={"--out": "o"})
    cfg = cli.config_from_args(
        parser.parse_args(["--pop", "8", "--unidirectional", "--no-progress"])
    )
    assert isinstance(cfg, config.ExperimentConfig)
    assert cfg.search.pop == 8 and cfg.model.bidirectional is False
    assert cfg.output.progress is False and cfg.output.out == "o"
    # defaults live in the dataclasses: the parser shows the same values
    assert cfg.model == config.ModelSettings(bidirectional=False)
    with pytest.raises(AttributeError):  # frozen
        cfg.search.pop = 3


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny SiLago searches with one seed; the second in a fresh folder with
    --resume (nothing to resume: it must say so and start from scratch), and its
    front deployed with qwix (--export-qwix)."""
    import jax

    root = tmp_path_factory.mktemp("tiny")
    os.environ["MOHAQ_CACHE"] = str(root / "cache")
    from experiments import timit_silago

    # The second run compiles the same programs again: a compilation cache turns
    # that into loads (about 30 s of CPU -> 4 s).
    saved = {
        k: getattr(jax.config, k)
        for k in (
            "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes",
        )
    }
    jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    try:
        common = TINY_DATA + TINY_TRAIN + TINY_SEARCH
        first = timit_silago.main(common + ["--out", str(root / "a")])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            second = timit_silago.main(
                common
                + ["--out", str(root / "b"), "--resume", "--compare", "simple_ga"]
                # after the search (pareto.csv stays the same); needs the extra
                + (["--export-qwix"] if importlib.util.find_spec("qwix") else [])
            )
    finally:
        del os.environ["MOHAQ_CACHE"]
        for k, v in saved.items():
            jax.config.update(k, v)
    return {
        "root": root,
        "first": first,
        "second": second,
        "second_printed": printed.getvalue(),
    }


def test_tiny_end_to_end_silago(tiny_runs):
    out, summary = tiny_runs["root"] / "a", tiny_runs["first"]
    for name in (
        "pareto.csv",
        "pareto.json",
        "archive.csv",
        "report.md",
        "hypervolume.png",
        "pareto_error_vs_speedup.png",
        "search_state.msgpack",
    ):
        assert os.path.getsize(out / name) > 0, name
    doc = json.loads((out / "pareto.json").read_text())
    assert "NOT TIMIT" in doc["notice"]
    assert doc["settings"]["search_config"]["pop_size"] == 6
    assert 6 <= summary["n_evaluated"] <= 6 + 2 * 3  # a 9-genome space may run out
    assert summary["n_evaluations"] == 6 + 2 * 3
    text = (out / "report.md").read_text()
    assert "NOT TIMIT" in text
    # counts said one way; constraints as text
    assert (
        f"{summary['n_evaluations']} evaluations ({summary['n_evaluated']} unique"
        in (text)
    )
    assert "## Constraints" in text and "dev phone error <= " in text


def test_same_seed_gives_identical_pareto_csv(tiny_runs):
    root = tiny_runs["root"]
    assert (root / "a" / "pareto.csv").read_bytes() == (
        root / "b" / "pareto.csv"
    ).read_bytes()
    assert (root / "a" / "archive.csv").read_bytes() == (
        root / "b" / "archive.csv"
    ).read_bytes()


def test_compare_reports_each_algorithm_at_the_same_budget(tiny_runs):
    """--compare simple_ga (second run): its table rows recomputed from the runs."""
    summary = tiny_runs["second"]
    runs, problem = summary["runs"], summary["problem"]
    assert list(runs) == ["nsga2", "simple_ga"]
    # pop + generations * offspring, or the whole space when smaller (tiny: 3^2)
    budget = min(6 + 2 * 3, int(np.prod(problem.space.upper + 1)))
    text = (tiny_runs["root"] / "b" / "report.md").read_text()
    assert "## Search algorithms at the same budget" in text
    assert (
        "## Search algorithms"
        not in (tiny_runs["root"] / "a" / "report.md").read_text()
    )
    for name, result in runs.items():
        assert len(result.genomes) == budget
        m = result.metrics
        ok = np.asarray(m["error"] <= problem.config.max_error)
        if problem.config.memory_limit_mb is not None:
            ok &= m["memory_mb"] <= problem.config.memory_limit_mb
        np.testing.assert_array_equal(result.feasible, ok)
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) == budget and int(cells[2]) == int(ok.sum())
        assert int(cells[3]) == int(result.front.sum())
        if ok.any():
            best = int(np.flatnonzero(ok)[np.argmax(m["speedup"][ok])])
            assert float(cells[5]) == pytest.approx(m["speedup"][best], rel=1e-3)
            assert float(cells[6]) == pytest.approx(m["error"][best], abs=1e-4)
    # the same problem: a genome both evaluated has the same metrics in both
    a, b = runs["nsga2"], runs["simple_ga"]
    keys = {g.tobytes(): i for i, g in enumerate(a.genomes)}
    common = [
        (keys[g.tobytes()], j) for j, g in enumerate(b.genomes) if g.tobytes() in keys
    ]
    for i, j in common:
        assert a.metrics["error"][i] == b.metrics["error"][j]


def _qwix_dev_counts(tiny_runs, bits):
    """Phone edits and phones of qwix's PTQ of the tiny SRU on dev, built here from
    ``bits`` (site -> {"w", "a"}): hand-written rules, one unpadded utterance at a
    time, counted by the search's own reading (decoder, folding, --per)."""
    import functools

    import jax
    import jax.numpy as jnp
    import qwix
    from qwix._src.core import conv_general, dot_general, einsum

    from mohaq_jax.models import qmodel, sru
    from mohaq_jax.numerics import metrics

    problem = tiny_runs["second"]["problem"]
    ev = problem.evaluator
    space = problem.space
    corpus = prepare.load_data(
        config.DataSettings(
            espeak_size="tiny", cache_dir=str(tiny_runs["root"] / "cache")
        ),
        progress=False,
    )
    qtypes = {
        2: "int2",
        3: "int3",
        4: jnp.int4,
        5: "int5",
        6: "int6",
        7: "int7",
        8: jnp.int8,
    }
    bits_a = jnp.asarray([bits[site.name]["a"] for site in space.layers], jnp.int32)
    clips = np.asarray(qmodel.act_clips(ev.calib, bits_a))
    rules = []
    for i, site in enumerate(space.layers):
        w, a = bits[site.name]["w"], bits[site.name]["a"]
        if w >= 16:
            continue
        q = 2 ** (w - 1) - 1
        rule = dict(
            module_path="/".join(site.weight_path[:-1]),
            weight_qtype=qtypes[w],
            weight_calibration_method=f"absmax,{(q + 0.5) / q}",
        )
        if a < 16:
            r = float(clips[i]) * (2 ** (a - 1) - 0.5) / (2 ** (a - 1) - 1)
            rule.update(act_qtype=qtypes[a], act_calibration_method=f"fixed,{-r},{r}")
        rules.append(qwix.QuantizationRule(**rule))
    slow = dot_general._slow_dot_general  # CPU XLA has no int4 dot
    provider = qwix.PtqProvider(
        rules,
        _dot_general_fn=slow,
        _einsum_fn=functools.partial(einsum.einsum, _qwix_dot_general=slow),
        _conv_general_dilated_fn=conv_general._slow_conv_general_dilated,
    )
    module = qwix.quantize_model(sru.AcousticModel(ev.config), provider)
    feats0 = jnp.asarray(corpus.dev.features[0])
    length0 = jnp.int32(len(feats0))
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), feats0, length0))
    q_params = qwix.quantize_params(ev.params, abstract["params"])
    edits = phones = 0
    for feats, labels in zip(corpus.dev.features, corpus.dev.labels, strict=True):
        n = jnp.asarray([len(feats)], jnp.int32)
        logits = module.apply({"params": q_params}, jnp.asarray(feats), n[0])
        counts = metrics.error_counts(
            logits[None], jnp.asarray(labels)[None], n, ev.fold,
            decoder=ev.decoder, per_mode=ev.per_mode,
        )  # fmt: skip
        edits, phones = edits + int(counts[3]), phones + int(counts[4])
    return edits, phones


def test_export_qwix_reports_every_solution_beside_the_search(tiny_runs):
    pytest.importorskip("qwix")
    out = tiny_runs["root"] / "b"
    with open(out / "pareto.csv") as f:
        front = {int(r["solution"]): r for r in csv.DictReader(f)}
    with open(out / "qwix.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r["solution"]), r["split"]) for r in rows) == sorted(
        (n, split) for n in front for split in ("dev", "test")
    )
    for row in rows:  # the search's side is pareto.csv's
        mine = front[int(row["solution"])]
        error = mine["error"] if row["split"] == "dev" else mine["test_error"]
        assert float(row["search_error"]) == pytest.approx(float(error), abs=1e-6)
        low, high = float(row["search_low"]), float(row["search_high"])
        assert low == pytest.approx(float(mine[f"{row['split']}_error_ci_low"]))
        assert high == pytest.approx(float(mine[f"{row['split']}_error_ci_high"]))
        rate = int(row["qwix_errors"]) / int(row["qwix_total"])
        assert float(row["qwix_error"]) == pytest.approx(rate)
        assert row["inside"] == str(low <= rate <= high)
        assert float(row["qwix_low"]) <= rate <= float(row["qwix_high"])
    text = (out / "report.md").read_text()
    assert "## Deployed with qwix" in text and "What qwix could not express" in text
    assert (
        "Deployed with qwix" not in (tiny_runs["root"] / "a" / "report.md").read_text()
    )
    # one solution's qwix error, recomputed from its bits with qwix directly
    doc = json.loads((out / "qwix.json").read_text())
    row = next(r for r in doc["rows"] if r["split"] == "dev")
    edits, phones = _qwix_dev_counts(tiny_runs, row["bits"])
    assert (edits, phones) == (row["qwix_errors"], row["qwix_total"])


def test_resume_without_checkpoint_says_so(tiny_runs):
    # the second run had --resume on an empty folder
    assert "--resume: no search checkpoint in" in tiny_runs["second_printed"]
    assert "starting from scratch" in tiny_runs["second_printed"]
    assert not tiny_runs["second"]["result"].resumed


def test_pareto_csv_names_genes_and_has_intervals(tiny_runs):
    out, summary = tiny_runs["root"] / "a", tiny_runs["first"]
    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    space = summary["problem"].space
    assert len(rows) == summary["n_pareto"] > 0
    for row in rows:
        genome = [int(v) for v in row["genome"].split()]
        for gene, name in enumerate(space.gene_names):
            assert int(row[f"bits_{name}"]) == space.gene_values[gene][genome[gene]]
        for split in ("dev", "test"):
            low = float(row[f"{split}_error_ci_low"])
            high = float(row[f"{split}_error_ci_high"])
            assert low <= high
            assert row[f"{split}_same_as_float"] in ("True", "False")
        assert low <= float(row["test_error"]) <= high


def test_intervals_agree_with_the_search_counts(tiny_runs):
    """Per-utterance counts sum to the whole-split errors the search reported."""
    summary = tiny_runs["first"]
    result, intervals = summary["result"], summary["intervals"]
    front = np.flatnonzero(result.front)
    np.testing.assert_allclose(
        intervals["dev"]["genomes"]["rate"], result.metrics["error"][front], rtol=1e-5
    )
    np.testing.assert_allclose(
        intervals["test"]["genomes"]["rate"], summary["test_error"], rtol=1e-5
    )
    for split in ("dev", "test"):
        f = intervals[split]["float"]
        assert f["low"][0] <= summary["baselines"][0][f"{split}_error"] <= f["high"][0]
        np.testing.assert_allclose(
            f["rate"][0], summary["baselines"][0][f"{split}_error"], rtol=1e-5
        )


def test_train_baseline_trains_the_baseline_the_search_loads(tiny_runs, capsys):
    from experiments import train_baseline

    cache = tiny_runs["root"] / "cache"
    code = train_baseline.main(
        TINY_DATA + TINY_TRAIN + ["--cache-dir", str(cache), "--no-progress"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    doc = json.loads((tiny_runs["root"] / "a" / "pareto.json").read_text())
    path = doc["settings"]["baseline_checkpoint"]  # what the search loaded
    assert f"loaded {path}" in printed  # loaded, not trained: the same cache key
    # Two named readings: the decoded one is the float error the search reported.
    float_row = doc["baselines"][0]
    assert "best dev PER (smoothed" in printed
    assert f"dev PER: decoded {float_row['dev_error']:.4f}" in printed
    assert f"test PER: decoded {float_row['test_error']:.4f}" in printed
