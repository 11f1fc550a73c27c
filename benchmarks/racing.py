"""Racing vs full evaluation: the same search twice, frames saved and fronts compared.

    python -m benchmarks.racing --json result.json [experiment flags ...]

Runs ``experiments.timit_bitfusion`` (or ``--experiment NAME``) twice with the same
flags and seed, once plain and once with ``--race``, each in a child process (so each
pays for its own work only), and compares what they left:

* how much racing saved: dev frames scored over those a full evaluation of the same
  unique genomes scores (archive.csv's ``dev_frames``), genomes stopped early;
* whether a stopped genome was feasible after all: each stopped genome that the plain
  search also evaluated is looked up there (a wrong stop would be one the full
  evaluation finds feasible: error and memory within their limits);
* the two Pareto fronts (pareto.csv rows), and the genomes only one of them holds.

Extra flags after the benchmark's own go to both runs (e.g. ``--memory-limit-mb
0.15``). The default cached baseline is reused, so run the experiment once first
when timing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

from mohaq_jax.runtime import atomic


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(experiment: str, out: str, flags: list[str]) -> float:
    """Runs the experiment into ``out``; returns its wall seconds."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", experiment, "--out", out, "--no-progress", *flags]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def compare(plain_dir: str, race_dir: str) -> dict:
    """What racing saved and changed, from the two runs' archives and fronts."""
    plain = {r["genome"]: r for r in _rows(os.path.join(plain_dir, "archive.csv"))}
    raced = _rows(os.path.join(race_dir, "archive.csv"))
    frames = [float(r["dev_frames"]) for r in raced]
    partial = [float(r["error_partial"]) > 0 for r in raced]
    stopped = [r for r, p in zip(raced, partial, strict=True) if p]
    checked = [r for r in stopped if r["genome"] in plain]
    # wrongly stopped: feasible (error and memory) in the plain run's full evaluation
    wrong = [r for r in checked if plain[r["genome"]]["feasible"] == "True"]
    front_plain = {r["genome"] for r in _rows(os.path.join(plain_dir, "pareto.csv"))}
    front_race = {r["genome"] for r in _rows(os.path.join(race_dir, "pareto.csv"))}
    return {
        "unique_genomes": len(raced),
        "stopped": len(stopped),
        "frames_scored": sum(frames),
        "frames_full": sum(float(r["dev_frames_full"]) for r in raced),
        "saved_percent": 100.0
        * (1.0 - sum(frames) / sum(float(r["dev_frames_full"]) for r in raced)),
        "stopped_also_in_plain": len(checked),
        "wrongly_stopped": len(wrong),
        "front_plain": len(front_plain),
        "front_race": len(front_race),
        "front_same": int(front_plain == front_race),
        "front_only_plain": sorted(front_plain - front_race),
        "front_only_race": sorted(front_race - front_plain),
        "archive_common": len(set(plain) & {r["genome"] for r in raced}),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="experiments.timit_bitfusion")
    parser.add_argument("--out", default="runs/racing", help="output folder")
    parser.add_argument("--json", default=None, help="write the figures here")
    args, flags = parser.parse_known_args(argv)
    seconds = {
        "plain": run(args.experiment, os.path.join(args.out, "plain"), flags),
        "race": run(
            args.experiment, os.path.join(args.out, "race"), flags + ["--race"]
        ),
    }
    with open(os.path.join(args.out, "race", "pareto.json")) as f:
        max_error = float(json.load(f)["settings"]["search_config"]["max_error"])
    result = compare(os.path.join(args.out, "plain"), os.path.join(args.out, "race"))
    result.update(max_error=max_error, seconds=seconds)
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        with atomic.atomic_open(args.json) as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
