"""benchmarks.readme_figures: the README check, the extractors and --only merging."""

import json

import pytest

from benchmarks import readme_figures as rf

FIGURES = {
    "figures": {
        "silago": {
            "command": "python -m experiments.timit_silago",
            "wall_s": 412.0,
            "peak_rss_mb": 2077.0,
            "values": {"baseline.float32.dev_error": 0.27912, "sol0.speedup": 2.2512},
        },
        "population_eval": {
            "command": "python -m benchmarks.population_eval",
            "values": {"ratio": 1.2049, "chunk_curve.full.ratio": 0.8163},
        },
    }
}

README = """# Project

Prose with settings (population 40) is not policed.

<!-- measured -->
Float dev PER <!--f:silago.baseline.float32.dev_error-->0.279, wall
<!--f:silago.wall_min-->6.9 min, peak RSS <!--f:silago.peak_rss_gb-->2.03 GB.

| bits | speedup | ratio |
|---|---|---|
| <!--given-->16 | <!--f:silago.sol0.speedup-->2.25 | **<!--f:population_eval.ratio-->1.20x** |

Full vmap <!--f:population_eval.chunk_curve.full.ratio-->**0.82x** (`--pop 64`), in
per cent <!--f:population_eval.ratio*100-->120.5 %.
<!-- /measured -->
"""


@pytest.fixture
def pair(tmp_path):
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps(FIGURES))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    return readme, figures


def _check(readme, figures, capsys):
    code = rf.main(["--check", "--readme", str(readme), "--figures", str(figures)])
    return code, capsys.readouterr().out


def test_check_passes_on_matching_readme(pair, capsys):
    code, out = _check(*pair, capsys)
    assert code == 0, out
    assert "all 7 keyed numbers match" in out


def test_check_scales_a_key(pair, capsys):
    readme, figures = pair
    readme.write_text(README.replace("-->120.5 %", "-->120.4 %"))
    code, out = _check(readme, figures, capsys)
    assert code == 1
    assert "120.4 differs from population_eval.ratio*100 = 120.49" in out


def test_check_names_an_altered_number(pair, capsys):
    readme, figures = pair
    readme.write_text(README.replace("-->2.25 |", "-->2.26 |"))
    code, out = _check(readme, figures, capsys)
    assert code == 1
    assert "2.26 differs from silago.sol0.speedup = 2.2512" in out
    assert "(written at that precision: 2.25)" in out
    assert out.count("differs") == 1


def test_check_names_numbers_without_source(pair, capsys):
    readme, figures = pair
    text = README.replace("<!--f:population_eval.ratio-->1.20x", "1.20x")
    text = text.replace("Full vmap", "A **3.5x** gain. Full vmap")
    text = text.replace("<!--f:silago.baseline.float32.dev_error-->", "<!--f:nope.x-->")
    readme.write_text(text)
    code, out = _check(readme, figures, capsys)
    assert code == 1
    assert "1.20 has no source" in out
    assert "3.5 has no source (bold '3.5x' without a key)" in out
    assert "0.279: key nope.x is not in figures.json" in out
    assert "40" not in out  # prose outside tables and bold is not policed


def test_check_flags_an_unkeyed_table_cell_but_not_outside_measured(pair, capsys):
    readme, figures = pair
    row = "| <!--given-->16 | <!--f:silago.sol0.speedup-->2.25 |"
    readme.write_text(
        README.replace(row, "| 8 | 3.1 |")
        + "\n| bits | speedup |\n|---|---|\n| 4 | 9.9 |\n"
    )
    code, out = _check(readme, figures, capsys)
    assert code == 1
    assert "8 has no source (table cell '8' without a key)" in out
    assert "3.1 has no source" in out
    assert "9.9" not in out


@pytest.mark.parametrize(
    "written, value, expected",
    [
        ("0.279", 0.27912, True),
        ("0.280", 0.27912, False),
        ("0.28", 0.2751, True),
        ("412", 411.6, True),
        ("411", 411.6, False),
        ("2.98e7", 29812345.0, True),
        ("3.0e7", 29812345.0, True),
        ("17,638", 17638.0, True),
        ("-0.4", -0.42, True),
        ("+0.1", 0.1, True),
        ("0.0", -0.01, True),
    ],
)
def test_written_matches_rounds_to_the_written_precision(written, value, expected):
    assert rf.written_matches(written, value)[0] is expected


