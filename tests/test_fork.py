"""Forking: a toy model AND a toy accelerator, both defined in this file, searched.

What a researcher bringing their own pieces writes: a model module implementing the
model contract (:mod:`mohaq_jax.models`: ``Config``, ``sites``, ``init_params``,
``apply``, ``capture`` and the evaluator's ``first_stage_sites`` / ``first_stage`` /
``rest_stages``) and a :class:`~mohaq_jax.hardware.Platform` with its own metrics and
genome space; one registry line each (here ``monkeypatch.setitem``). Nothing else in
the library changes, and the MOHAQ search runs end to end on them: genome space from
the model's sites, batched evaluation, the platform's costs, constraints, the front and
the report. Errors are checked against this file's own numpy forward of the toy model,
costs against hand formulas.
"""

import csv
import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware, models
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.hardware import Metric, Platform
from mohaq_jax.models import qmodel
from mohaq_jax.models.sites import Site
from mohaq_jax.numerics import quantize
from mohaq_jax.search import mohaq, report

# ------------------------------------------------------------ the toy model (contract)


@dataclasses.dataclass(frozen=True)
class Config:
    """A framewise two-layer perceptron (no recurrence)."""

    n_features: int = 5
    hidden: int = 7
    n_classes: int = 4

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sites(config: Config) -> tuple[Site, ...]:
    return (
        Site("dense1", "dense", config.n_features, config.hidden, n_bias=config.hidden),
        Site("out", "fc", config.hidden, config.n_classes, n_bias=config.n_classes),
    )


def init_params(key, config: Config) -> dict:
    k1, k2 = jax.random.split(key)
    return {
        "dense1": {
            "kernel": jax.random.normal(k1, (config.n_features, config.hidden)),
            "bias": jnp.zeros(config.hidden),
        },
        "out": {
            "kernel": jax.random.normal(k2, (config.hidden, config.n_classes)),
            "bias": jnp.zeros(config.n_classes),
        },
    }


def _act(x, site, bits_a, clips):
    return x if bits_a is None else quantize.fake_quant(x, bits_a[site], clips[site])


def _dense(x, layer):
    """``x (..., n_in) @ kernel + bias``, for one utterance or a batch."""
    bias = layer["bias"].reshape((1,) * (x.ndim - 1) + (-1,))
    return x @ layer["kernel"] + bias


def _hidden(params, x, bits_a, clips):
    return jax.nn.relu(_dense(_act(x, 0, bits_a, clips), params["dense1"]))


def _logits(params, h, bits_a, clips):
    return _dense(_act(h, 1, bits_a, clips), params["out"])


def apply(params, config, features, length, act_bits=None, act_clip=None, **_):
    del config, length  # framewise: padding frames do not touch valid ones
    return _logits(
        params, _hidden(params, features, act_bits, act_clip), act_bits, act_clip
    )


def capture(params, config, features, length):
    del config, length
    return [features, _hidden(params, features, None, None)]


def first_stage_sites(config: Config) -> tuple[int, ...]:
    del config
    return (0,)


def first_stage(config, qparams, bits_a, clips, batch):
    del config
    return _hidden(qparams, batch[0], bits_a, clips)


def rest_stages(config, qparams, bits_a, clips, hidden, batch):
    del config, batch
    return _logits(qparams, hidden, bits_a, clips)


# -------------------------------------------------------- the toy accelerator (contract)

