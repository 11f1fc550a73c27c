"""Every number README.md quotes as measured, regenerated into figures.json and checked.

    python -m benchmarks.readme_figures                 # every figure (hours on CPU)
    python -m benchmarks.readme_figures --only silago compression   # merge those in
    python -m benchmarks.readme_figures --list          # the commands, run nothing
    python -m benchmarks.readme_figures --show silago   # the keys and values on file
    python -m benchmarks.readme_figures --check         # README.md vs figures.json

**Running.** Each :class:`Figure` is one command (run in a child process, outputs under
``--out``/NAME) and an extractor that reads the command's machine-readable outputs
(``pareto.json`` and the tables of ``report.md`` of an experiment, the ``--json`` file
of a benchmark, pytest's JUnit XML) into named numbers. Each run is recorded in
``benchmarks/figures.json`` with its command, git commit (and whether the tree had
uncommitted changes), date, machine (CPU model, cores, 1-minute load at the start,
whether a GPU is present), exit status, wall time and the child's peak RSS; the wall
time and peak RSS are figures too (``NAME.wall_s``, ``NAME.wall_min``,
``NAME.peak_rss_mb``, ``NAME.peak_rss_gb``), and so are the machine's core count and load
(``NAME.machine.cores``, ``NAME.machine.load_1min``). ``--only`` replaces the named figures
and keeps the others; a failed command or extraction keeps the old entry and exits 1.
The float baseline is cached as usual, so the first command that needs it pays for
training it (set ``MOHAQ_CACHE`` to a fresh folder to time a fresh clone).

**Keys.** A figure's numbers are named ``NAME.KEY``: ``KEY`` is the flattened path of a
JSON leaf (``population_eval.chunk_curve.full.ratio``); experiments give
``NAME.baseline.<slug>.<field>`` (``pareto.json``'s baselines, with the metrics of their
notes, e.g. ``silago.baseline.all_16_bit.energy_pj``), ``NAME.sol<i>.<field>``
(its solutions, dev-error order), ``NAME.n_solutions``, ``NAME.evaluations``,
``NAME.unique_genomes``, and ``NAME.table.<heading>.<row>.<column>`` for every table of
``report.md`` (slugs: lower case, runs of other characters as ``_``; the 2nd, 3rd ..
number of a cell as ``.n2``, ``.n3``). ``--show [PREFIX]`` lists them with their values.

**The README convention** (what ``--check`` reads, GitHub renders nothing of it):

- A measured number is written right after an HTML comment naming its key:
  ``dev PER <!--f:silago.baseline.float32.dev_error-->0.279`` (bold too:
  ``**<!--f:population_eval.ratio-->1.20x**``). The number is compared with the key's
  value rounded to the number of decimals written (``0.279`` -> 3 decimals, ``1.2e7``
  -> 1 significant decimal in that notation, ``412`` -> integer); signs and a thousands
  separator (``,`` or a narrow no-break space U+202F) are allowed; a unit after the
  number (``x``, ``%``, ``GB``) is not read. A key may end in ``*FACTOR`` to scale
  its value to the README's unit: ``<!--f:population_eval.share_of_peak*100-->52 %``;
  error differences in points have their own keys (``sol<i>.dev_points``,
  ``uniform.<bits>.dev_points``).
- Measured sections are enclosed in ``<!-- measured -->`` ... ``<!-- /measured -->``.
  Inside them every number in a table body cell that starts with a number, and every
  number inside ``**bold**``, must carry a key, or ``<!--given-->`` when it is a setting
  or a definition rather than a measurement (``| <!--given-->8 | ...`` for a bit-width
  column); ``--check`` names the others as "no source". Numbers in prose are not
  policed (settings such as "population 40" are prose): key every measured one.
- Outside measured sections keys are still checked.

``--check`` parses README.md and figures.json only (no rerun, no JAX import, well under
a second) and prints one line per mismatch, unknown key or number without source, with
its README line; exit 1 on any.
"""

