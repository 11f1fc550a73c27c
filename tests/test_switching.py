"""Tests of switching-aware retraining (Kim et al. 2021): counting, quantizer, LR scale,
storage, and equality with plain uniform QAT when nothing is selected."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mohaq_jax import train
from mohaq_jax.data.batching import Batch
from mohaq_jax.hardware import reconfig
from mohaq_jax.models import qmodel, sru
from mohaq_jax.models.sru import init_params, kernel_paths
from mohaq_jax.numerics import quantize
from mohaq_jax.retrain import speech, switching

# -------------------------------------------------------------------------- quantizer


def _numpy_mixed(w, bits, clip, extra, grid):
    """Independent reference: float64 numpy, written from the module's definition."""
    w = np.asarray(w, np.float64)
    clip = np.broadcast_to(np.asarray(clip, np.float64), w.shape)
    qmax = 2.0 ** (bits - 1) - 1
    if grid == "nested":
        level_max = np.where(extra, 2 * qmax, qmax)
    else:
        level_max = np.where(extra, 2.0**bits - 1, qmax)
    step = clip / level_max
    wc = np.clip(w, -clip, clip)
    return np.clip(np.round(wc / step), -level_max, level_max) * step


@pytest.mark.parametrize("grid", switching.GRIDS)
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_extra_level_quantizer_matches_numpy(key, grid, bits):
    k_w, k_m = jax.random.split(key)
    w = jax.random.normal(k_w, (7, 5), jnp.float32) * 0.6
    clip = jnp.linspace(0.5, 1.5, 5, dtype=jnp.float32)  # per output channel
    extra = jax.random.bernoulli(k_m, 0.5, (7, 5))
    got = switching.mixed_fake_quant(w, jnp.asarray(bits), clip, extra, grid)
    want = _numpy_mixed(w, bits, clip, np.asarray(extra), grid)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_nested_grid_hand_case():
    # 2 bits, clip 1: base levels {-1, 0, 1}; extra-bit weights add -0.5 and 0.5.
    w = jnp.asarray([0.3, 0.3, 0.6, 0.6, -0.8, 2.0], jnp.float32)
    extra = jnp.asarray([False, True, False, True, True, True])
    got = switching.mixed_fake_quant(w, jnp.asarray(2), jnp.float32(1.0), extra)
    np.testing.assert_allclose(np.asarray(got), [0.0, 0.5, 1.0, 0.5, -1.0, 1.0])
    lv = switching.levels(w, jnp.asarray(2), jnp.float32(1.0), extra)
    np.testing.assert_array_equal(np.asarray(lv), [0, 1, 1, 1, -2, 2])


def test_no_extra_equals_fake_quant(key):
    w = jax.random.normal(key, (6, 4), jnp.float32)
    clip = jnp.asarray([0.5, 1.0, 1.5, 2.0], jnp.float32)
    none = jnp.zeros((6, 4), bool)
    got = switching.mixed_fake_quant(w, jnp.asarray(3), clip, none)
    want = quantize.fake_quant(w, jnp.asarray(3), clip)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    g1 = jax.grad(lambda x: jnp.sum(switching.mixed_fake_quant(x, 3, clip, none)))(w)
    g2 = jax.grad(lambda x: jnp.sum(quantize.fake_quant(x, jnp.asarray(3), clip)))(w)
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))


# --------------------------------------------------------------------------- counting


def test_switch_counting_hand_trajectory():
    # Base grid: 3 bits, clip 3 -> step 1, levels -3..3.
    trajectory = np.asarray(
        [
            # w0 oscillates 0 <-> 1; w1 jumps two levels; w2 stays; w3 climbs
            [0.4, 0.2, 0.1, 0.0],
            [0.6, 2.2, 0.2, 1.0],
            [0.4, 0.1, 0.3, 2.0],
            [0.6, 0.2, 0.4, 3.0],
            [1.6, 0.3, 0.1, 9.0],  # w0 1 -> 2 counts; w3 stays clipped at 3
            [0.4, 0.2, 0.2, 2.0],  # w0 2 -> 0 does not count (jump of 2)
        ],
        np.float32,
    )
    track = [True, True, True, True, True, False]  # last step outside the window
    trajectory = np.concatenate([trajectory, [[0.6, 0.2, 0.2, 2.0]]])
    track.append(True)
    wgrid = switching.make_grid([jnp.zeros(4)], [3], [jnp.float32(3.0)])
    state = switching.init_switches([jnp.asarray(trajectory[0])], wgrid)
    for w, on in zip(trajectory[1:], track[1:], strict=True):
        lv = [
            switching.levels(
                jnp.asarray(w), wgrid.bits[0], wgrid.clips[0], wgrid.extra[0]
            )
        ]
        state = switching.count_switches(state, lv, jnp.asarray(on))
    # w0: 0->1, 1->0, 0->1, 1->2 (4), 2->0 (no), [untracked], 0->1 (+1) = 5
    # w1: 0->2 no, 2->0 no = 0; w2: 0; w3: 0->1->2->3 (3), 3->3, 3->2 (untracked)
    np.testing.assert_array_equal(np.asarray(state.counts[0]), [5, 0, 0, 3])
    assert int(state.steps_counted) == 5


