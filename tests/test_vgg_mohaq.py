"""The VGG-9 under the model contract: quantized forward, population evaluator, search.

References: a plain numpy VGG forward (convolution as a loop over the 3x3 taps), the
Flax module (:func:`vgg.apply_batch`) with fake-quantized weights, a per-genome loop,
and hand-computed Bitfusion cycles.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware
from mohaq_jax.evaluation import evaluate, evaluate_tasks, genome
from mohaq_jax.hardware import bitfusion
from mohaq_jax.models import MODELS, get_model, model_of, qmodel, vgg
from mohaq_jax.numerics import quantize
from mohaq_jax.retrain import vision
from mohaq_jax.search import mohaq
from tests.conftest import TINY_VGG
from tests.tracing import counting_jit

N_SITES = 9


@pytest.fixture(scope="module")
def setup():
    params = vgg.init_params(jax.random.key(0), TINY_VGG)
    images = np.asarray(jax.random.uniform(jax.random.key(1), (7, 8, 8, 2)))
    labels = np.asarray([0, 1, 2, 0, 1, 2, -1], np.int32)  # the last is padding
    calib = vision.calibration(params, TINY_VGG, images)
    return params, calib, (images, labels)


def np_fake_quant(x, bits, clip):
    """Symmetric uniform quantization, numpy, float64 (FLOAT_BITS = identity)."""
    if bits >= quantize.FLOAT_BITS:
        return x
    levels = 2.0 ** (bits - 1) - 1
    clip = np.maximum(np.asarray(clip, np.float64), np.finfo(np.float32).tiny)
    step = clip / levels
    return np.clip(np.round(np.clip(x, -clip, clip) / step), -levels, levels) * step


def np_vgg(params, images, bits_w, bits_a, calib):
    """Independent numpy VGG-9: quantized weights/inputs, taps loop, 2x2 max pool."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    w_clip = [np.asarray(t, np.float64) for t in calib.w_clip]
    a_clip = np.asarray(calib.a_clip, np.float64)
    idx = {b: i for i, b in enumerate(quantize.BIT_OPTIONS)}
    x = np.asarray(images, np.float64)
    for i in range(N_SITES):
        name = f"conv{i + 1}" if i < 6 else f"fc{i - 5}"
        kernel = np_fake_quant(p[name]["kernel"], bits_w[i], w_clip[i][idx[bits_w[i]]])
        if i == 6:
            x = x.reshape(x.shape[0], -1)
        x = np_fake_quant(x, bits_a[i], a_clip[i, idx[bits_a[i]]])
        if i < 6:
            n, h, w, _ = x.shape
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            out = np.zeros((n, h, w, kernel.shape[-1]))
            for dy in range(3):
                for dx in range(3):
                    patch = padded[:, dy : dy + h, dx : dx + w]
                    out += patch @ kernel[dy, dx]
            x = np.maximum(out + p[name]["bias"], 0.0)
            if i % 2 == 1:
                x = x.reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
        else:
            x = x @ kernel + p[name]["bias"]
            if i < N_SITES - 1:
                x = np.maximum(x, 0.0)
    return x


def fast_logits(params, calib, bits_w, bits_a, images):
    """The population evaluator's path for one genome: first_stage + rest_stages."""
    bits_w, bits_a = jnp.asarray(bits_w), jnp.asarray(bits_a)
    qparams = qmodel.quantize_params(params, TINY_VGG, bits_w, calib)
    clips = qmodel.act_clips(calib, bits_a)
    batch = (jnp.asarray(images), jnp.zeros(len(images), jnp.int32))
    hidden = vgg.first_stage(TINY_VGG, qparams, bits_a, clips, batch)
    return vgg.rest_stages(TINY_VGG, qparams, bits_a, clips, hidden, batch)


def test_registered_with_the_contract():
    assert "vgg" in MODELS and get_model("vgg") is vgg
    assert model_of(TINY_VGG) is vgg and vgg.TASK == "classification"
    assert evaluate.task_of(TINY_VGG) is evaluate_tasks.CLASSIFICATION
    assert vgg.first_stage_sites(TINY_VGG) == (0,)