from __future__ import annotations

import argparse
import csv  # noqa: F401  (extractors may read CSV outputs)
import dataclasses
import datetime
import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

from mohaq_jax.runtime import atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES_JSON = os.path.join(REPO, "benchmarks", "figures.json")
README = os.path.join(REPO, "README.md")


def write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (:mod:`mohaq_jax.runtime.atomic`, no JAX)."""
    with atomic.atomic_open(path) as f:
        f.write(text)


# --------------------------------------------------------------------------------------
# Extractors: output files -> {key: number}.
# --------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """``"Float32 (dev)"`` -> ``"float32_dev"``."""
    text = re.sub(r"[*`]", "", text).lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_") or "_"


NUMBER_IN_TEXT = re.compile(r"[-+\u2212]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


NOTE_METRIC = re.compile(r"\b([a-z][a-z0-9_]*) ([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b")


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def flatten(doc, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON document, keyed by their dotted path (bools skipped)."""
    out = {}
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        if isinstance(doc, (int, float)) and not isinstance(doc, bool):
            if math.isfinite(doc):
                out[prefix] = float(doc)
        return out
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{slug(str(k))}" if prefix else slug(str(k))))
    return out


def json_values(path: str) -> dict[str, float]:
    """Every numeric leaf of a JSON file."""
    with open(path) as f:
        return flatten(json.load(f))


def markdown_tables(text: str) -> dict[str, float]:
    """Numbers of every markdown table: ``table.<heading>.<row>.<column>``.

    The heading is the section's title without parentheses, the row is named by its
    first cell, the column by its header; a cell's first number is the key itself,
    later ones ``.n2``, ``.n3`` ...
    """
    out, heading, header = {}, "top", None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            # "Pareto set (4 solutions, ...)" -> "pareto_set": stable across runs
            heading = slug(re.sub(r"\(.*?\)", "", stripped.lstrip("#")))
            header = None
            continue
        if not stripped.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        if set(stripped) <= set("|-: "):
            continue
        if header is None:
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if following and set(following) <= set("|-: "):
                header = [slug(c) for c in cells]
                continue
        if header is None:
            continue
        row = slug(cells[0])
        for col, cell in zip(header[1:], cells[1:], strict=False):
            for n, match in enumerate(NUMBER_IN_TEXT.findall(cell)):
                key = f"table.{heading}.{row}.{col}" + (f".n{n + 1}" if n else "")
                out.setdefault(key, _number(match))
    return out


def experiment_values(folder: str) -> dict[str, float]:
    """``pareto.json`` and ``report.md`` of an experiment's output folder."""
    with open(os.path.join(folder, "pareto.json")) as f:
        doc = json.load(f)
    out = {"n_solutions": float(len(doc["solutions"]))}
    for base in doc.get("baselines", []):
        name = slug(base["name"])
        for field, value in flatten(
            {k: v for k, v in base.items() if k != "name"}
        ).items():
            out[f"baseline.{name}.{field}"] = value
        # notes such as "speedup 1 x, energy_pj 2.978e+04 pJ/frame": metric, value
        for metric, value in NOTE_METRIC.findall(str(base.get("notes", ""))):
            out.setdefault(f"baseline.{name}.{metric}", _number(value))
    for i, sol in enumerate(doc["solutions"]):
        row = {k: v for k, v in sol.items() if k not in ("genome", "layers", "bits")}
        for field, value in flatten(row).items():
            out[f"sol{i}.{field}"] = value
    for field, value in flatten(doc.get("settings", {})).items():
        out[f"settings.{field}"] = value
    out.update(points_over_float(out))
    report = os.path.join(folder, "report.md")
    if os.path.exists(report):
        with open(report) as f:
            text = f.read()
        out.update(markdown_tables(text))
        out.update(uniform_points(out))
        counts = re.search(r"(\d+) evaluations \((\d+) unique genomes\)", text)
        if counts:
            out["evaluations"] = float(counts.group(1))
            out["unique_genomes"] = float(counts.group(2))
        volume = re.search(r"final normalized hypervolume ([\d.]+)", text)
        if volume:
            out["hypervolume"] = float(volume.group(1))
        seconds = re.search(r"run time: ([\d.]+) s", text)
        if seconds:
            out["search_seconds"] = float(seconds.group(1))
        best = re.search(
            r"\*\*([\d.]+)x\*\* over float32 \(([\d.]+) MB\): dev error ([\d.]+) "
            r"\(16-bit: ([\d.]+)\), test error ([\d.]+)",
            text,
        )
        if best:  # the compression experiment's largest compression within the margin
            for name, group in zip(
                (
                    "compression_x",
                    "memory_mb",
                    "dev_error",
                    "dev_error_16",
                    "test_error",
                ),
                best.groups(),
                strict=True,
            ):
                out[f"best_within.{name}"] = float(group)
        racing = re.search(r"racing saved ([\d.]+) %", text)
        if racing:
            out["racing_saved_percent"] = float(racing.group(1))
    return out


