"""benchmarks/racing.compare on hand-made archives (no search run)."""

import csv

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
            {"genome": "a", "error": "0.20"},
            {"genome": "b", "error": "0.90"},
            {"genome": "c", "error": "0.29"},  # feasible: stopping it would be wrong
        ],
    )
    _write(
        race / "archive.csv",
        [
            {"genome": "a", "error": "0.20", "error_partial": "0", "dev_frames": "100"},
            {"genome": "b", "error": "0.95", "error_partial": "1", "dev_frames": "25"},
            {"genome": "c", "error": "0.50", "error_partial": "1", "dev_frames": "50"},
            {"genome": "d", "error": "0.70", "error_partial": "1", "dev_frames": "25"},
        ],
    )
    _write(plain / "pareto.csv", [{"genome": "a"}, {"genome": "c"}])
    _write(race / "pareto.csv", [{"genome": "a"}])
    result = racing.compare(str(plain), str(race), max_error=0.3)
    assert result["frames_scored"] == 200 and result["frames_full"] == 400
    assert result["saved_percent"] == 50.0
    assert result["stopped"] == 3 and result["stopped_also_in_plain"] == 2
    assert result["wrongly_stopped"] == 1
    assert result["front_same"] == 0
    assert result["front_only_plain"] == ["c"] and result["front_only_race"] == []
