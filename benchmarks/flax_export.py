"""Export every Pareto solution of an adapted Flax model to qwix and compare errors.

A small Transformer encoder (attention projections, an MLP and a custom einsum head;
bitfusion space: separate weight and activation bits) and a small CNN (silago space:
one precision per layer, as qwix's conv needs) are adapted
(:mod:`mohaq_jax.adapt`), calibrated on a calibration split and searched on dev;
every solution of the front is exported as qwix rules, qwix's PTQ is applied to the
float model, and the search's fake-quant error and qwix's are printed on dev and test
with 95 % bootstrap intervals (:func:`mohaq_jax.adapt.qwix_export.compare`). The task:
labels are the float model's predictions on noisy inputs (float error ~ 20 %).

  python benchmarks/flax_export.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import flax.linen as nn
import jax
import jax.numpy as jnp

from mohaq_jax import adapt
from mohaq_jax.adapt import qwix_export


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.MultiHeadDotProductAttention(num_heads=4, name="attn")(x, x)
        x = nn.LayerNorm(name="ln1")(x + h)
        h = nn.Dense(32, name="mlp_out")(nn.gelu(nn.Dense(64, name="mlp_in")(x)))
        x = nn.LayerNorm(name="ln2")(x + h)
        w = self.param("head", nn.initializers.lecun_normal(), (32, 10))
        return jnp.einsum("bd,dc->bc", jnp.mean(x, axis=1), w)


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=(2, 2), name="conv2")(x))
        return nn.Dense(10, name="head")(jnp.mean(x, axis=(1, 2)))


def task(module, shape, seed, n=1536):
    k_x, k_p, k_n = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k_x, (n,) + shape)
    params = module.init(k_p, x[:2])["params"]
    noisy = x + 0.7 * jax.random.normal(k_n, x.shape)
    y = jnp.argmax(module.apply({"params": params}, noisy), -1).astype(jnp.int32)
    third = n // 3
    batches = [
        [(x[i : i + 256], y[i : i + 256]) for i in range(lo, lo + third, 256)]
        for lo in (0, third, 2 * third)
    ]
    return params, batches  # calibration, dev, test


def run(name, module, shape, space, seed):
    params, (calib_split, dev, test) = task(module, shape, seed)
    model = adapt.adapt(module, params, dev[0])
    calib = adapt.calibrate(model, params, calib_split[:1])
    searched = adapt.search(
        model,
        params,
        dev,
        calib,
        platform="bitfusion" if space == "bitfusion" else "silago",
        objectives=("error", "speedup") if space == "bitfusion" else None,
        pop_size=16,
        n_offspring=8,
        n_generations=6,
        max_error=0.6,
    )
    front = [row["genome"] for row in searched.front()]
    rows = qwix_export.compare(
        model, params, calib, searched.space, front, {"dev": dev, "test": test}
    )
    print(f"== {name}: {len(front)} front solutions, space {space}")
    print(qwix_export.format_rows(rows))
    inside = sum(r["inside"] for r in rows)
    print(f"qwix error inside the search's 95% interval: {inside}/{len(rows)}")
    return {"model": name, "space": space, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    out = [
        run("transformer", Encoder(), (8, 32), "bitfusion", 0),
        run("cnn", CNN(), (12, 12, 3), "silago", 1),
    ]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