def beacon_values(folder: str) -> dict[str, float]:
    """``--beacons``: the comparison's tables (``report.md``) and each search's outputs
    (``inference_only.*``, ``beacon_based.*`` as :func:`experiment_values`)."""
    with open(os.path.join(folder, "report.md")) as f:
        out = markdown_tables(f.read())
    for sub, prefix in (
        ("inference_only", "inference_only"),
        ("beacons", "beacon_based"),
    ):
        for key, value in experiment_values(os.path.join(folder, sub)).items():
            out[f"{prefix}.{key}"] = value
    return out


def qwix_values(folder: str) -> dict[str, float]:
    """The experiment's figures, and its qwix export (``qwix.json``): per solution
    and split the search's and qwix's error, how many rows lie inside the search's
    interval, the largest difference."""
    out = experiment_values(folder)
    with open(os.path.join(folder, "qwix.json")) as f:
        rows = json.load(f)["rows"]
    for r in rows:
        for key in ("search_error", "search_low", "search_high", "qwix_error"):
            out[f"qwix.sol{r['solution']}.{r['split']}.{key}"] = float(r[key])
    out["qwix.rows"] = float(len(rows))
    out["qwix.inside"] = float(sum(bool(r["inside"]) for r in rows))
    out["qwix.max_abs_diff"] = max(
        abs(float(r["qwix_error"]) - float(r["search_error"])) for r in rows
    )
    return out


def points_over_float(found: dict[str, float]) -> dict[str, float]:
    """Each solution's error minus the float model's, in percentage points.

    ``sol<i>.dev_points`` and ``sol<i>.test_points`` (from ``sol<i>.error`` and
    ``sol<i>.test_error`` against ``baseline.float32.dev_error`` / ``test_error``).
    """
    out = {}
    for split, field in (("dev", "error"), ("test", "test_error")):
        float_error = found.get(f"baseline.float32.{split}_error")
        if float_error is None:
            continue
        for key, value in found.items():
            match = re.fullmatch(r"sol(\d+)\." + field, key)
            if match:
                out[f"sol{match.group(1)}.{split}_points"] = 100 * (value - float_error)
    return out


def uniform_points(found: dict[str, float]) -> dict[str, float]:
    """The compression sweep's dev error over the float model's, in points.

    ``uniform.<bits>.dev_points`` from the report's uniform-bits table.
    """
    float_error = found.get("baseline.float32.dev_error")
    out = {}
    if float_error is None:
        return out
    for key, value in found.items():
        match = re.fullmatch(r"table\.uniform_weight_bits\.(\d+)\.dev_error", key)
        if match:
            out[f"uniform.{match.group(1)}.dev_points"] = 100 * (value - float_error)
    return out