def test_select_extra_threshold_and_top_fraction():
    counts = (
        jnp.asarray([[0, 3], [5, 1]], jnp.int32),
        jnp.asarray([3, 0, 2], jnp.int32),
    )
    by_thr = switching.select_extra(counts, switch_threshold=3)
    np.testing.assert_array_equal(np.asarray(by_thr[0]), [[False, True], [True, False]])
    np.testing.assert_array_equal(np.asarray(by_thr[1]), [True, False, False])
    # 7 weights, top 3/7: counts 5, then the two 3s (tie broken by position).
    top = switching.select_extra(counts, top_fraction=3 / 7 + 1e-9)
    np.testing.assert_array_equal(np.asarray(top[0]), [[False, True], [True, False]])
    np.testing.assert_array_equal(np.asarray(top[1]), [True, False, False])
    # top 2: the 5 and the first 3 (site 0).
    top2 = switching.select_extra(counts, top_fraction=2 / 7 + 1e-9)
    assert int(sum(jnp.sum(m) for m in top2)) == 2
    assert bool(top2[0][0, 1]) and not bool(top2[1][0])
    # zero-count weights are never chosen, whatever the fraction
    allw = switching.select_extra(counts, top_fraction=1.0)
    assert int(sum(jnp.sum(m) for m in allw)) == 5
    with pytest.raises(ValueError):
        switching.select_extra(counts)


# ------------------------------------------------------------------------- LR scale


def test_threshold_lr_scale_hand_cases():
    # step 0.5, clip 1.5: thresholds at +-0.25, +-0.75, +-1.25; band 0.1 step = 0.05.
    params = {
        "w": jnp.asarray([0.0, 0.24, 0.26, 0.31, -0.74, 1.26, 1.45, 3.0]),
        "b": jnp.asarray([0.25]),
    }
    grid = {
        "w": (jnp.float32(0.5), jnp.float32(1.5)),
        "b": (jnp.float32(0.0), jnp.float32(0.0)),
    }  # unquantized leaf
    updates = jax.tree_util.tree_map(jnp.ones_like, params)
    tx = switching.threshold_lr_scale(band=0.1, scale=0.25)
    state = tx.init(params)
    out, state = tx.update(updates, state, params, grid=grid)
    np.testing.assert_allclose(
        np.asarray(out["w"]), [1, 0.25, 0.25, 1, 0.25, 0.25, 1, 1]
    )
    np.testing.assert_allclose(np.asarray(out["b"]), [1.0])
    np.testing.assert_allclose(float(state.near_fraction), 4 / 8)
    # In a chain after Adam it scales Adam's step; without grid it does nothing.
    chain = optax.chain(optax.sgd(1.0), tx)
    s = chain.init(params)
    out2, _ = chain.update(updates, s, params, grid=grid)
    np.testing.assert_allclose(
        np.asarray(out2["w"]), -np.asarray([1, 0.25, 0.25, 1, 0.25, 0.25, 1, 1])
    )
    out3, _ = chain.update(updates, s, params)
    np.testing.assert_allclose(np.asarray(out3["w"]), -np.ones(8))


def test_step_tree_uses_the_extra_grid():
    params = {"a": {"kernel": jnp.ones((2, 2))}, "bias": jnp.ones(2)}
    wgrid = switching.make_grid([params["a"]["kernel"]], [3], [jnp.float32(3.0)])
    wgrid = wgrid.replace(extra=(jnp.asarray([[True, False], [False, False]]),))
    tree = switching.step_tree(params, [("a", "kernel")], wgrid)
    np.testing.assert_allclose(np.asarray(tree["a"]["kernel"][0]), [[0.5, 1], [1, 1]])
    assert float(tree["bias"][0]) == 0.0


# ---------------------------------------------------------------------------- storage


def test_compression_hand_case():
    # Two sites of 1024 weights at 3 bits; site 0 has 10 extra-bit weights.
    # Index of site 0: min(flag 1024, sparse 10 x ceil(log2 1024) = 100) = 100 bits.
    # Bits: 3 x 2048 + 10 + 100 = 6254; vs uniform 4: 8192 / 6254; vs float 65536 / 6254
    out = reconfig.retrained_costs([1024, 1024], [3, 3], [10, 0], bits_a=[4, 4])
    assert out["weight_bits_total"] == pytest.approx(6254)
    assert out["index_bits_total"] == pytest.approx(100)
    assert out["compression_vs_uniform4"] == pytest.approx(8192 / 6254, rel=1e-6)
    assert out["compression_vs_float32"] == pytest.approx(65536 / 6254, rel=1e-6)
    assert out["bits_per_weight"] == pytest.approx(6254 / 2048)
    # Dense extra bits: the 1-bit flag per weight is cheaper than positions.
    dense = reconfig.retrained_costs([1024], [3], [512], bits_a=[4])
    assert dense["index_bits_total"] == pytest.approx(1024)
    assert dense["weight_bits_total"] == pytest.approx(3 * 1024 + 512 + 1024)
    # Uniform 4 bits, nothing extra: ratio 1, energy 1.
    u4 = reconfig.retrained_costs([1024], [4], [0], bits_a=[4])
    assert u4["compression_vs_uniform4"] == pytest.approx(1.0)
    assert u4["energy_rel_uniform4"] == pytest.approx(1.0)
    # Widths outside the PE: storage only.
    off = reconfig.retrained_costs([1024], [8], [0], bits_a=[8])
    assert off["energy_rel_uniform4"] is None
    assert off["compression_vs_uniform4"] == pytest.approx(0.5)


