"""One metric per run, chosen on dev and reported on test: a tiny beacon search.

The run (``--beacons``: an inference-only and a beacon-based search, a few Pareto
solutions retrained, the comparison) is checked against independent recomputations:
every error column is recomputed with the run's metric (decoded PER, from the
baseline's decoder) by :func:`mohaq_jax.train.evaluate` on the weights it claims to
come from, and every test error belongs to the model chosen on dev.
"""

import os
import types

import jax
import numpy as np
import pytest

from mohaq_jax import train
from mohaq_jax.numerics import bootstrap
from mohaq_jax.orchestration import measure

TINY = ["--espeak-size", "tiny", "--hidden", "16", "--layers", "2", "--proj", "8"]
TINY += ["--epochs", "1", "--pop", "6", "--offspring", "3", "--generations", "2"]
TINY += ["--calib-utts", "4", "--calib", "max", "--bootstrap", "50", "--no-progress"]
BEACONS = ["--beacons", "--max-beacons", "2", "--beacon-epochs", "1"]
BEACONS += ["--verify-retrain", "2", "--beacon-threshold", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from experiments import timit_bitfusion
    from mohaq_jax.orchestration import cli

    root = tmp_path_factory.mktemp("beacons")
    argv = TINY + BEACONS + ["--out", str(root / "out")]
    os.environ["MOHAQ_CACHE"] = str(root / "cache")
    try:
        summary = timit_bitfusion.main(argv)
    finally:
        del os.environ["MOHAQ_CACHE"]
    parser = cli.build_parser(timit_bitfusion.__doc__, cli.SEARCH_SECTIONS)
    cfg = cli.parse_config(parser, argv)
    # what the run was prepared with, as the beacon search holds it
    problem = summary["beacons"]["problem"]
    ev = problem.evaluator
    setup = types.SimpleNamespace(
        model_config=ev.config,
        corpus=problem.corpus,
        params=ev.params,
        calib=ev.calib,
        decoder=ev.decoder,
        per_mode=ev.per_mode,
    )
    return {"root": root, "summary": summary, "setup": setup, "cfg": cfg}


def _decoded(setup, params, bits_w, bits_a, split):
    """Independent reading of one model's error: the training code's evaluator."""
    return train.evaluate(
        params,
        setup.model_config,
        getattr(setup.corpus, split),
        setup.corpus.fold39,
        bits_w,
        bits_a,
        setup.calib,
        decoder=setup.decoder,
        per_mode="decoded",
    )["per"]


def _slot(state, slot):
    return jax.tree.map(lambda leaf: leaf[slot], state.extra.stacked)


def test_every_error_column_is_decoded_per(run):
    setup, summary = run["setup"], run["summary"]
    assert setup.per_mode == "decoded" and setup.decoder is not None
    problem = summary["beacons"]["problem"]
    result = summary["beacons"]["result"]
    m, state = result.metrics, result.state
    assert state.extra.count >= 1, "the tiny run made no beacon"
    space = problem.space
    for i in np.flatnonzero(result.front):
        bits_w, bits_a = (np.asarray(x) for x in space.decode(result.genomes[i]))
        ptq = _decoded(setup, setup.params, bits_w, bits_a, "dev")
        assert m["ptq_error"][i] == pytest.approx(ptq, abs=1e-6)
        slot = int(m["beacon"][i])
        if slot:
            est = _decoded(setup, _slot(state, slot), bits_w, bits_a, "dev")
            assert m["beacon_error"][i] == pytest.approx(est, abs=1e-6)
    # the beacons' own PTQ and QAT dev errors (the beacon table)
    for info in state.extra.info:
        assert info["rate"] == "per" and info["per_mode"] == "decoded"
        bits_w, bits_a = (
            np.asarray(x) for x in space.decode(np.asarray(info["genome"]))
        )
        ptq = _decoded(setup, setup.params, bits_w, bits_a, "dev")
        qat = _decoded(setup, _slot(state, info["slot"]), bits_w, bits_a, "dev")
        assert info["ptq_dev_error"] == pytest.approx(ptq, abs=1e-6)
        assert info["qat_dev_error"] == pytest.approx(qat, abs=1e-6)
    # retrained: QAT from the same start keeps the best dev error in the same reading,
    # so it is never above the genome's decoded PTQ error
    assert summary["retrained"]
    for i, err in summary["retrained"].items():
        assert 0.0 <= err <= m["ptq_error"][i] + 1e-9


def test_test_errors_belong_to_the_model_chosen_on_dev(run):
    setup, summary = run["setup"], run["summary"]
    b = summary["beacons"]
    problem, result = b["problem"], b["result"]
    front = np.flatnonzero(result.front)
    m = result.metrics
    chosen = measure.chosen_models(problem, result.state, result.genomes[front])
    for j, i in enumerate(front):
        won = m["beacon"][i] > 0 and m["beacon_error"][i] <= m["ptq_error"][i]
        assert chosen[j] == (int(m["beacon"][i]) if won else 0)
        bits_w, bits_a = (
            np.asarray(x) for x in problem.space.decode(result.genomes[i])
        )
        params = setup.params if chosen[j] == 0 else _slot(result.state, chosen[j])
        test = _decoded(setup, params, bits_w, bits_a, "test")
        assert b["test_error"][j] == pytest.approx(test, abs=1e-6)
    # the intervals are the same models': their rates are the reported errors
    iv = b["intervals"]
    np.testing.assert_allclose(
        iv["test"]["genomes"]["rate"], b["test_error"], rtol=1e-5
    )
    np.testing.assert_allclose(
        iv["dev"]["genomes"]["rate"], m["error"][front], rtol=1e-5
    )


def test_beacon_comparison_reports_dev_and_test_with_paired_intervals(run):
    summary, cfg = run["summary"], run["cfg"]
    gains = summary["gains"]
    assert gains
    plain, beacons = summary["inference_only"], summary["beacons"]
    pm, bm = plain["result"].metrics, beacons["result"].metrics
    for g in gains:
        # the solutions were chosen on dev: lowest dev error at that speedup
        pf = np.flatnonzero(plain["result"].front & (pm["speedup"] >= g["speedup"]))
        assert pm["error"][g["plain_index"]] == pm["error"][pf].min()
        assert g["dev_plain"] == pytest.approx(pm["error"][g["plain_index"]], abs=1e-6)
        assert g["dev_beacon"] == pytest.approx(
            bm["error"][g["beacon_index"]], abs=1e-6
        )
        for split in ("dev", "test"):
            red = g[f"{split}_reduction"]
            assert red == pytest.approx(g[f"{split}_plain"] - g[f"{split}_beacon"])
            assert g[f"{split}_low"] <= g[f"{split}_high"]
    # the paired interval, recomputed by hand for the first level on test
    g = gains[0]
    rng = np.random.default_rng(1)
    e = rng.integers(0, 5, (2, 9)).astype(float)
    t = np.full((2, 9), 5.0)
    ci = bootstrap.bootstrap_intervals(
        e[1:], t[1:], 200, 0.9, 0, reference=(e[0], t[0])
    )
    draws = bootstrap.resample_indices(9, 200, 0)
    diff = e[1][draws].sum(1) / t[1][draws].sum(1) - e[0][draws].sum(1) / t[0][
        draws
    ].sum(1)
    assert ci["diff_low"][0] == pytest.approx(np.quantile(diff, 0.05))
    text = open(summary["report"]).read()
    assert "test reduction" in text and "phone error rate (PER), decoded" in text
    assert f"{100 * g['test_reduction']:.2f}" in text
    assert cfg.search.per == "decoded"


def test_outputs_record_reading_provenance_sites_and_placeholders(run):
    import json

    summary, setup = run["summary"], run["setup"]
    out = summary["inference_only"]["out"]
    doc = json.loads(open(os.path.join(out, "pareto.json")).read())
    settings = doc["settings"]
    assert settings["error_reading"].startswith("phone error rate (PER), decoded")
    data = settings["data_provenance"]
    assert data["corpus"] == "espeak" and data["synthetic"] is True
    for name, split in setup.corpus.splits().items():
        assert data["splits"][name]["utterances"] == len(split)
        assert data["splits"][name]["speakers"] == len(set(split.speakers))
    # the sites come from the model: 2 SRU layers, one projection (before layer 2)
    assert settings["sites"] == ["sru1", "proj1", "sru2", "fc"]
    assert set(settings["placeholders"]) == {"energy_pj", "energy_buffer_pj"}
    text = open(os.path.join(out, "report.md")).read()
    assert "- errors: phone error rate (PER), decoded" in text
    assert "- data: espeak (synthesized speech, size tiny" in text
    assert "- sites searched (4, from the model): sru1, proj1, sru2, fc" in text
    assert "**energy_pj rests on PLACEHOLDER constants**" in text
    assert "(placeholder constants)" in text  # the 16-bit baseline's energy note