def junit_values(path: str) -> dict[str, float]:
    """Counts of pytest's JUnit XML: tests, passed, failures, errors, skipped."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures")}
    count.update(
        {k: sum(int(s.get(k, 0)) for s in suites) for k in ("errors", "skipped")}
    )
    count["passed"] = count["tests"] - count["failures"] - count["errors"]
    count["passed"] -= count["skipped"]
    return {k: float(v) for k, v in count.items()}


def _in(path: str, read: Callable[[str], dict[str, float]]):
    """An extractor reading ``path`` (relative to the figure's folder) with ``read``."""

    def extract(folder: str) -> dict[str, float]:
        return read(os.path.join(folder, path))

    return extract


@dataclasses.dataclass(frozen=True)
class Figure:
    """One README figure: a command and how its numbers are read."""

    name: str  # short id (--only, key prefix)
    what: str  # the README section it feeds
    args: tuple[str, ...]  # command after the Python interpreter; {dir} = its folder
    extract: Callable[[str], dict[str, float]]  # its folder -> {key: number}
    env: tuple[tuple[str, str], ...] = ()  # extra environment; {dir} as in args


_JSON = _in("result.json", json_values)
#: the tail of a benchmark's command: its numbers to ``{dir}/result.json``
JSON_OUT = ("--json", "{dir}/result.json")
#: the same, with the benchmark's other outputs in ``{dir}``
OUT_JSON = ("--out", "{dir}", *JSON_OUT)

FIGURES = (
    Figure(
        "tests",
        "README: test duration and counts",
        ("-m", "pytest", "-q", "-n", "2", "--junitxml", "{dir}/junit.xml"),
        _in("junit.xml", junit_values),
    ),
    Figure(
        "silago",
        "Default run: float baseline, SiLago front, run time and memory",
        ("-m", "experiments.timit_silago", "--out", "{dir}"),
        experiment_values,
    ),
    Figure(
        "silago_fresh",
        "The default run from an empty cache (corpus and baseline built): time, RSS",
        ("-m", "experiments.timit_silago", "--out", "{dir}"),
        experiment_values,
        (("MOHAQ_CACHE", "{dir}/cache"),),
    ),
    Figure(
        "decoded_per",
        "Float baseline PER read raw / smoothed / decoded, and the SiLago front",
        (
            "-m",
            "benchmarks.decoded_per",
            "--front",
            "{out}/silago/pareto.json",
            *JSON_OUT,
        ),
        _JSON,
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
            "{dir}",
        ),
        beacon_values,
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
            "{dir}",
        ),
        experiment_values,
    ),
    Figure(
        "compression",
        "Compression: uniform sweep and the searched best within 1 point",
        ("-m", "experiments.timit_compression", "--out", "{dir}"),
        experiment_values,
    ),
    Figure(
        "racing",
        "Racing vs full evaluation: Bitfusion search twice, frames saved, fronts",
        (
            "-m",
            "benchmarks.racing",
            *OUT_JSON,
            "--memory-limit-mb",
            "0.15",
        ),
        _JSON,
    ),
    Figure(
        "racing_default",
        "Racing vs full evaluation on the default Bitfusion problem",
        (
            "-m",
            "benchmarks.racing",
            *OUT_JSON,
        ),
        _JSON,
    ),
    Figure(
        "rehearsal",
        "Paper-scale rehearsal: paper model, TIMIT-sized corpus, preempted and resumed",
        (
            "-m",
            "benchmarks.rehearsal",
            *OUT_JSON,
        ),
        _JSON,
    ),
    Figure(
        "qwix_default",
        "The default run's front deployed with qwix's PTQ (--export-qwix)",
        ("-m", "experiments.timit_silago", "--export-qwix", "--out", "{dir}"),
        qwix_values,
    ),
    Figure(
        "flax_adapter",
        "The SRU through the Flax adapter vs its contract: errors and genomes/s",
        (
            "-m",
            "benchmarks.flax_adapter",
            "--repeats",
            "15",
            "--warmup",
            "2",
            *JSON_OUT,
        ),
        _JSON,
    ),
    Figure(
        "vision_beacons",
        "VGG-9 on digits: inference-only vs beacon-based search on Bitfusion",
        (
            "-m",
            "experiments.vision_mohaq",
            "--platform",
            "bitfusion",
            "--beacons",
            "--verify-retrain",
            "2",
            "--out",
            "{dir}",
        ),
        beacon_values,
    ),
    Figure(
        "switching",
        "Switching-aware vs uniform QAT on digits at 2-4 bits, 3 seeds, intervals",
        (
            "-m",
            "experiments.switching_vgg",
            "--runs",
            "u2,s2,u3,s3,u4",
            "--seeds",
            "3",
            "--lr-band",
            "0",
            "--out",
            "{dir}",
        ),
        _in("results.json", json_values),
    ),
    Figure(
        "vision_bitfusion",
        "VGG-9 searched by MOHAQ on Bitfusion (digits)",
        ("-m", "experiments.vision_mohaq", "--platform", "bitfusion", "--out", "{dir}"),
        experiment_values,
    ),
    Figure(
        "vision_reconfig",
        "VGG-9 searched by MOHAQ on the 2-4-bit reconfigurable accelerator (digits)",
        ("-m", "experiments.vision_mohaq", "--platform", "reconfig", "--out", "{dir}"),
        experiment_values,
    ),
    Figure(
        "domain_gap",
        "The default float baseline on the shared real recordings (given phone times)",
        ("-m", "experiments.eval_transcribed", *JSON_OUT),
        _JSON,
    ),
    Figure(
        "aligner",
        "pocketsphinx forced alignment vs independent phone boundaries",
        ("-m", "benchmarks.aligner_error", *JSON_OUT),
        _JSON,
    ),
    Figure(
        "population_eval",
        "Population evaluation: batched vs loop vs PyTorch + sru, decoder share",
        (
            "-m",
            "benchmarks.population_eval",
            "--pop",
            "64",
            "--chunk",
            "1",
            "--chunks",
            "1,2,4,8,full",
            "--repeats",
            "3",
            *JSON_OUT,
        ),
        _JSON,
    ),
    Figure(
        "nsga2",
        "NSGA-II generation step vs pymoo",
        ("-m", "benchmarks.nsga2", *JSON_OUT),
        _JSON,
    ),
    Figure(
        "paper_scale",
        "Paper scale: streamed evaluation memory and speed (400 dev utterances)",
        (
            "-m",
            "benchmarks.paper_scale",
            "--dev-utts",
            "400",
            "--pop",
            "2",
            *JSON_OUT,
        ),
        _JSON,
    ),
    Figure(
        "paper_scale_1600",
        "Paper scale: evaluation memory with 1600 dev utterances (one call)",
        (
            "-m",
            "benchmarks.paper_scale",
            "--dev-utts",
            "1600",
            "--pop",
            "2",
            "--calls",
            "1",
            "--part",
            "eval",
            *JSON_OUT,
        ),
        _JSON,
    ),
    Figure(
        "search_quality",
        "Search quality against the true front",
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
            "10",
            *OUT_JSON,
        ),
        _JSON,
    ),
    Figure(
        "search_quality_default",
        "Search quality against the true front of the main job's model (all dev)",
        (
            "-m",
            "benchmarks.search_quality",
            "--model",
            "default",
            "--seeds",
            "10",
            *OUT_JSON,
        ),
        _JSON,
    ),
)


