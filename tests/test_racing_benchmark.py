"""benchmarks/racing.compare on hand-made archives (no search run)."""

import csv

import pytest

from benchmarks import racing


def _write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_compare_counts_frames_stops_and_front_differences(tmp_path):
    plain, race = tmp_path / "plain", tmp_path / "race"
    plain.mkdir()
    race.mkdir()
    _write(
        plain / "archive.csv",
        [
            {"genome": "a", "error": "0.20", "feasible": "True"},
            {"genome": "b", "error": "0.90", "feasible": "False"},
            {"genome": "c", "error": "0.29", "feasible": "True"},  # a wrong stop
            {"genome": "e", "error": "0.10", "feasible": "False"},  # over memory
        ],
    )
    _write(  # fmt: skip
        race / "archive.csv",
        [
            {
                "genome": g,
                "error": e,
                "error_partial": p,
                "dev_frames": f,
                "dev_frames_full": "100",
            }
            for g, e, p, f in [
                ("a", "0.20", "0", "100"),
                ("b", "0.95", "1", "25"),
                ("c", "0.50", "1", "50"),
                ("d", "0.70", "1", "25"),
                ("e", "0.12", "1", "10"),
            ]
        ],
    )
    _write(plain / "pareto.csv", [{"genome": "a"}, {"genome": "c"}])
    _write(race / "pareto.csv", [{"genome": "a"}])
    result = racing.compare(str(plain), str(race))
    assert result["frames_scored"] == 210 and result["frames_full"] == 500
    assert result["saved_percent"] == pytest.approx(58.0)
    assert result["stopped"] == 4 and result["stopped_also_in_plain"] == 3
    assert result["wrongly_stopped"] == 1
    assert result["front_same"] == 0
    assert result["front_only_plain"] == ["c"] and result["front_only_race"] == []
