"""The Flax adapter's population evaluation of the SRU vs the hand-written contract.

The repository's SRU (``models/sru.py``, a Flax Linen module) is evaluated twice on
the same genomes, data and calibration: through its hand-written model contract
(:func:`mohaq_jax.evaluation.evaluate.make_population_eval`, with weight tables and first-stage
sharing) and through :mod:`mohaq_jax.adapt` (sites found by tracing, the whole
forward interpreted with traced activation bits). It prints whether the error counts
are equal and the genomes/s of both and their ratio, measured in the same process
(goal: adapter >= 0.8x the contract path): after ``--warmup`` untimed rounds,
``--repeats`` rounds time both paths back to back in ABBA order, and the ratio of
each round (both paths under the same load) is summarized by its median and spread.

  python benchmarks/flax_adapter.py                      # CPU, pop 32
  python benchmarks/flax_adapter.py --pop 256 --chunk full --hidden 550 --layers 4
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import adapt
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru


def build(args):
    config = sru.Config(
        n_features=args.features,
        n_classes=args.classes,
        hidden=args.hidden,
        n_layers=args.layers,
        n_proj=args.proj,
        dropout=0.0,
    )
    key_p, key_x, key_y, key_g = jax.random.split(jax.random.key(args.seed), 4)
    params = sru.init_params(key_p, config)
    feats = jax.random.normal(key_x, (args.batch, args.frames, args.features))
    lengths = jnp.asarray(
        np.linspace(args.frames, args.frames * 0.6, args.batch).astype(np.int32)
    )
    labels = jax.random.randint(key_y, (args.batch, args.frames), 0, args.classes)
    labels = jnp.where(jnp.arange(args.frames)[None] < lengths[:, None], labels, -1)
    batch = (feats, labels, lengths)
    calib = qmodel.calibrate(params, config, feats, lengths, "mse", "mse")
    space = genome.get_space(args.space, sru.sites(config))
    genomes = np.asarray(
        jax.random.randint(
            key_g, (args.pop, space.n_genes), 0, jnp.asarray(space.upper) + 1
        ),
        np.int32,
    )
    return config, params, batch, calib, space, genomes


def same_genomes(space_from, space_to, genomes) -> np.ndarray:
    """The genomes of one space re-encoded in another over the same site names."""
    out = []
    for g in genomes:
        bits = space_from.describe(g)
        genome_ = np.zeros(space_to.n_genes, np.int32)
        for i, site in enumerate(space_to.layers):
            for which, genes in (("w", space_to.w_gene), ("a", space_to.a_gene)):
                values = space_to.gene_values[genes[i]]
                genome_[genes[i]] = values.index(bits[site.name][which])
        out.append(genome_)
    return np.stack(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pop", type=int, default=32, help="population size")
    parser.add_argument(
        "--chunk", default="2", help="genomes per lax.map step, or full"
    )
    parser.add_argument("--space", default="bitfusion")
    parser.add_argument("--features", type=int, default=23)
    parser.add_argument("--classes", type=int, default=39)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--proj", type=int, default=0, help="n_proj (0 = none)")
    parser.add_argument("--batch", type=int, default=8, help="utterances")
    parser.add_argument("--frames", type=int, default=100, help="padded frames")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    chunk = None if args.chunk == "full" else int(args.chunk)

    config, params, batch, calib, space, genomes = build(args)
    model = adapt.adapt(
        sru.AcousticModel(config),
        params,
        batch,
        inputs=lambda b: (b[0], b[2]),
        per_example=True,
        error="frames",
    )
    a_space = adapt.genome_space(model, args.space)
    a_genomes = same_genomes(space, a_space, genomes)
    fold = np.arange(args.classes, dtype=np.int32)
    contract = evaluate.make_population_eval(config, space, fold, chunk)
    # The first stage that saves the most for this space and population size.
    model = adapt.for_population(model, a_space, args.pop)
    adapter = evaluate.make_population_eval(model, a_space, fold, chunk)
    g_c, g_a = jnp.asarray(genomes), jnp.asarray(a_genomes)

    def run_contract():
        return jax.block_until_ready(contract(params, calib, g_c, batch))

    def run_adapter():
        return jax.block_until_ready(adapter(params, calib, g_a, batch))

    t0 = time.perf_counter()
    res_c = run_contract()
    t1 = time.perf_counter()
    res_a = run_adapter()
    t2 = time.perf_counter()
    equal = {
        key: bool(np.array_equal(getattr(res_c, key), getattr(res_a, key)))
        for key in ("frame_error", "phone_edits", "n_phones")
    }
    loss_diff = float(np.max(np.abs(np.asarray(res_c.loss) - np.asarray(res_a.loss))))
    for _ in range(args.warmup):  # caches, allocator, thread pools
        run_contract(), run_adapter()
    times = {"contract": [], "adapter": []}
    paths = (("contract", run_contract), ("adapter", run_adapter))
    for i in range(args.repeats):  # ABBA: a load drift hits both paths alike
        for name, fn in paths if i % 2 == 0 else paths[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rate = {k: args.pop / float(np.median(v)) for k, v in times.items()}
    # adapter genomes/s over contract genomes/s, one per round (same load)
    ratios = np.asarray(times["contract"]) / np.asarray(times["adapter"])
    out = {
        "device": str(jax.devices()[0]),
        "pop": args.pop,
        "chunk": args.chunk,
        "space": args.space,
        "model": config.to_dict(),
        "batch": [args.batch, args.frames],
        "compile_s": {"contract": t1 - t0, "adapter": t2 - t1},
        "first_stage_sites": {
            "contract": [space.layers[i].name for i in sru.first_stage_sites(config)],
            "adapter": [a_space.layers[i].name for i in model.first_sites],
        },
        "equal_counts": equal,
        "max_loss_diff": loss_diff,
        "genomes_per_s": rate,
        "ratio_adapter_over_contract": rate["adapter"] / rate["contract"],
        "round_ratios": {
            "median": float(np.median(ratios)),
            "q25": float(np.quantile(ratios, 0.25)),
            "q75": float(np.quantile(ratios, 0.75)),
            "min": float(ratios.min()),
            "max": float(ratios.max()),
            "n": int(len(ratios)),
        },
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