def _fill(text: str, figure: Figure, out: str) -> str:
    return text.replace("{dir}", os.path.join(out, figure.name)).replace("{out}", out)


def command(figure: Figure, out: str) -> list[str]:
    """A figure's command line (``{out}``: all figures' folder, ``{dir}``: its own)."""
    return [sys.executable] + [_fill(a, figure, out) for a in figure.args]


def environment(figure: Figure, out: str) -> dict[str, str]:
    """The figure's extra environment variables, filled in."""
    return {k: _fill(v, figure, out) for k, v in figure.env}


# --------------------------------------------------------------------------------------
# Running figures and recording them.
# --------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict:
    """CPU model, cores, 1-minute load and whether a GPU is visible (no JAX import)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd")
    return {
        "cpu": cpu or os.uname().machine,
        "cores": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "gpu": gpu,
    }


def run(figure: Figure, out: str) -> dict:
    """Runs one figure's command; its figures.json record (``values`` if it worked)."""
    cmd = command(figure, out)
    folder = os.path.join(REPO, out, figure.name)  # commands run in the repository
    os.makedirs(folder, exist_ok=True)
    env = environment(figure, out)
    shown = " ".join([f"{k}={v}" for k, v in env.items()] + ["python"] + cmd[1:])
    print(f"\n### {figure.name}: {figure.what}\n$ {shown}", flush=True)
    record = {
        "what": figure.what,
        "command": shown,
        "commit": _git("rev-parse", "--short=12", "HEAD"),
        "uncommitted_changes": bool(
            _git("status", "--porcelain", "--untracked-files=no")
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
    }
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env})
    _, status, usage = os.wait4(child.pid, 0)  # this command's own peak memory
    child.returncode = code = os.waitstatus_to_exitcode(status)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    record["exit"] = code
    print(
        f"-> exit {code}, {record['wall_s']:.0f} s, "
        f"peak RSS {record['peak_rss_mb']:.0f} MB"
    )
    if code == 0:
        try:
            record["values"] = dict(sorted(figure.extract(folder).items()))
        except (OSError, KeyError, ValueError, ElementTree.ParseError) as exc:
            record["error"] = f"extraction failed: {type(exc).__name__}: {exc}"
            print(f"-> {record['error']}")
    return record