BITS = (2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Spec:
    lanes_8bit: float = 2.0  # MACs per cycle at 8 bits; 2x at 4, 4x at 2
    pj_per_bit_read: float = 0.5


def costs(bits_w, bits_a, layers, spec: Spec):
    width = jnp.maximum(bits_w, bits_a).astype(jnp.float32)
    cycles = jnp.sum(jnp.asarray(layers.macs) / (spec.lanes_8bit * 8.0 / width))
    bits = jnp.sum(bits_w.astype(jnp.float32) * jnp.asarray(layers.n_weights))
    return {"cycles": cycles, "read_pj": bits * spec.pj_per_bit_read}


PLATFORM = Platform(
    name="toy_npu",
    spaces=("toy_space",),
    spec=Spec(),
    costs=costs,
    weight_bits=BITS,
    act_bits=BITS,
    metrics=(
        Metric("cycles", "cycles/frame", False, "MACs / lanes"),
        Metric("read_pj", "pJ/frame", False, "weight bits read"),
    ),
    memory_metric=None,
    memory_limit_mb=float("inf"),
    description="toy NPU of the fork test",
)


def hand_costs(space, genomes, config=Config()):
    bits = space.bits_table[np.arange(space.n_genes)[None], genomes]
    w = bits[:, list(space.w_gene)].astype(np.float64)
    a = bits[:, list(space.a_gene)].astype(np.float64)
    hidden = config.hidden
    macs = np.asarray([config.n_features * hidden, hidden * config.n_classes], float)
    cycles = np.sum(macs / (2.0 * 8.0 / np.maximum(w, a)), 1)
    return {"cycles": cycles, "read_pj": 0.5 * (w @ macs)}


# ----------------------------------------------------------------------------- tests


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(models.MODELS, "toy_mlp", __name__)  # this module
    monkeypatch.setitem(hardware.PLATFORMS, "toy_npu", PLATFORM)
    monkeypatch.setitem(
        genome.SPACES,
        "toy_space",
        lambda s: genome.separate_space(s, BITS, "toy_space"),
    )


def numpy_frame_errors(params, calib, space, genomes, feats, labels, lengths):
    """Frame error of each genome by a plain numpy forward of the toy model."""

    def fq(x, bits, clip):
        levels = 2.0 ** (bits - 1) - 1
        clip = np.maximum(np.broadcast_to(clip, x.shape), np.finfo(np.float32).tiny)
        step = clip / levels
        return np.clip(np.round(np.clip(x, -clip, clip) / step), -levels, levels) * step

    out = []
    for g in genomes:
        bits_w, bits_a = (np.asarray(b) for b in space.decode(jnp.asarray(g)))
        idx = {b: i for i, b in enumerate(quantize.BIT_OPTIONS)}
        w1 = fq(
            np.asarray(params["dense1"]["kernel"], np.float64),
            bits_w[0],
            np.asarray(calib.w_clip[0])[idx[int(bits_w[0])]],
        )
        w2 = fq(
            np.asarray(params["out"]["kernel"], np.float64),
            bits_w[1],
            np.asarray(calib.w_clip[1])[idx[int(bits_w[1])]],
        )
        a_clip = np.asarray(calib.a_clip)
        x = fq(np.asarray(feats, np.float64), bits_a[0], a_clip[0, idx[int(bits_a[0])]])
        h = np.maximum(x @ w1, 0.0)
        h = fq(h, bits_a[1], a_clip[1, idx[int(bits_a[1])]])
        pred = np.argmax(h @ w2, -1)
        valid = np.arange(feats.shape[1])[None] < np.asarray(lengths)[:, None]
        out.append(np.sum((pred != np.asarray(labels)) & valid) / valid.sum())
    return np.asarray(out)


def test_toy_model_and_toy_platform_searched_end_to_end(registered, tmp_path):
    model = models.get_model("toy_mlp")
    assert model is sys.modules[__name__]
    cfg = Config()
    assert models.model_of(cfg) is model
    params = init_params(jax.random.key(0), cfg)
    k_x, k_y = jax.random.split(jax.random.key(1))
    feats = jax.random.normal(k_x, (4, 10, cfg.n_features))
    lengths = jnp.asarray([10, 8, 6, 3], jnp.int32)
    labels = jax.random.randint(k_y, (4, 10), 0, cfg.n_classes)
    labels = jnp.where(jnp.arange(10)[None] < lengths[:, None], labels, -1)
    batch = (feats, labels, lengths)
    calib = qmodel.calibrate(params, cfg, feats, lengths, "max", "max")

    platform = hardware.get_platform("toy_npu")
    space = genome.get_space(platform.space_name, model.sites(cfg))
    assert space.n_genes == 4 and space.gene_names[0].endswith("dense1")
    objectives = ("error", "cycles", "read_pj")
    maximize = platform.check_objectives(objectives)
    assert maximize == ()
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, np.arange(cfg.n_classes), params, calib, genome_batch=3
    )
    config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=8,
        n_offspring=3,
        n_generations=4,
        max_error=0.9,
        memory_metric=None,
        error_metric="frame_error",
    )
    extremes = hand_costs(space, np.stack([0 * space.upper, space.upper]))
    problem = mohaq.QuantizationProblem(
        evaluator,
        platform.make_cost_fn(space),
        batch,
        config,
        ideal=[0.0, extremes["cycles"][0], extremes["read_pj"][0]],
        nadir=[0.9, extremes["cycles"][1], extremes["read_pj"][1]],
    )
    result = mohaq.run_search(problem, tmp_path, progress=False)

    m = result.metrics
    assert len(result.genomes) == 8 + 4 * 3 == result.state.n_evaluated
    want = hand_costs(space, result.genomes)
    for key in ("cycles", "read_pj"):
        np.testing.assert_allclose(m[key], want[key], rtol=1e-5, err_msg=key)
    reference = numpy_frame_errors(
        params, calib, space, result.genomes, feats, labels, lengths
    )
    np.testing.assert_allclose(m["error"], reference, atol=1e-6)
    assert len(set(np.round(reference, 6))) > 1  # the bits matter
    np.testing.assert_array_equal(result.feasible, reference <= 0.9)
    points = np.stack([reference, want["cycles"], want["read_pj"]], 1)
    assert result.front.any()
    for i in np.flatnonzero(result.front):
        others = points[result.feasible]
        assert not (
            np.all(others <= points[i], 1) & np.any(others < points[i], 1)
        ).any()

    paths = report.write_outputs(
        str(tmp_path),
        space,
        result,
        objectives,
        {"error": m["error"][result.front]},
        [{"name": "float32", "dev_error": 0.5, "test_error": 0.5}],
        {"platform": "toy_npu", "model": "toy_mlp"},
        title="fork",
    )
    with open(paths["pareto.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == int(result.front.sum())
    assert {"cycles", "read_pj"} <= set(rows[0])


def test_toy_model_and_toy_platform_through_the_cli(registered, tmp_path, monkeypatch):
    """The same two registry lines suffice for the command line: ``--model toy_mlp``
    on an experiment of platform ``toy_npu`` trains, searches and reports; its
    baseline is cached under a key holding the model's name."""
    from mohaq_jax.orchestration import cli, prepare
    from mohaq_jax.orchestration.pipeline import SearchExperiment

    monkeypatch.setenv("MOHAQ_CACHE", str(tmp_path / "cache"))
    experiment = SearchExperiment(
        platform="toy_npu", objectives=("error", "cycles", "read_pj"), title="toy"
    )
    out = tmp_path / "run"
    argv = [
        "--espeak-size", "tiny", "--model", "toy_mlp", "--hidden", "7",
        "--epochs", "1", "--per", "smoothed", "--error-metric", "frame_error",
        "--pop", "4", "--offspring", "2", "--generations", "1", "--no-progress",
        "--out", str(out),
    ]  # fmt: skip
    summary = cli.search_main(argv, "toy search", experiment, out=str(out))
    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["n_pareto"] >= 1
    space = summary["problem"].space
    assert space.name == "toy_space"
    genomes = np.asarray([[int(v) for v in r["genome"].split()] for r in rows])
    toy_config = summary["problem"].evaluator.config
    assert toy_config.hidden == 7  # --hidden reached the toy's Config
    want = hand_costs(space, genomes, toy_config)
    np.testing.assert_allclose([float(r["cycles"]) for r in rows], want["cycles"])
    # a model registered under another name never loads this one's baseline
    run_cfg = cli.parse_config(
        cli.build_parser("toy", cli.SEARCH_SECTIONS), argv, lambda c: None
    )
    corpus = prepare.load_data(run_cfg.data, progress=False)
    model_cfg = prepare.model_config(run_cfg.model, corpus)
    train_cfg = prepare.train_config(run_cfg.training)
    mine = prepare.baseline_dir(run_cfg, corpus, model_cfg, train_cfg)
    assert os.path.isdir(mine)
    monkeypatch.setitem(models.MODELS, "toy_copy", __name__)
    copy_cfg = dataclasses.replace(
        run_cfg, model=dataclasses.replace(run_cfg.model, name="toy_copy")
    )
    assert prepare.baseline_dir(copy_cfg, corpus, model_cfg, train_cfg) != mine