@pytest.mark.parametrize(
    "bits_w, bits_a",
    [
        pytest.param([8] * 9, [8] * 9, id="uniform8"),
        pytest.param(
            [2, 4, 8, 16, 4, 2, 8, 4, 16], [4, 8, 16, 4, 8, 4, 8, 16, 8], id="mixed"
        ),
        pytest.param([32] * 9, [32] * 9, id="float"),
    ],
)
def test_quantized_forward_matches_numpy_and_flax(setup, bits_w, bits_a):
    params, calib, (images, _) = setup
    got = np.asarray(jax.jit(fast_logits)(params, calib, bits_w, bits_a, images))
    ref = np_vgg(params, images, bits_w, bits_a, calib)
    chex.assert_shape(got, (7, 3))
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4)
    # the Flax module (training/calibration forward) with fake-quantized weights
    flax_out, one = flax_logits(params, calib, bits_w, bits_a, images)
    np.testing.assert_allclose(got, np.asarray(flax_out), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(got[3], np.asarray(one), atol=2e-5, rtol=1e-4)


@jax.jit
def flax_logits(params, calib, bits_w, bits_a, images):
    """The Flax forward of the batch and, by the contract's ``apply``, of image 3."""
    bits_w, bits_a = jnp.asarray(bits_w), jnp.asarray(bits_a)
    qparams = qmodel.quantize_params(params, TINY_VGG, bits_w, calib)
    clips = qmodel.act_clips(calib, bits_a)
    return (
        vgg.apply_batch(qparams, TINY_VGG, images, bits_a, clips),
        vgg.apply(qparams, TINY_VGG, images[3], bits_a, clips),
    )


def test_capture_gives_every_site_input(setup):
    params, _, (images, _) = setup
    inputs = vgg.capture(params, TINY_VGG, images[0])
    assert [x.shape for x in inputs][:2] == [(8, 8, 2), (8, 8, 2)]
    assert [int(np.prod(x.shape)) for x in inputs[6:]] == [4, 5, 5]


def loop_errors(params, calib, space, genomes, images, labels):
    """Per-genome (loss, class_error) by the Flax forward, one genome at a time."""
    valid = labels >= 0
    out = []
    for g in genomes:
        bits_w, bits_a = space.decode(jnp.asarray(g))
        logits = np.asarray(flax_logits(params, calib, bits_w, bits_a, images)[0])
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll = -logp[np.arange(len(labels)), np.maximum(labels, 0)]
        wrong = (logits.argmax(-1) != labels) & valid
        out.append((nll[valid].mean(), wrong.sum() / valid.sum()))
    return np.asarray(out)


@pytest.mark.parametrize("chunk_size", [2, None])
@pytest.mark.parametrize("space_name", ["bitfusion", "reconfig"])
def test_population_batched_equals_loop(setup, space_name, chunk_size):
    params, calib, (images, labels) = setup
    space = genome.get_space(space_name, vgg.sites(TINY_VGG))
    rng = np.random.default_rng(3)
    genomes = rng.integers(0, space.upper + 1, (5, space.n_genes)).astype(np.int32)
    ev = evaluate.PopulationEvaluator(
        TINY_VGG, space, None, params, calib, chunk_size, genome_batch=6
    )
    ev._eval, traces = counting_jit(ev._eval)
    got = ev(genomes, (images, labels))
    ref = loop_errors(params, calib, space, genomes, images, labels)
    np.testing.assert_allclose(got["loss"], ref[:, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["class_error"], ref[:, 1], atol=1e-6)
    np.testing.assert_array_equal(got["n_samples"], 6)  # label -1 is not scored
    # streamed in two batches: the same sums; another population: no recompile
    halves = [(images[:4], labels[:4]), (images[3:], np.r_[-1, labels[4:]])]
    split = ev(genomes[::-1], halves)
    np.testing.assert_allclose(split["class_error"], got["class_error"][::-1])
    ev(genomes[:3], (images, labels))
    assert len(traces) == 2  # one program per batch shape


def test_image_batch_rejected_with_clear_errors(setup):
    params, calib, (images, labels) = setup
    space = genome.get_space("reconfig", vgg.sites(TINY_VGG))
    ev = evaluate.PopulationEvaluator(TINY_VGG, space, None, params, calib)
    g = np.zeros((1, space.n_genes), np.int32)
    with pytest.raises(ValueError, match="images must be"):
        ev(g, (images[:, :, :, 0], labels))
    bad = images.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*image 2"):
        ev(g, (bad, labels))


def test_bitfusion_counts_conv_positions():
    """Cycles of conv1 (8x8 positions, im2col 18 inputs, 2 outputs) by hand."""
    sites = vgg.sites(TINY_VGG)
    assert (sites[0].n_in, sites[0].n_out, sites[0].macs_per_frame) == (18, 2, 36 * 64)
    layers = hardware.layer_arrays(sites)
    np.testing.assert_array_equal(
        bitfusion.matmul_uses(layers), [64, 64, 16, 16, 4, 4, 1, 1, 1]
    )
    spec = bitfusion.SPEC
    bits = jnp.asarray([4] * 9, jnp.int32)
    cycles, _ = bitfusion.layer_cycles(bits, bits, layers, spec)
    # ceil(2 / 32) x ceil(18 / (16 x (8/4)(8/4))) x 1 pass x 64 positions
    assert int(cycles[0]) == 1 * 1 * 1 * 64
    bits16 = jnp.asarray([16] * 9, jnp.int32)
    cycles16, _ = bitfusion.layer_cycles(bits16, bits16, layers, spec)
    # 16 bits: perf 1, 2 x 2 passes, ceil(18 / 16) = 2 input tiles
    assert int(cycles16[0]) == 1 * 2 * 4 * 64


@pytest.mark.parametrize(
    "platform_name, objectives, maximize",
    [
        ("bitfusion", ("error", "speedup", "energy_pj"), ("speedup",)),
        (
            "reconfig",
            ("error", "energy_pj", "compression_vs_float32"),
            ("compression_vs_float32",),
        ),
    ],
)
def test_mohaq_search_on_the_vgg(setup, platform_name, objectives, maximize):
    """The speech search, unchanged, on the VGG: scores agree with independent ones."""
    params, calib, (images, labels) = setup
    platform = hardware.get_platform(platform_name)
    space = genome.get_space(platform.space_name, vgg.sites(TINY_VGG))
    ev = evaluate.PopulationEvaluator(
        TINY_VGG, space, None, params, calib, 2, genome_batch=2
    )
    config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=4,
        n_offspring=2,
        n_generations=2,
        max_error=1.0,
        memory_metric=platform.memory_metric,
        error_metric="class_error",
    )
    cost_fn = platform.make_cost_fn(space)
    problem = mohaq.QuantizationProblem(ev, cost_fn, (images, labels), config)
    result = mohaq.run_search(problem, progress=False)
    assert len(result.genomes) >= 4 and result.front.any()
    ref = loop_errors(params, calib, space, result.genomes, images, labels)
    np.testing.assert_allclose(result.metrics["error"], ref[:, 1], atol=1e-6)
    costs = platform.evaluate(space, result.genomes)
    for name in objectives[1:]:
        np.testing.assert_allclose(result.metrics[name], costs[name], rtol=1e-6)


def test_init_params_are_flax_defaults_in_one_draw():
    """Same tree and shapes as the Flax module's init; LeCun-normal statistics."""
    cfg = vgg.Config(conv_widths=(8, 8, 16, 16, 32, 32), fc_widths=(64, 64))
    params = vgg.init_params(jax.random.key(0), cfg)
    image = jnp.zeros((16, 16, 1), jnp.float32)
    ref = jax.eval_shape(
        lambda k: vgg.VGG(cfg).init(k, image)["params"], jax.random.key(0)
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(params, ref)
    for site in vgg.sites(cfg):
        kernel = np.asarray(params[site.name]["kernel"])
        fan_in = np.prod(site.weight_shape[:-1])
        assert np.abs(kernel).max() <= 2 / np.sqrt(fan_in) / 0.8796 + 1e-6
        np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(fan_in), rtol=0.2)
        np.testing.assert_array_equal(params[site.name]["bias"], 0.0)
    again = vgg.init_params(jax.random.key(0), cfg)
    chex.assert_trees_all_equal(params, again)


def np_error(params, calib, bits_w, bits_a, images, labels):
    """Classification error of the numpy VGG (label -1 not scored)."""
    logits = np_vgg(params, images, bits_w, bits_a, calib)
    valid = labels >= 0
    return float(((logits.argmax(-1) != labels) & valid).sum() / valid.sum())


def test_genome_qat_batched_equals_alone_and_reports_its_dev_error(setup):
    """Beacon QAT of the VGG: k genomes at once equal each alone; the dev errors it
    reports (before and after) are the numpy VGG's on the returned params."""
    from mohaq_jax.data.images import ImageSplit

    params, calib, (images, labels) = setup
    rng = np.random.default_rng(0)
    train_split = ImageSplit(
        rng.uniform(size=(8, 8, 8, 2)).astype(np.float32),
        rng.integers(0, 3, 8).astype(np.int32),
    )
    dev = [(images, labels)]
    bits_w = np.asarray([[2] * 9, [4, 8, 2, 4, 8, 2, 4, 8, 16]], np.int32)
    bits_a = np.asarray([[4] * 9, [8] * 9], np.int32)
    kw = dict(epochs=2, lr=5e-2, batch_size=4, patience=5)
    both, info = vision.qat_finetune(
        params, TINY_VGG, calib, bits_w, bits_a, train_split, dev, **kw
    )
    chex.assert_shape(both["conv1"]["kernel"], (2,) + params["conv1"]["kernel"].shape)
    assert info["epochs_run"].tolist() == [2, 2]
    for j in range(2):
        one, info_one = vision.qat_finetune(
            params, TINY_VGG, calib, bits_w[j : j + 1], bits_a[j : j + 1], train_split,
            dev, **kw,
        )  # fmt: skip
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, j=j: a[j], both),
            jax.tree.map(lambda a: a[0], one),
            atol=1e-5,
        )
        assert info_one["dev_error"][0] == info["dev_error"][j]
        got = jax.tree.map(lambda a, j=j: np.asarray(a[j]), both)
        assert info["ptq_dev_error"][j] == np_error(
            params, calib, bits_w[j], bits_a[j], images, labels
        )
        assert info["dev_error"][j] == np_error(
            got, calib, bits_w[j], bits_a[j], images, labels
        )
        assert info["dev_error"][j] <= info["ptq_dev_error"][j]  # the best is kept
    # training moved the weights (lr 5e-2, 2 steps an epoch)
    assert not np.allclose(info["history"][0]["loss"], info["history"][1]["loss"])