def adopt(name: str, folder: str, commit: str, figures_json: str) -> int:
    """Records figure ``name`` from a folder its command already wrote."""
    figure = next(f for f in FIGURES if f.name == name)
    shown = " ".join(["python"] + command(figure, folder)[1:])
    stamp = max(os.path.getmtime(os.path.join(folder, f)) for f in os.listdir(folder))
    record = {
        "what": figure.what,
        "command": shown,
        "commit": commit,
        "adopted": f"run by its command outside readme_figures, read from {folder}",
        "date": datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "machine": {**machine(), "load_1min": None},  # not known after the fact
        "exit": 0,
        "values": dict(sorted(figure.extract(folder).items())),
    }
    figures = load(figures_json)
    figures[name] = record
    save(figures_json, figures)
    print(f"{name}: {len(record['values'])} values adopted from {folder}")
    return 0


def load(path: str) -> dict:
    """figures.json's ``figures`` (name -> record); empty when the file is absent."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)["figures"]


def save(path: str, figures: dict) -> None:
    doc = {
        "about": "Every measured README figure: python -m benchmarks.readme_figures "
        "writes it, --check compares README.md with it.",
        "figures": dict(sorted(figures.items())),
    }
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def values(figures: dict) -> dict[str, float]:
    """Every key of figures.json: ``NAME.KEY``, each run's wall time and RSS, and its
    machine's numbers (``NAME.machine.cores``, ``NAME.machine.load_1min``)."""
    out = {}
    for name, record in figures.items():
        for key, value in record.get("values", {}).items():
            out[f"{name}.{key}"] = value
        if "wall_s" in record:
            out[f"{name}.wall_s"] = record["wall_s"]
            out[f"{name}.wall_min"] = record["wall_s"] / 60.0
        if "peak_rss_mb" in record:
            out[f"{name}.peak_rss_mb"] = record["peak_rss_mb"]
            out[f"{name}.peak_rss_gb"] = record["peak_rss_mb"] / 1024.0
        for field, value in flatten(record.get("machine", {})).items():
            out[f"{name}.machine.{field}"] = value
    return out


