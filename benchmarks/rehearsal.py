"""The paper-scale rehearsal, run and measured: the whole SiLago experiment on the
paper's model and a TIMIT-sized corpus, interrupted once and resumed.

    python -m benchmarks.rehearsal --out runs/rehearsal --json runs/rehearsal/result.json

Runs ``experiments.timit_silago --paper-model --espeak-size timit`` (4 x biSRU 550,
projections 256; 3696/400/192 synthesized utterances) with the search options that win
on the search-quality referee (``--seed-proxy --surrogate`` at 95 evaluations:
``benchmarks.search_quality``) and racing (``--race``), float training bounded by
``--train-minutes``. It runs in two child processes, as a user whose job is preempted
would:

1. the experiment from scratch (corpus, float training, calibration, decoder fit, float
   evaluation, search); once the search checkpoint holds generation
   ``--interrupt-after``, the process gets SIGTERM (not a graceful stop: what is
   on disk is what a crash leaves);
2. the same command with ``--resume``: cached corpus and baseline, the search from its
   checkpoint, then test re-evaluation, intervals and the report.

It prints and writes (``--json``): wall time and peak RSS of each process
(``getrusage`` of the children, so the figures are the processes' own), the phases of
the resumed process (``pareto.json``'s ``seconds`` / ``peak_rss_gb``), the float
training history (dev PER per epoch, steps: how far from converged), the search's wall
time over both sessions, racing's saved frames, and the front. Run it on an otherwise
idle machine: every figure is a wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

from mohaq_jax.runtime import atomic, checkpoint

#: The options that win on the search-quality referee, and the budget at which they
#: match plain NSGA-II's 190-evaluation hypervolume there (README, "Search quality").
SEARCH_FLAGS = ("--seed-proxy", "--surrogate", "--race", "--budget", "95")


#: The paper's model on a TIMIT-sized corpus; ``--tiny`` swaps in a smoke setting.
SCALE_FLAGS = ("--paper-model", "--espeak-size", "timit")
TINY_FLAGS = (
    "--espeak-size", "tiny", "--hidden", "16", "--layers", "2", "--proj", "0",
    "--calib-utts", "4", "--bootstrap", "100", "--pop", "8", "--offspring", "4",
)  # fmt: skip


def command(out: str, train_minutes: float, extra: list[str], tiny: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.timit_silago",
        *(TINY_FLAGS if tiny else SCALE_FLAGS),
        "--train-minutes",
        str(train_minutes),
        *SEARCH_FLAGS,
        "--out",
        out,
        *extra,
    ]


def _children_rss_gb() -> float:
    """Peak RSS of the largest child waited for so far, GB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def _generation(state_path: str) -> int:
    try:
        return int(checkpoint.read_meta(state_path)["generation"])
    except (FileNotFoundError, checkpoint.CheckpointDamaged, KeyError):
        return -1


def first_session(cmd, state_path: str, interrupt_after: int, log) -> dict:
    """Runs ``cmd`` until its search checkpoint holds ``interrupt_after``, then
    SIGTERM. Returns wall seconds, the generation it was stopped at, its peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    generation = -1
    while proc.poll() is None:
        generation = _generation(state_path)
        if generation >= interrupt_after:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(2.0)
    code = proc.wait()
    return {
        "wall_s": time.perf_counter() - started,
        "interrupted_at_generation": generation,
        "exit": code,
        "peak_rss_gb": _children_rss_gb(),
    }


def second_session(cmd, log) -> dict:
    started = time.perf_counter()
    code = subprocess.run(
        cmd + ["--resume"], stdout=log, stderr=subprocess.STDOUT
    ).returncode
    if code:
        raise SystemExit(f"the resumed run failed (exit {code}); see its log")
    return {"wall_s": time.perf_counter() - started, "exit": code}


def baseline_history(settings: dict) -> list[dict]:
    """The float training history from the baseline checkpoint the run used."""
    path = settings.get("baseline_checkpoint")
    if not path or not os.path.exists(path):
        return []
    meta = checkpoint.read_meta(path)
    return list(meta.get("history", []))


#: What the first session printed of its phases (seconds), read from its log.
LOGGED_PHASES = {
    "corpus": r"corpus: \d+/\d+/\d+ train/dev/test .*\(([\d.]+) s\)",
    "baseline": r"float baseline: .*\(trained in ([\d.]+) s\)",
    "calibration": r"calibration: done \(([\d.]+) s\)",
    "decoder": r"decoder: LM weight .*\(([\d.]+) s\)",
}


def logged_phases(log_path: str) -> dict:
    """Seconds of the phases the first session printed (it was stopped before it
    wrote its own report)."""
    with open(log_path, errors="replace") as f:
        text = f.read().replace("\r", "\n")
    found = {}
    for name, pattern in LOGGED_PHASES.items():
        match = re.search(pattern, text)
        if match:
            found[name] = float(match.group(1))
    return found


def summarize(out: str, first: dict, second: dict) -> dict:
    with open(os.path.join(out, "pareto.json")) as f:
        doc = json.load(f)
    settings = doc["settings"]
    with open(os.path.join(out, "archive.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    frames = [float(r["dev_frames"]) for r in rows]
    partial = [float(r["error_partial"]) > 0 for r in rows]
    full = max((f for f, p in zip(frames, partial, strict=True) if not p), default=0.0)
    front = [
        {k: s.get(k) for k in ("bits", "error", "speedup", "energy_pj", "test_error")}
        for s in doc["solutions"]
    ]
    float_row = next(b for b in doc["baselines"] if b["name"] == "float32")
    return {
        "sessions": {"first": first, "second": second},
        "peak_rss_gb": max(first["peak_rss_gb"], second["peak_rss_gb"]),
        "wall_s": first["wall_s"] + second["wall_s"],
        "phases_first": logged_phases(os.path.join(out, "session1.log")),
        "phases_resumed": settings["seconds"],
        "phase_rss_resumed_gb": settings.get("peak_rss_gb", {}),
        "search_s": settings["seconds"]["search"],
        "training": baseline_history(settings),
        "float_dev_error": float_row["dev_error"],
        "float_test_error": float_row["test_error"],
        "unique_genomes": len(rows),
        "stopped_by_racing": int(sum(partial)),
        "frames_saved_percent": 100.0 * (1 - sum(frames) / (full * len(rows)))
        if full
        else 0.0,
        "n_pareto": len(front),
        "front": front,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/rehearsal")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--train-minutes", type=float, default=20.0)
    parser.add_argument("--interrupt-after", type=int, default=2, help="generation")
    parser.add_argument("--tiny", action="store_true", help="smoke setting")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="no run: summarize the finished rehearsal in --out again (its "
        "result.json keeps the sessions' wall times and peak RSS)",
    )
    args, extra = parser.parse_known_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.collect:
        with open(os.path.join(args.out, "result.json")) as f:
            sessions = json.load(f)["sessions"]
        result = summarize(args.out, sessions["first"], sessions["second"])
        if args.json:
            atomic.write_text(args.json, json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return result
    cmd = command(args.out, args.train_minutes, extra, args.tiny)
    state_path = os.path.join(args.out, "search_state.msgpack")
    print("$", " ".join(cmd), flush=True)
    with open(os.path.join(args.out, "session1.log"), "w") as log:
        first = first_session(cmd, state_path, args.interrupt_after, log)
    print(f"first session: {first}", flush=True)
    with open(os.path.join(args.out, "session2.log"), "w") as log:
        second = second_session(cmd, log)
    second["peak_rss_gb"] = _children_rss_gb()  # the max over both children
    result = summarize(args.out, first, second)
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        atomic.write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
