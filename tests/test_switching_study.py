"""The seed study of switching-aware vs uniform QAT: paired intervals, comparisons,
operating points (hand-made per-image records), and a tiny two-seed VGG run."""

import json

import numpy as np
import pytest

from mohaq_jax.numerics import bootstrap
from mohaq_jax.orchestration import switching_study


def _paired_reference(errors, reference, n_resamples, confidence, seed=0):
    """Independent reference: a plain loop over the same image draws."""
    draws = bootstrap.resample_indices(len(errors), n_resamples, seed)
    diffs = [np.mean(errors[d]) - np.mean(reference[d]) for d in draws]
    alpha = (1 - confidence) / 2
    return np.quantile(diffs, alpha), np.quantile(diffs, 1 - alpha)


def test_paired_difference_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    reference = (rng.random(80) < 0.1).astype(float)
    errors = np.maximum(reference, rng.random(80) < 0.15)  # never better, often worse
    got = switching_study.paired_difference(errors, reference, 300, 0.9)
    low, high = _paired_reference(errors, reference, 300, 0.9)
    assert got["diff"] == pytest.approx(errors.mean() - reference.mean())
    assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
    # a model that is never better than its reference and worse on some images
    assert got["low"] >= 0.0 and got["excludes_zero"] == (got["low"] > 0)


def test_identical_models_have_a_zero_interval():
    errors = np.array([1.0, 0, 0, 1, 0])
    got = switching_study.paired_difference(errors, errors, 100, 0.95)
    assert (got["diff"], got["low"], got["high"]) == (0.0, 0.0, 0.0)
    assert not got["excludes_zero"]


def _run(bits, switching, bpw, dev_wrong, test_wrong, extra=0.0):
    return {
        "bits_w": bits,
        "switching": switching,
        "extra_share": extra,
        "compression": {
            "bits_per_weight": bpw,
            "compression_vs_uniform4": 4.0 / bpw,
            "energy_rel_uniform4": bpw / 4.0,
        },
        "dev_wrong": dev_wrong,
        "test_wrong": test_wrong,
        "dev_error": float(np.mean(dev_wrong)),
        "test_error": float(np.mean(test_wrong)),
    }


def _seed(seed, float_w, u2, s2, u3, u4):
    def flt(w):
        return {"dev_wrong": w, "test_wrong": w, "dev_error": np.mean(w),
                "test_error": np.mean(w)}  # fmt: skip

    return {
        "seed": seed,
        "float": flt(float_w),
        "runs": {
            "u2": _run(2, False, 2.0, u2, u2),
            "s2": _run(2, True, 2.25, s2, s2, extra=0.05),
            "u3": _run(3, False, 3.0, u3, u3),
            "u4": _run(4, False, 4.0, u4, u4),
        },
    }


# 8 images; two seeds. Hand values: float 0/8, u2 (5+4)/16, s2 (1+1)/16,
# u3 1/16, u4 1/16 per split (dev = test here).
PER_SEED = [
    _seed(
        0,
        [0] * 8,
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ),
    _seed(
        1,
        [0] * 8,
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
    ),
]


def test_summarize_errors_comparisons_and_operating_points():
    st = switching_study.summarize(PER_SEED, n_resamples=200, confidence=0.95)
    models = st["models"]
    assert st["seeds"] == [0, 1] and st["n_images"] == {"dev": 8, "test": 8}
    assert models["u2"]["test"]["error"] == pytest.approx(9 / 16)
    assert models["s2"]["dev"]["error"] == pytest.approx(2 / 16)
    assert models["u2"]["test"]["per_seed"] == [5 / 8, 4 / 8]
    assert models["float"]["bits_per_weight"] == 32.0
    assert models["s2"]["extra_share"] == pytest.approx(0.05)
    by_pair = {(c["model"], c["what"]): c for c in st["comparisons"]}
    u2_float = by_pair[("u2", "uniform QAT vs float")]
    assert u2_float["test"]["diff"] == pytest.approx(9 / 16)
    assert u2_float["test"]["per_seed"] == pytest.approx([5 / 8, 4 / 8])
    assert u2_float["dev"]["excludes_zero"]
    s2_u2 = by_pair[("s2", "same base bits (uniform stores less)")]
    assert s2_u2["dev"]["diff"] == pytest.approx(-7 / 16)
    assert s2_u2["reference"] == "u2"
    s2_u3 = by_pair[("s2", "uniform with one more bit (stores more)")]
    assert s2_u3["test"]["diff"] == pytest.approx(1 / 16)
    # equal storage: 2.25 bits is a quarter of the way from u2 to u3
    interp = by_pair[("s2", "uniform interpolated to equal storage")]
    assert interp["weight_upper"] == pytest.approx(0.25)
    assert interp["test"]["diff"] == pytest.approx(2 / 16 - (0.75 * 9 + 0.25) / 16)
    # per seed: s2 1/8 and 1/8 vs 0.75 * (5/8, 4/8) + 0.25 * (1/8, 0)
    assert interp["test"]["per_seed"] == pytest.approx(
        [1 / 8 - (0.75 * 5 / 8 + 0.25 / 8), 1 / 8 - 0.75 * 4 / 8]
    )
    # operating points on dev: u2 is clearly worse than u4, u3 matches it (same
    # errors); s2's interval vs u4 contains 0 (1/16 worse on average, 8 images)
    ops = st["operating_points"]
    assert ops["uniform"]["run"] == "u3"
    assert ops["uniform"]["compression_vs_uniform4"] == pytest.approx(4 / 3)
    assert ops["switching"]["run"] == "s2"
    assert ops["switching"]["energy_saving_vs_uniform4"] == pytest.approx(4 / 2.25)
    json.dumps(st)  # JSON-able as written to results.json