# --------------------------------------------------------------------------------------
# --check: README.md against figures.json.
# --------------------------------------------------------------------------------------

_NUM = (
    r"[-+\u2212]?\d{1,3}(?:[,\u202f]\d{3})+(?:\.\d+)?"  # 17,638
    r"|[-+\u2212]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"  # 0.279, 412, 2.98e7
)
KEYED = re.compile(r"<!--\s*f:([\w.\-]+(?:\*[\d.]+)?)\s*-->(\**)(" + _NUM + ")")
GIVEN = re.compile(r"<!--\s*given\s*-->(\**)(" + _NUM + ")")
ANY_NUMBER = re.compile(r"(?<![\w.])(" + _NUM + r")(?![\d])")
COMMENT = re.compile(r"<!--.*?-->")
BOLD = re.compile(r"\*\*(.+?)\*\*")
MEASURED_BEGIN = re.compile(r"<!--\s*measured\s*-->")
MEASURED_END = re.compile(r"<!--\s*/measured\s*-->")


def written_matches(written: str, value: float) -> tuple[bool, str]:
    """Whether ``value`` rounded to the precision of ``written`` reads ``written``.

    Returns (match, the value as it would be written).
    """
    text = written.replace("\u2212", "-").replace(",", "").replace("\u202f", "")
    if "e" in text.lower():
        mantissa = text.lower().split("e")[0]
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        expected = f"{value:.{digits}e}"
        return float(expected) == float(text), expected
    digits = len(text.split(".")[1]) if "." in text else 0
    expected = f"{value:.{digits}f}"
    if expected.startswith("-") and float(expected) == 0.0:
        expected = expected[1:]
    return expected == text.lstrip("+"), expected


def _mask_sourced(line: str) -> str:
    """``line`` with keyed and given numbers replaced by a sign (bold kept)."""
    line = KEYED.sub(lambda m: m.group(2) + "\u00a7", line)
    return GIVEN.sub(lambda m: m.group(1) + "\u00a7", line)


def _unkeyed(text: str) -> list[str]:
    """Numbers left in a masked ``text`` (see :func:`_mask_sourced`)."""
    text = re.sub(r"`[^`]*`", " ", text)  # commands and flags are not figures
    return ANY_NUMBER.findall(COMMENT.sub(" ", text))


def _starts_with_number(cell: str) -> bool:
    plain = COMMENT.sub("", cell).lstrip("*_ ").replace("\u2212", "-")
    return bool(re.match(r"[-+]?(\d|\u00a7)", plain))


def _table_cells(line: str) -> list[str] | None:
    stripped = line.strip()
    if not stripped.startswith("|"):
        return None
    return [c.strip() for c in stripped.strip("|").split("|")]


