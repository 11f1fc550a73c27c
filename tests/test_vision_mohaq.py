"""End-to-end: ``python -m experiments.vision_mohaq`` with tiny flags (seconds)."""

import csv
import json
import os

import chex
import jax
import numpy as np
import pytest

from experiments import vision_mohaq
from mohaq_jax import hardware
from mohaq_jax.data.images import ImageSplit
from mohaq_jax.evaluation import genome
from mohaq_jax.models import vgg
from mohaq_jax.orchestration import cli, vision_search
from mohaq_jax.settings import config, flags

TINY_FLAGS = [
    "--image-size", "8", "--conv-widths", "2,2,3,3,4,4", "--fc-widths", "8,8",
    "--max-train-images", "96", "--epochs", "1", "--batch-size", "32",
    "--calib", "max", "--calib-images", "32", "--max-eval", "32", "--eval-batch", "32",
    "--pop", "4", "--offspring", "2", "--generations", "1", "--no-progress",
]  # fmt: skip


def test_main_writes_the_pareto_set(tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = TINY_FLAGS + [
        "--out", str(out), "--baseline-dir", str(tmp_path / "base"),
        "--platform", "reconfig", "--max-error", "1.0", "--compare", "moead",
    ]  # fmt: skip
    summary = vision_mohaq.main(argv)  # the speech pipeline's steps: --compare too
    for name in ("pareto.csv", "pareto.json", "archive.csv", "report.md"):
        assert (out / name).exists(), name
    cached = [p for p in os.listdir(tmp_path / "base") if not p.endswith(".lock")]
    assert len(cached) == 1  # the cached float baseline (beside its lock file)
    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["n_pareto"] >= 1
    # every reported cost is the platform's cost of the reported bits
    space = genome.get_space("reconfig", vgg.sites(summary["problem"].evaluator.config))
    genomes = np.asarray([[int(v) for v in r["genome"].split()] for r in rows])
    costs = hardware.get_platform("reconfig").evaluate(space, genomes)
    np.testing.assert_allclose(
        [float(r["energy_pj"]) for r in rows], costs["energy_pj"], rtol=1e-5
    )
    errors = [float(r["error"]) for r in rows]
    assert errors == sorted(errors) and all(0.0 <= e <= 1.0 for e in errors)
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["settings"]["search_config"]["error_metric"] == "class_error"
    report = (out / "report.md").read_text()
    assert "dev class error <=" in report
    assert "Search algorithms at the same budget" in report
    assert set(summary["runs"]) == {"nsga2", "moead"}
    assert len(summary["runs"]["moead"].genomes) == 4 + 1 * 2  # the same budget
    assert doc["settings"]["run_config"]["data"]["max_train_images"] == 96
    # a second run finds the float baseline in the cache instead of training it
    cfg = vision_search.default_config(
        data={"image_size": 8, "max_train_images": 96},
        vgg={"conv_widths": (2, 2, 3, 3, 4, 4), "fc_widths": (8, 8)},
        training={"epochs": 1, "batch_size": 32, "baseline_dir": str(tmp_path / "base")},
        output={"progress": False},
    )  # fmt: skip
    monkeypatch.setattr(vision_search.vision, "fit", None)  # calling it would fail
    data = vision_search.load_data(cfg.data)
    assert len(data.train) == 96
    params, info = vision_search.float_baseline(
        cfg, data, vision_search.model_config(cfg, data)
    )
    assert info["path"].startswith(str(tmp_path / "base"))
    chex.assert_trees_all_close(params, summary["problem"].evaluator.params)


def test_image_batches_keep_one_shape():
    images = np.arange(5 * 2 * 2 * 1, dtype=np.float32).reshape(5, 2, 2, 1)
    split = ImageSplit(images, np.arange(5, dtype=np.int32))
    batches = vision_search.image_batches(split, 2)
    assert [b[0].shape for b in batches] == [(2, 2, 2, 1)] * 3
    np.testing.assert_array_equal(batches[-1][1], [4, -1])  # padding is not scored
    np.testing.assert_array_equal(batches[-1][0][1], 0.0)
    assert len(vision_search.image_batches(split, 4, limit=3)) == 1


def test_cifar_without_files_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vision_mohaq.main(["--cifar-dir", str(tmp_path)])  # --cifar-dir: CIFAR-10
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CIFAR-10 python batches" in err
    with pytest.raises(SystemExit):
        vision_mohaq.main(["--cifar-dir", str(tmp_path / "absent")])
    assert "--cifar-dir " in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--image-size", "12"], "--image-size must be a positive multiple of 8"),
        (["--conv-widths", "4,4"], "--conv-widths 4,4: the VGG-9 needs 6 widths"),
        (["--fc-widths", "8,0"], "--fc-widths 8,0: widths must be >= 1"),
        (
            ["--conv-widths", "a,b"],
            "--conv-widths: expected comma-separated ints, got 'a,b'",
        ),
        (["--platform", "silago"], "--platform: invalid choice: 'silago'"),
        (["--max-train-images", "0"], "--max-train-images must be >= 1, got 0"),
        (["--calib-images", "0"], "--calib-images must be >= 1, got 0"),
        (["--eval-batch", "0"], "--eval-batch must be >= 1, got 0"),
        (["--max-eval", "0"], "--max-eval must be >= 1, got 0"),
        (["--pop", "1"], "--pop must be >= 2, got 1"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--dataset", "cifar10"], "unrecognized arguments: --dataset"),
        (["--max-train", "5"], "unrecognized arguments: --max-train"),
    ],
)
def test_bad_flags_are_one_line_before_any_work(argv, expected, monkeypatch, capsys):
    monkeypatch.setattr(vision_search, "run", None)  # calling it would fail
    with pytest.raises(SystemExit) as exit_info:
        vision_mohaq.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_flags_build_the_shared_config():
    cfg = cli.config_from_args(
        vision_mohaq.build_parser().parse_args(
            ["--cifar-dir", "c", "--conv-widths", "1,2,3,4,5,6", "--no-progress"]
        )
    )
    assert cfg.data == config.DataSettings(cifar_dir="c")
    assert cfg.vgg == config.VGGSettings(conv_widths=(1, 2, 3, 4, 5, 6))
    assert cfg.output.progress is False
    # the image search's defaults: MOHAQ's 40/10/15 search, 15 epochs, 5 points
    defaults = cli.config_from_args(vision_mohaq.build_parser().parse_args([]))
    assert defaults == vision_search.default_config()
    assert (defaults.search.pop, defaults.search.offspring) == (40, 10)
    assert (defaults.search.generations, defaults.search.error_margin) == (15, 0.05)
    assert (defaults.training.epochs, defaults.training.batch_size) == (15, 64)
    assert defaults.search.platform == "bitfusion"
    assert defaults.output.out == "results/vision_mohaq"
    # every platform the flag offers has objectives, and the reverse
    (platform,) = [f for f in flags.FLAGS if f.flag == "--platform"]
    assert platform.kind == tuple(sorted(vision_search.OBJECTIVES))
    assert config.AVAILABLE["platform"] == platform.kind


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        vision_mohaq.main(["--help"])
    assert exit_info.value.code == 0
    blocks = capsys.readouterr().out.split("options:", 1)[1].split("\n  -")[1:]
    for block in blocks:
        if not block.startswith("h, --help"):
            assert "(default:" in " ".join(block.split()), block.split()[0]