def test_report_and_plot(tmp_path):
    st = switching_study.summarize(PER_SEED, n_resamples=50, confidence=0.9)
    sw = dict(warmup_epochs=1, retrain_epochs=1, window_epochs=1, top_fraction=0.1,
              lr_band=0.1, lr_scale=0.1, bits_a=4)  # fmt: skip
    res = {
        "dataset": "digits",
        "notice": "hand-made records",
        "config": {"switching": sw, "training": {"epochs": 1}},
        "study": st,
    }
    text = switching_study.report(res)
    assert "| s2 | u2 | same base bits" in text and "PLACEHOLDER" in text
    assert "- switching: s2, 2.250 bits/weight" in text
    switching_study.plot(str(tmp_path / "a.png"), st)
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_run_vgg_with_seeds_writes_the_study(tmp_path, monkeypatch):
    """--seeds 2 wiring: every seed run once, the study report, JSON and plot."""
    import types

    from mohaq_jax.orchestration import switching_runs
    from mohaq_jax.settings import config

    data = types.SimpleNamespace(name="digits", notice="hand-made", settings={})
    model = types.SimpleNamespace(to_dict=lambda: {"vgg": "tiny"})
    monkeypatch.setattr(switching_runs, "vgg_data", lambda cfg: (data, model))
    seen = []

    def fake_seed(cfg, data_, model_, seed):
        seen.append(seed)
        return PER_SEED[seed - 5], {}

    monkeypatch.setattr(switching_runs, "vgg_seed", fake_seed)
    cfg = config.ExperimentConfig(
        switching=config.SwitchingSettings(seed=5, seeds=2),
        search=config.SearchSettings(n_bootstrap=50),
        output=config.OutputSettings(out=str(tmp_path), progress=False),
    )
    res = switching_runs.run_vgg(cfg)
    assert seen == [5, 6]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"]["seeds"] == [0, 1]  # the records' own seeds
    assert saved["study"]["models"]["u2"]["test"]["error"] == pytest.approx(9 / 16)
    assert saved["runs"] == json.loads(json.dumps(res["runs"]))  # first seed's
    assert "seed study" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "accuracy_vs_storage.png").exists()


def test_wrong_images_per_image_and_error_rate_is_their_mean():
    import jax

    from mohaq_jax.data.images import ImageSplit
    from mohaq_jax.models import vgg
    from mohaq_jax.retrain import vision

    config = vgg.Config(image_size=8, channels=1, n_classes=3,
                           conv_widths=(2, 2, 2, 2, 2, 2), fc_widths=(4, 4))  # fmt: skip
    params = vgg.init_params(jax.random.key(0), config)
    images = np.asarray(jax.random.uniform(jax.random.key(1), (5, 8, 8, 1)))
    # reference: the Flax forward's argmax, labels set so images 1 and 3 are wrong
    pred = np.argmax(np.asarray(vgg.apply_batch(params, config, images)), -1)
    labels = pred.copy()
    labels[[1, 3]] = (pred[[1, 3]] + 1) % 3
    split = ImageSplit(images, labels.astype(np.int32))
    wrong = vision.wrong_images(params, config, split, batch_size=2)  # 3 batches
    np.testing.assert_array_equal(wrong, [False, True, False, True, False])
    assert vision.error_rate(params, config, split) == pytest.approx(2 / 5)