def check(readme_text: str, known: dict[str, float]) -> tuple[list[str], int]:
    """Problems of a README against figures.json's values, and the keys that matched.

    Returns:
      (one line per problem, ``"line N: ..."``; number of keyed numbers that match).
    """
    problems, matched = [], 0
    measured = False
    lines = readme_text.splitlines()
    in_code = False
    for n, line in enumerate(lines, start=1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for key, _, written in KEYED.findall(line):
            name, _, scale = key.partition("*")
            if name not in known:
                problems.append(
                    f"line {n}: {written}: key {name} is not in figures.json"
                )
                continue
            value = known[name] * (float(scale) if scale else 1.0)
            ok, expected = written_matches(written, value)
            if ok:
                matched += 1
            else:
                problems.append(
                    f"line {n}: {written} differs from {key} = {value:.6g} "
                    f"(written at that precision: {expected})"
                )
        if MEASURED_BEGIN.search(line):
            measured = True
        if MEASURED_END.search(line):
            measured = False
            continue
        if not measured:
            continue
        masked = _mask_sourced(line)
        cells = _table_cells(masked)
        if cells is None:
            spans = [(b, "bold") for b in BOLD.findall(masked)]
        elif set(line.strip()) <= set("|-: "):
            continue  # the separator row
        elif (
            n < len(lines) and set(lines[n].strip()) <= set("|-: ") and "-" in lines[n]
        ):
            continue  # the header row (the separator follows)
        else:
            spans = []
            for cell in cells:
                if _starts_with_number(cell):
                    spans.append((cell, "table cell"))
                else:
                    spans += [(b, "bold") for b in BOLD.findall(cell)]
        for text, where in spans:
            for number in _unkeyed(text):
                problems.append(
                    f"line {n}: {number} has no source ({where} "
                    f"{COMMENT.sub('', text).strip()!r} without a key)"
                )
    return _unique(problems), matched


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def run_check(readme: str, figures_json: str) -> int:
    with open(readme) as f:
        text = f.read()
    figures = load(figures_json)
    problems, matched = check(text, values(figures))
    name = os.path.relpath(readme)
    for p in problems:
        print(f"{name}: {p}")
    if problems:
        print(
            f"{len(problems)} README number(s) differ from "
            f"{os.path.relpath(figures_json)}"
            f" or have no source; {matched} match"
        )
        return 1
    print(f"{name}: all {matched} keyed numbers match {os.path.relpath(figures_json)}")
    return 0


# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=os.path.join(REPO, "runs", "readme"),
        help="output folder (default: runs/readme in the repository)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[f.name for f in FIGURES],
        default=None,
        help="run only these figures and merge them into figures.json "
        f"({', '.join(f.name for f in FIGURES)})",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the commands, run nothing"
    )
    parser.add_argument(
        "--show",
        nargs="?",
        const="",
        default=None,
        metavar="PREFIX",
        help="print figures.json's keys (starting with PREFIX) and values",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the numbers README.md quotes with figures.json (no rerun)",
    )
    parser.add_argument(
        "--adopt",
        nargs=2,
        metavar=("FOLDER", "COMMIT"),
        default=None,
        help="with one --only NAME: record NAME from FOLDER, which its command "
        "(--out FOLDER) already wrote at COMMIT (for runs too long to repeat); the "
        "record says so and keeps no wall time of its own",
    )
    parser.add_argument("--figures", default=FIGURES_JSON, help=argparse.SUPPRESS)
    parser.add_argument("--readme", default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.adopt:
        if not args.only or len(args.only) != 1:
            parser.error("--adopt needs exactly one --only NAME")
        return adopt(args.only[0], *args.adopt, args.figures)
    if args.check:
        return run_check(args.readme, args.figures)
    if args.show is not None:
        for key, value in sorted(values(load(args.figures)).items()):
            if key.startswith(args.show):
                print(f"{key} = {value:.6g}")
        return 0
    chosen = [f for f in FIGURES if args.only is None or f.name in args.only]
    if args.list:
        args.out = os.path.relpath(os.path.abspath(args.out), REPO)
        for f in chosen:
            env = [f"{k}={v}" for k, v in environment(f, args.out).items()]
            print(
                f"{f.name:16s} {' '.join(env + ['python'] + command(f, args.out)[1:])}"
            )
        return 0
    figures = load(args.figures)
    failed = []
    out = os.path.relpath(os.path.abspath(args.out), REPO)  # as the commands see it
    for figure in chosen:
        record = run(figure, out)
        if "values" in record:
            figures[figure.name] = record
            save(args.figures, figures)  # after each figure: a later failure keeps it
        else:
            failed.append(figure.name)
    print(
        f"\n{os.path.relpath(args.figures)}: {len(chosen) - len(failed)} figure(s) "
        f"written"
        + (f"; failed (old entries kept): {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
