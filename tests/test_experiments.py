"""The experiment scripts: every flag documented, and one tiny end-to-end run."""

import importlib
import json
import os

import pytest

SCRIPTS = [
    "timit_silago",
    "timit_bitfusion",
    "timit_compression",
    "train_baseline",
    "switching_sru",
    "switching_vgg",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_flag(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text or "--ckpt" in text or "--baseline" in text
    # argparse prints an option without help text as a bare line: every option has
    # text on its own line or an indented continuation on the next.
    lines = text.split("options:", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        same_line = "  " in line.strip()
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        continued = next_line.startswith(" " * 10) and not next_line.strip().startswith(
            "-"
        )
        assert same_line or continued, f"{name}: no help for {line.strip()}"


def test_tiny_end_to_end_silago(tmp_path, monkeypatch):
    monkeypatch.setenv("MOHAQ_CACHE", str(tmp_path / "cache"))
    from experiments import timit_silago

    out = tmp_path / "run"
    args = [
        "--espeak-size",
        "tiny",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--proj",
        "0",
        "--epochs",
        "1",
        "--pop",
        "6",
        "--offspring",
        "3",
        "--generations",
        "2",
        "--calib-utts",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    summary = timit_silago.main(args)
    for name in (
        "pareto.csv",
        "pareto.json",
        "archive.csv",
        "report.md",
        "hypervolume.png",
        "search_state.msgpack",
    ):
        assert os.path.getsize(out / name) > 0, name
    doc = json.loads((out / "pareto.json").read_text())
    assert "NOT TIMIT" in doc["notice"]
    assert doc["settings"]["search_config"]["pop_size"] == 6
    assert 6 <= summary["n_evaluated"] <= 6 + 2 * 3  # a 9-genome space may run out
    assert "NOT TIMIT" in (out / "report.md").read_text()
    # a second run reuses the trained baseline and resumes the finished search as is
    again = timit_silago.main(args + ["--resume"])
    assert again["n_evaluated"] == summary["n_evaluated"]
