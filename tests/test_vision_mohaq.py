"""End-to-end: ``python -m experiments.vision_mohaq`` with tiny flags (seconds)."""

import csv
import json
import os

import numpy as np
import pytest

from experiments import vision_mohaq
from mohaq_jax import genome, hardware
from mohaq_jax.models import vgg

TINY_FLAGS = [
    "--image-size", "8", "--conv-widths", "2,2,3,3,4,4", "--fc-widths", "8,8",
    "--max-train", "96", "--epochs", "1", "--batch-size", "32",
    "--calib", "max", "--calib-images", "32", "--max-eval", "32", "--eval-batch", "32",
    "--pop", "4", "--offspring", "2", "--generations", "1", "--no-progress",
]  # fmt: skip


def test_main_writes_the_pareto_set(tmp_path):
    out = tmp_path / "run"
    argv = TINY_FLAGS + [
        "--out", str(out), "--baseline-dir", str(tmp_path / "base"),
        "--platform", "reconfig", "--max-error", "1.0",
    ]  # fmt: skip
    summary = vision_mohaq.main(argv)
    for name in ("pareto.csv", "pareto.json", "archive.csv", "report.md"):
        assert (out / name).exists(), name
    assert len(os.listdir(tmp_path / "base")) == 1  # the cached float baseline
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
    assert "dev class error <=" in (out / "report.md").read_text()


def test_cifar_without_files_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vision_mohaq.main(["--dataset", "cifar10", "--cifar-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CIFAR-10 python batches" in err
    with pytest.raises(SystemExit):
        vision_mohaq.main(["--dataset", "cifar10"])
    assert "--dataset cifar10 needs --cifar-dir" in capsys.readouterr().err


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        vision_mohaq.main(["--help"])
    assert exit_info.value.code == 0
    blocks = capsys.readouterr().out.split("options:", 1)[1].split("\n  -")[1:]
    for block in blocks:
        if not block.startswith("h, --help"):
            assert "(default:" in " ".join(block.split()), block.split()[0]
