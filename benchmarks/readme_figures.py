"""Reruns every command behind a figure in README.md and prints what it produced.

    python -m benchmarks.readme_figures            # all of them (tens of minutes on CPU)
    python -m benchmarks.readme_figures --list     # the commands only
    python -m benchmarks.readme_figures --only compression beacons

For each figure it prints the command, its wall time and peak memory (of the child
process), and the lines of its outputs that the README quotes (report tables, the
best compression, benchmark tables), so every README number comes with the command that
produced it. Outputs go to ``--out`` (default ``runs/readme``); the float baseline is
cached as usual, so the first command pays for training it (say so when quoting times:
run with a fresh ``MOHAQ_CACHE`` to time a fresh clone).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time


@dataclasses.dataclass(frozen=True)
class Figure:
    """One README figure: the command and the output lines it is read from."""

    name: str  # short id (--only)
    what: str  # the README section it feeds
    args: tuple[str, ...]  # command after the Python interpreter; {out} = --out
    reports: tuple[str, ...] = ()  # files whose quoted lines are printed
    quote: tuple[str, ...] = ()  # line prefixes/substrings quoted from the reports


FIGURES = (
    Figure(
        "tests",
        "README: test duration",
        ("-m", "pytest", "-q", "-n", "2"),
    ),
    Figure(
        "silago",
        "Measured here: default run, float baseline, SiLago front",
        ("-m", "experiments.timit_silago", "--out", "{out}/timit_silago"),
        ("{out}/timit_silago/report.md",),
        ("| float32", "| all 16-bit", "| 0 ", "| 1 ", "| 2 ", "| 3 ", "- ", "dev "),
    ),
    Figure(
        "baseline",
        "Float baseline on the default corpus",
        ("-m", "experiments.train_baseline"),
    ),
    Figure(
        "beacons",
        "Beacons: inference-only vs beacon-based on Bitfusion",
        (
            "-m",
            "experiments.timit_bitfusion",
            "--beacons",
            "--memory-limit-mb",
            "0.15",
            "--out",
            "{out}/beacons",
        ),
        ("{out}/beacons/report.md",),
        ("**Beacons", "| 0 ", "| speedup"),
    ),
    Figure(
        "compare",
        "Search algorithms at the same budget in one run (--compare)",
        (
            "-m",
            "experiments.timit_silago",
            "--compare",
            "simple_ga,de",
            "--out",
            "{out}/compare",
        ),
        ("{out}/compare/report.md",),
        ("| nsga2", "| simple_ga", "| de "),
    ),
    Figure(
        "vision_bitfusion",
        "VGG-9 searched by MOHAQ on Bitfusion (digits)",
        (
            "-m",
            "experiments.vision_mohaq",
            "--platform",
            "bitfusion",
            "--out",
            "{out}/vision_bitfusion",
        ),
        ("{out}/vision_bitfusion/report.md",),
        ("| float32", "| all ", "| 0 ", "| 1 ", "| 2 ", "| 3 ", "| 4 ", "- gen"),
    ),
    Figure(
        "vision_reconfig",
        "VGG-9 searched by MOHAQ on the 2-4-bit reconfigurable accelerator (digits)",
        (
            "-m",
            "experiments.vision_mohaq",
            "--platform",
            "reconfig",
            "--out",
            "{out}/vision_reconfig",
        ),
        ("{out}/vision_reconfig/report.md",),
        ("| float32", "| all ", "| 0 ", "| 1 ", "| 2 ", "| 3 ", "| 4 ", "- gen"),
    ),
    Figure(
        "compression",
        "Compression: uniform sweep and the searched best within 1 point",
        ("-m", "experiments.timit_compression", "--out", "{out}/compression"),
        ("{out}/compression/report.md",),
        ("| 16 ", "| 8 ", "| 4 ", "| 3 ", "| 2 ", "- **", "- bits"),
    ),
    Figure(
        "population_eval",
        "Population evaluation table",
        (
            "benchmarks/population_eval.py",
            "--pop",
            "64",
            "--chunks",
            "1,2,4,8,full",
            "--repeats",
            "3",
            "--torch",
            "0",
        ),
    ),
    Figure("nsga2", "NSGA-II generation step vs pymoo", ("-m", "benchmarks.nsga2")),
    Figure(
        "decoded_per",
        "Float baseline PER read raw / smoothed / decoded (and the SiLago front)",
        (
            "-m",
            "benchmarks.decoded_per",
            "--front",
            "{out}/timit_silago/pareto.json",
        ),
    ),
    Figure(
        "paper_scale",
        "Paper scale: streamed evaluation memory and speed",
        ("benchmarks/paper_scale.py", "--dev-utts", "400", "--pop", "2"),
    ),
    Figure(
        "search_quality",
        "Search quality against the true front (about 10 min)",
        (
            "-m",
            "benchmarks.search_quality",
            "--hidden",
            "64",
            "--proj",
            "96",
            "--epochs",
            "3",
            "--dev-utts",
            "8",
            "--seeds",
            "5",
        ),
    ),
)


def _fill(text: str, out: str) -> str:
    return text.replace("{out}", out)


def command(figure: Figure, out: str) -> list[str]:
    """The full command line of a figure."""
    return [sys.executable] + [_fill(a, out) for a in figure.args]


def quoted_lines(figure: Figure, out: str) -> list[str]:
    """Lines of the figure's reports that the README quotes."""
    lines = []
    for report in figure.reports:
        path = _fill(report, out)
        if not os.path.exists(path):
            lines.append(f"(missing: {path})")
            continue
        with open(path) as f:
            for line in f:
                if any(line.startswith(q) or q in line[:12] for q in figure.quote):
                    lines.append(line.rstrip())
    return lines


def run(figure: Figure, out: str) -> dict:
    """Runs one figure's command; returns wall seconds and peak child memory."""
    cmd = command(figure, out)
    print(f"\n### {figure.name}: {figure.what}\n$ {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)  # this command's own peak memory
    child.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    peak_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    print(f"-> exit {code}, {seconds:.0f} s wall, peak memory {peak_mb:.0f} MB")
    for line in quoted_lines(figure, out):
        print(f"   {line}")
    return {"name": figure.name, "exit": code, "seconds": seconds, "peak_mb": peak_mb}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default="runs/readme", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[f.name for f in FIGURES],
        default=None,
        help="run only these figures (default: all)",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the commands, run nothing"
    )
    args = parser.parse_args(argv)
    chosen = [f for f in FIGURES if args.only is None or f.name in args.only]
    if args.list:
        for f in chosen:
            print(f"{f.name:16s} {' '.join(command(f, args.out))}")
        return 0
    results = [run(f, args.out) for f in chosen]
    print("\nsummary:")
    for r in results:
        print(f"  {r['name']:16s} exit {r['exit']}  {r['seconds']:7.0f} s")
    return max((r["exit"] for r in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