def numpy_interval(wrong, n_resamples, confidence, seed):
    """Percentile bootstrap of the mean of per-image 0/1 errors, plain numpy."""
    wrong = np.asarray(wrong, np.float64)
    draws = np.random.default_rng(seed).integers(
        0, len(wrong), (n_resamples, len(wrong))
    )
    alpha = (1.0 - confidence) / 2.0
    rates = wrong[draws].mean(axis=1)
    return rates, np.quantile(rates, [alpha, 1.0 - alpha])


def per_image_wrong(params, calib, space, genome, split):
    """0/1 errors of one genome on each image, by the numpy VGG of test_vgg_mohaq."""
    from tests.test_vgg_mohaq import np_vgg

    bits_w, bits_a = (np.asarray(b) for b in space.decode(genome))
    params = jax.tree.map(np.asarray, params)
    logits = np_vgg(params, split.images, bits_w, bits_a, calib)
    return logits.argmax(-1) != split.labels


BEACON_FLAGS = [
    "--platform", "bitfusion", "--max-error", "1.0", "--max-eval", "16",
    "--eval-batch", "16", "--bootstrap", "50", "--confidence", "0.9", "--seed", "0",
    "--beacons",
    "--beacon-epochs", "1", "--max-beacons", "2", "--verify-retrain", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def beacon_run(tmp_path_factory):
    """One tiny ``--beacons`` image run through the command line (both searches)."""
    tmp = tmp_path_factory.mktemp("vision_beacons")
    argv = TINY_FLAGS + BEACON_FLAGS + [
        "--out", str(tmp / "run"), "--baseline-dir", str(tmp / "base"),
    ]  # fmt: skip
    return tmp / "run", vision_mohaq.main(argv)


def test_image_intervals_equal_a_numpy_bootstrap_over_images(beacon_run):
    out, summary = beacon_run
    plain = summary["inference_only"]
    problem, result = plain["problem"], plain["result"]
    ev = problem.evaluator
    split = summary["beacons"]["problem"].corpus.dev  # the 16 scored dev images
    assert len(split) == 16
    front = np.flatnonzero(result.front)
    ci = plain["intervals"]["dev"]
    float_space = genome.tied_space(problem.space.layers, (32,), "float")
    zero = np.zeros(float_space.n_genes, np.int32)
    float_wrong = per_image_wrong(ev.params, ev.calib, float_space, zero, split)
    ref_rates, (low, high) = numpy_interval(float_wrong, 50, 0.9, 0)
    np.testing.assert_allclose(ci["float"]["rate"], [float_wrong.mean()])
    np.testing.assert_allclose(
        [ci["float"]["low"][0], ci["float"]["high"][0]], [low, high]
    )
    for row, i in enumerate(front):
        wrong = per_image_wrong(
            ev.params, ev.calib, problem.space, result.genomes[i], split
        )
        rates, (low, high) = numpy_interval(wrong, 50, 0.9, 0)
        assert ci["genomes"]["rate"][row] == pytest.approx(wrong.mean())
        assert ci["genomes"]["rate"][row] == pytest.approx(result.metrics["error"][i])
        np.testing.assert_allclose(
            [ci["genomes"]["low"][row], ci["genomes"]["high"][row]], [low, high]
        )
        diff = np.quantile(rates - ref_rates, [0.05, 0.95])
        np.testing.assert_allclose(
            [ci["genomes"]["diff_low"][row], ci["genomes"]["diff_high"][row]], diff
        )
    # the intervals reach the files: the CSV columns and the report's words
    with open(out / "inference_only" / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["dev_error_ci_low"] != "" for r in rows)
    report = (out / "inference_only" / "report.md").read_text()
    assert "bootstrap over images" in report and "dev error CI" in report


def test_beacon_image_run_compares_both_searches(beacon_run):
    out, summary = beacon_run
    for folder in ("inference_only", "beacons"):
        assert (out / folder / "pareto.csv").exists(), folder
    report = (out / "report.md").read_text()
    assert "inference-only vs beacon-based" in report
    assert "bootstrap interval over images" in report
    assert summary["gains"], "no speedup level reached by both searches"
    problem = summary["beacons"]["problem"]
    state = summary["beacons"]["result"].state
    beacons = state.extra
    assert beacons.count >= 1
    split = problem.corpus.dev
    ev = problem.evaluator
    # each beacon's recorded PTQ and QAT dev errors, recomputed by the numpy VGG on
    # its own retrained params (slot s) and on the float params
    for record in beacons.info:
        slot, genome_ = record["slot"], np.asarray(record["genome"], np.int32)
        retrained = jax.tree.map(lambda a, s=slot: a[s], beacons.stacked)
        qat = per_image_wrong(retrained, ev.calib, problem.space, genome_, split)
        ptq = per_image_wrong(ev.params, ev.calib, problem.space, genome_, split)
        assert record["qat_dev_error"] == pytest.approx(qat.mean())
        assert record["ptq_dev_error"] == pytest.approx(ptq.mean())
    # nearest-beacon evaluation: a genome's beacon error is on its beacon's params
    result = summary["beacons"]["result"]
    _, m = problem.evaluate(state, result.genomes)
    used = np.flatnonzero(m["beacon"] > 0)
    assert len(used)
    for i in used[:2]:
        params = jax.tree.map(lambda a, s=int(m["beacon"][i]): a[s], beacons.stacked)
        wrong = per_image_wrong(
            params, ev.calib, problem.space, result.genomes[i], split
        )
        assert m["beacon_error"][i] == pytest.approx(wrong.mean())
        assert m["error"][i] == min(m["ptq_error"][i], m["beacon_error"][i])
    # --verify-retrain 1: the lowest-error Pareto solution, retrained; QAT keeps the
    # best dev params from the PTQ start, so it is never worse than PTQ on dev
    ((index, error),) = summary["retrained"].items()
    front = np.flatnonzero(result.front)
    assert index == front[np.argmin(result.metrics["error"][front])]
    assert error <= m["ptq_error"][index]


def test_beacons_need_a_platform_with_speedup():
    # the comparison is at equal speedup: reconfig models none (a one-line error)
    cfg = vision_search.default_config(
        search={"platform": "reconfig"}, beacons={"enabled": True}
    )
    with pytest.raises(config.ConfigError, match="--platform reconfig has no speedup"):
        vision_search.experiment(cfg)
    bitfusion = vision_search.default_config(beacons={"enabled": True})
    assert "speedup" in vision_search.experiment(bitfusion).objectives