# ------------------------------------------------------------------------- QAT loop

CONFIG = sru.Config(
    n_features=5, n_classes=4, hidden=4, n_layers=1, bidirectional=False, dropout=0.1
)


def _batches(n_batches, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        lengths = rng.integers(3, 9, 3).astype(np.int32)
        feats = rng.normal(size=(3, 8, 5)).astype(np.float32)
        labels = rng.integers(0, 4, (3, 8)).astype(np.int32)
        labels[np.arange(8)[None, :] >= lengths[:, None]] = -1
        out.append(Batch(feats, labels, lengths))
    return out


def _setup(key):
    params = init_params(key, CONFIG)
    # Max-abs weight clips per channel, activation clip 2 at every width (cheap).
    calib = qmodel.Calibration(
        w_clip=tuple(
            quantize.clip_table(params[p][k], "max", -1)
            for p, k in kernel_paths(CONFIG)
        ),
        a_clip=jnp.full((len(kernel_paths(CONFIG)), len(quantize.BIT_OPTIONS)), 2.0),
    )
    return params, calib


def test_nothing_selected_equals_plain_uniform_qat(key):
    """Threshold above every count, no damping: the result is train.make_step's QAT."""
    params, calib = _setup(key)
    bits_w = np.asarray([3, 3], np.int32)
    bits_a = jnp.asarray([4, 4], jnp.int32)
    batches = _batches(3)
    tc = train.TrainConfig(lr=1e-2)
    key_drop = jax.random.key(7)

    # Reference: the project's QAT step, uniform bits, same batches and keys.
    ref_step = jax.jit(train.make_step(CONFIG, train.make_optimizer(tc)))
    ref = params
    opt_state = train.make_optimizer(tc).init(ref)
    n = 0
    for _ in range(2):
        for b in batches:
            ref, opt_state, _ = ref_step(
                ref,
                opt_state,
                b,
                jax.random.fold_in(key_drop, n),
                jnp.asarray(bits_w),
                bits_a,
                calib,
            )
            n += 1

    config = switching.SwitchingConfig(
        warmup_epochs=1,
        window_epochs=1,
        retrain_epochs=1,
        switch_threshold=10**6,
        top_fraction=None,
        lr_band=0.0,
    )
    wgrid = speech.weight_grid(params, CONFIG, calib, bits_w)
    got, wgrid_out, info = switching.retrain(
        params,
        kernel_paths(CONFIG),
        wgrid,
        speech.make_loss(CONFIG),
        (bits_a, calib),
        train.make_optimizer(tc),
        lambda epoch: iter(batches),
        key_drop,
        config,
    )
    assert info["extra_counts"] == [0, 0]
    assert sum(int(np.sum(c)) for c in info["window_counts"]) > 0  # it did switch
    chex.assert_trees_all_equal(got, ref)


def test_selection_changes_the_grid(key):
    params, calib = _setup(key)
    bits_w = np.asarray([3, 3], np.int32)
    bits_a = jnp.asarray([4, 4], jnp.int32)
    batches = _batches(3)
    config = switching.SwitchingConfig(
        warmup_epochs=2, window_epochs=1, retrain_epochs=1, top_fraction=0.2
    )
    tc = train.TrainConfig(lr=5e-2)
    wgrid = speech.weight_grid(params, CONFIG, calib, bits_w)
    got, wgrid_out, info = switching.retrain(
        params,
        kernel_paths(CONFIG),
        wgrid,
        speech.make_loss(CONFIG),
        (bits_a, calib),
        train.make_optimizer(tc),
        lambda epoch: iter(batches),
        jax.random.key(1),
        config,
    )
    n_total = sum(info["n_weights"])
    n_extra = sum(info["extra_counts"])
    assert 0 < n_extra <= int(0.2 * n_total)
    # every selected weight switched in the window
    for m, c in zip(wgrid_out.extra, info["window_counts"], strict=True):
        assert np.all(np.asarray(c)[np.asarray(m)] >= 1)
    assert [h["phase"] for h in info["history"]] == ["warmup", "warmup", "mixed"]
    assert all(0.0 <= h["near_fraction"] <= 1.0 for h in info["history"])
    assert info["final_counts"] is not None