def test_experiment_values_read_pareto_json_and_report_tables(tmp_path):
    (tmp_path / "pareto.json").write_text(
        json.dumps(
            {
                "baselines": [
                    {"name": "float32", "dev_error": 0.279, "test_error": 0.3},
                    {
                        "name": "all 16-bit",
                        "dev_error": 0.28,
                        "notes": "speedup 1 x, energy_pj 2.978e+04 pJ/frame",
                    },
                ],
                "solutions": [
                    {
                        "speedup": 2.25,
                        "error": 0.283,
                        "genome": [0, 1],
                        "dev_same_as_float": True,
                    },
                    {"speedup": 3.5, "genome": [1, 1]},
                ],
                "settings": {"search": {"pop": 40}},
            }
        )
    )
    (tmp_path / "report.md").write_text(
        "## Compare\n\n| algorithm | front | best (dev) |\n|---|---|---|\n"
        "| SimpleGA | 7 | 3.82 (0.296) |\n\n## Search\n\n"
        "- 190 evaluations (163 unique genomes), 150 feasible\n"
    )
    got = rf.experiment_values(str(tmp_path))
    assert got["baseline.float32.dev_error"] == 0.279
    assert got["baseline.all_16_bit.energy_pj"] == 29780.0
    assert got["baseline.all_16_bit.speedup"] == 1.0
    assert got["sol1.speedup"] == 3.5
    assert "sol0.dev_same_as_float" not in got  # booleans are not figures
    assert got["n_solutions"] == 2.0
    assert got["settings.search.pop"] == 40.0
    assert got["table.compare.simplega.front"] == 7.0
    assert got["table.compare.simplega.best_dev"] == 3.82
    assert got["table.compare.simplega.best_dev.n2"] == 0.296
    assert (got["evaluations"], got["unique_genomes"]) == (190.0, 163.0)
    assert got["sol0.dev_points"] == pytest.approx(0.4)  # (0.283 - 0.279) x 100
    assert "sol1.dev_points" not in got  # no error field


def test_only_runs_the_named_figure_and_merges(tmp_path, monkeypatch, capsys):
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps(FIGURES))
    writer = (
        "import json, sys; json.dump({'rate': {'full': 2.5}, 'ok': True}, "
        "open(sys.argv[1], 'w'))"
    )
    fake = rf.Figure(
        "population_eval",
        "a stand-in benchmark",
        ("-c", writer, "{dir}/result.json"),
        rf._in("result.json", rf.json_values),
    )
    never = rf.Figure("other", "must not run", ("-c", "raise SystemExit(3)"), dict)
    monkeypatch.setattr(rf, "FIGURES", (fake, never))
    code = rf.main(
        [
            "--only",
            "population_eval",
            "--out",
            str(tmp_path / "runs"),
            "--figures",
            str(figures),
        ]
    )
    assert code == 0, capsys.readouterr().out
    doc = json.loads(figures.read_text())["figures"]
    assert doc["silago"] == FIGURES["figures"]["silago"]  # kept as it was
    new = doc["population_eval"]
    assert new["values"] == {"rate.full": 2.5}  # replaced, old keys gone
    assert new["exit"] == 0 and new["peak_rss_mb"] > 0 and new["wall_s"] >= 0
    assert "-c" in new["command"] and new["date"].endswith("Z")
    assert set(new["machine"]) == {"cpu", "cores", "load_1min", "gpu"}
    assert "other" not in doc


def test_a_failed_figure_keeps_the_old_entry(tmp_path, monkeypatch, capsys):
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps(FIGURES))
    broken = rf.Figure("silago", "fails", ("-c", "raise SystemExit(3)"), dict)
    monkeypatch.setattr(rf, "FIGURES", (broken,))
    code = rf.main(
        ["--only", "silago", "--out", str(tmp_path), "--figures", str(figures)]
    )
    assert code == 1
    assert json.loads(figures.read_text()) == FIGURES
    assert "failed (old entries kept): silago" in capsys.readouterr().out


def test_repository_readme_matches_figures_json(capsys):
    """The README's keyed numbers agree with the committed figures.json (as CI checks)."""
    code = rf.main(["--check"])
    assert code == 0, capsys.readouterr().out


def test_adopt_records_a_folder_its_command_wrote(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps({"a": {"b": 2.5}, "c": [1, 2]}))
    figures = tmp_path / "figures.json"
    code = rf.main(
        [
            "--only",
            "rehearsal",
            "--adopt",
            str(folder),
            "abc123",
            "--figures",
            str(figures),
        ]
    )
    assert code == 0
    record = json.loads(figures.read_text())["figures"]["rehearsal"]
    assert record["values"] == {"a.b": 2.5, "c.0": 1.0, "c.1": 2.0}
    assert record["commit"] == "abc123" and "adopted" in record
    assert f"--out {folder}" in record["command"] and "wall_s" not in record
    with pytest.raises(SystemExit):
        rf.main(["--adopt", str(folder), "abc123", "--figures", str(figures)])
