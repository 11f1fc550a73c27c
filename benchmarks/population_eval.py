"""Population evaluation throughput: batched pass vs a per-genome loop (issues 2 and 8).

Prints, in one run on the current device:
  (a) genomes/s of the batched pass (``make_population_eval``, best chunk size),
  (b) genomes/s of a loop calling the *same* ``evaluate_genome``, jitted once for one
      genome, warmed up, weight tables computed once outside (never weakened),
  (c) their ratio,
  (d) the batched pass's achieved GFLOP/s (model matmul FLOPs: 2 x MACs per frame x
      frames per genome) as a share of a plain ``jnp.dot`` measured in the same run,
  (e) the chunk-size curve,
  (f) the phone-loop decoder's share of evaluation time (decoded vs raw-argmax PER at
      the best chunk size; goal <= 20 %),
and optionally a PyTorch-eager anchor (one genome at a time, the way the method's
authors ran it) and device scaling of the sharded evaluator (``--devices``).

Timings are interleaved (every variant once per repeat) and reported as medians, so a
noisy shared CPU biases all variants alike; compare ratios, not absolute numbers.

  python benchmarks/population_eval.py                       # CPU, pop 64
  python benchmarks/population_eval.py --pop 256 --chunks 8,32,64,full  # GPU
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python benchmarks/population_eval.py --devices 8       # functional check only
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import atomic, decode, evaluate, genome, qmodel, sharding
from mohaq_jax.models import sru


def build(args):
    """Model, params, calibration, data and population of the benchmark."""
    config = sru.ModelConfig(
        n_features=args.features,
        n_classes=args.classes,
        hidden=args.hidden,
        n_layers=args.layers,
        bidirectional=not args.unidirectional,
    )
    key_p, key_x, key_y, key_g = jax.random.split(jax.random.key(args.seed), 4)
    params = sru.init_params(key_p, config)
    feats = jax.random.normal(key_x, (args.batch, args.frames, args.features))
    # Realistic ragged lengths: the longest utterance fills the padded length.
    lengths = jnp.asarray(
        np.linspace(args.frames, args.frames * 0.6, args.batch).astype(np.int32)
    )
    labels = jnp.repeat(
        jax.random.randint(key_y, (args.batch, args.frames // 5 + 1), 0, args.classes),
        5,
        axis=1,
    )[:, : args.frames]
    labels = jnp.where(jnp.arange(args.frames)[None] < lengths[:, None], labels, -1)
    calib = qmodel.calibrate(params, config, feats, lengths, "max", "max")
    space = genome.get_space(args.space, sru.layer_specs(config))
    rng = np.random.default_rng(args.seed)
    genomes = jnp.asarray(
        rng.integers(0, space.upper + 1, (args.pop, space.n_genes)), jnp.int32
    )
    fold = np.arange(args.classes, dtype=np.int32)
    return config, params, calib, space, (feats, labels, lengths), genomes, fold


def flops_per_genome(config, batch) -> float:
    """Matmul FLOPs of one genome on the batch: 2 x MACs per frame x padded frames."""
    features = batch[0]
    macs = sum(spec.macs_per_frame for spec in sru.layer_specs(config))
    return 2.0 * macs * features.shape[0] * features.shape[1]


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed round-robin after one warm-up call each."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def torch_anchor(config, params, calib, space, batch, genomes, n_genomes: int):
    """Seconds per genome of the same model in PyTorch eager, one genome at a time."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    specs = sru.layer_specs(config)
    feats = torch.from_numpy(np.asarray(batch[0]))
    lengths = np.asarray(batch[2])
    tables = [np.asarray(t) for t in evaluate.weight_tables(params, calib, space)]
    a_clip = np.asarray(calib.a_clip)
    h, d = config.hidden, config.n_dirs
    scale_x = float(np.sqrt(1.0 + 2.0 * np.exp(config.highway_bias)))
    p_np = jax.tree_util.tree_map(np.asarray, params)

    def fq(x, bits, clip):
        if bits >= 32:
            return x
        levels = 2.0 ** (bits - 1) - 1
        step = clip / levels
        return (
            torch.clamp(
                torch.round(torch.clamp(x, -clip, clip) / step), -levels, levels
            )
            * step
        )

    def forward(g):
        bits = space.bits_table[np.arange(space.n_genes), g]
        x = feats.transpose(0, 1)  # (T, B, F)
        for i in range(config.n_layers):
            site = i
            layer = p_np[specs[site].name]
            kernel = torch.from_numpy(tables[site][g[space.w_gene[site]]])
            ba = int(bits[space.a_gene[site]])
            xq = fq(
                x, ba, float(a_clip[site, list(qmodel.quantize.BIT_OPTIONS).index(ba)])
            )
            k = kernel.shape[1] // (d * h)
            u = (xq @ kernel).reshape(x.shape[0], x.shape[1], d, k, h)
            skip = (
                u[:, :, :, 3] * scale_x
                if k == 4
                else x.reshape(u.shape[:3] + (h,)) * scale_x
            )
            v = torch.from_numpy(layer["v"])
            b = torch.from_numpy(layer["bias"])
            out = torch.zeros(x.shape[0], x.shape[1], d, h)
            for j in range(x.shape[1]):  # utterances, valid frames only
                n = int(lengths[j])
                for di in range(d):
                    c = torch.zeros(h)
                    order = range(n) if di == 0 else range(n - 1, -1, -1)
                    for t in order:
                        ut = u[t, j, di]
                        f = torch.sigmoid(ut[1] + v[di, 0] * c + b[di, 0])
                        r = torch.sigmoid(ut[2] + v[di, 1] * c + b[di, 1])
                        c = f * c + (1 - f) * ut[0]
                        out[t, j, di] = r * c + (1 - r) * skip[t, j, di]
            x = out.reshape(x.shape[0], x.shape[1], d * h)
        site = len(specs) - 1
        ba = int(bits[space.a_gene[site]])
        xq = fq(x, ba, float(a_clip[site, list(qmodel.quantize.BIT_OPTIONS).index(ba)]))
        fc = p_np["fc"]
        logits = xq @ torch.from_numpy(
            tables[site][g[space.w_gene[site]]]
        ) + torch.from_numpy(fc["bias"])
        return logits.argmax(-1)

    genomes = np.asarray(genomes)
    with torch.no_grad():
        forward(genomes[0])
        start = time.perf_counter()
        for g in genomes[:n_genomes]:
            forward(g)
    return (time.perf_counter() - start) / n_genomes


def decoder_share(args, config, params, calib, space, batch, genomes, fold, chunk):
    """(f): evaluation time with decoded vs smoothed vs raw PER, same chunk size."""
    chunk = None if chunk == "full" else int(chunk)
    labels = np.asarray(batch[1])
    dec = decode.estimate(
        list(labels), args.classes, lm_weight=1.0, insertion_penalty=2.0
    )
    fns = {}
    for mode in ("raw", "smoothed", "decoded"):
        ev = evaluate.make_population_eval(
            config, space, fold, chunk_size=chunk, decoder=dec, per_mode=mode
        )
        fns[mode] = functools.partial(ev, params, calib, genomes, batch)
    t = interleaved(fns, args.repeats)
    share = (t["decoded"] - t["raw"]) / t["decoded"]
    print(
        f"(f) decoder share of evaluation time (chunk {chunk or 'full'}): "
        f"{100 * share:.1f} % (decoded {args.pop / t['decoded']:.1f}, smoothed "
        f"{args.pop / t['smoothed']:.1f}, raw {args.pop / t['raw']:.1f} genomes/s; "
        "goal <= 20 %)"
    )
    return {
        "share": share,
        "genomes_per_s": {k: args.pop / v for k, v in t.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pop", type=int, default=64, help="population size")
    parser.add_argument(
        "--chunks",
        default="1,2,4,8,16,full",
        help="chunk sizes of the curve; 'full' = one vmap",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=0,
        help="also time the sharded evaluator on 1, 2, 4 .. N devices",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--space", default="bitfusion", help="genome space")
    parser.add_argument("--features", type=int, default=69, help="23 fbank + deltas")
    parser.add_argument("--classes", type=int, default=39)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--unidirectional", action="store_true")
    parser.add_argument("--batch", type=int, default=8, help="utterances")
    parser.add_argument("--frames", type=int, default=200, help="padded frames")
    parser.add_argument(
        "--loop-genomes",
        type=int,
        default=16,
        help="genomes timed per loop round (the loop's rate is per genome)",
    )
    parser.add_argument(
        "--torch",
        type=int,
        default=2,
        metavar="N",
        help="genomes for the PyTorch-eager anchor (0 = skip)",
    )
    parser.add_argument(
        "--decode",
        type=int,
        default=1,
        help="1 = also time the phone-loop decoder's share (f); 0 = skip",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config, params, calib, space, batch, genomes, fold = build(args)
    dev = jax.devices()[0]
    flops = flops_per_genome(config, batch)
    print(
        f"device: {dev.platform} / {dev.device_kind} x{jax.device_count()}, "
        f"jax {jax.__version__}"
    )
    print(
        f"model: {config.n_layers} x {'bi' if config.bidirectional else 'uni'}SRU "
        f"{config.hidden}, {config.n_features} features, {config.n_classes} classes; "
        f"data {args.batch} utt x {args.frames} frames; space {args.space}; pop {args.pop}"
    )
    print(f"matmul work per genome: {flops / 1e9:.3f} GFLOP")

    # (b) the loop: the same evaluate_genome, jitted once for one genome.
    tables = jax.jit(evaluate.weight_tables, static_argnums=2)(params, calib, space)
    one = jax.jit(
        functools.partial(
            evaluate.evaluate_genome, config=config, space=space, fold=jnp.asarray(fold)
        )
    )
    loop_genomes = genomes[: args.loop_genomes]

    def loop():
        return [one(params, tables, calib, g, batch) for g in loop_genomes]

    # Peak: plain jnp.dot at the model's largest matmul shape and a square one.
    n_rows = args.batch * args.frames
    dot = jax.jit(jnp.dot)
    kx = jax.random.key(1)
    a1 = jax.random.normal(kx, (n_rows, config.output_size))
    w1 = jax.random.normal(kx, (config.output_size, 3 * config.output_size))
    a2 = jax.random.normal(kx, (1024, 1024))
    fns = {
        "loop": loop,
        "dot_model": lambda: dot(a1, w1),
        "dot_1024": lambda: dot(a2, a2),
    }
    dot_flops = {
        "dot_model": 2.0 * a1.shape[0] * a1.shape[1] * w1.shape[1],
        "dot_1024": 2.0 * 1024**3,
    }
    chunks = [None if c == "full" else int(c) for c in args.chunks.split(",")]
    for c in chunks:
        ev = evaluate.make_population_eval(config, space, fold, chunk_size=c)
        fns[f"chunk={c or 'full'}"] = functools.partial(
            ev, params, calib, genomes, batch
        )
    t = interleaved(fns, args.repeats)

    peak = max(dot_flops[k] / t[k] for k in dot_flops)
    loop_rate = len(loop_genomes) / t["loop"]
    curve = {k[6:]: args.pop / t[k] for k in t if k.startswith("chunk=")}
    best_chunk = max(curve, key=curve.get)
    rate = curve[best_chunk]
    results = {
        "device": f"{dev.platform}/{dev.device_kind}",
        "pop": args.pop,
        "gflop_per_genome": flops / 1e9,
        "batched_genomes_per_s": rate,
        "best_chunk": best_chunk,
        "loop_genomes_per_s": loop_rate,
        "ratio": rate / loop_rate,
        "dot_peak_gflops": peak / 1e9,
        "dot_gflops": {k: dot_flops[k] / t[k] / 1e9 for k in dot_flops},
        "batched_gflops": rate * flops / 1e9,
        "share_of_peak": rate * flops / peak,
        "loop_share_of_peak": loop_rate * flops / peak,
        "chunk_curve": {
            k: {"genomes_per_s": v, "ratio": v / loop_rate} for k, v in curve.items()
        },
    }
    print(f"(a) batched pass (chunk {best_chunk}): {rate:8.1f} genomes/s")
    print(f"(b) jitted per-genome loop:      {loop_rate:8.1f} genomes/s")
    print(f"(c) ratio batched / loop:        {rate / loop_rate:8.2f} x")
    print(
        f"(d) batched {rate * flops / 1e9:.1f} GFLOP/s = {100 * rate * flops / peak:.0f} % "
        f"of jnp.dot peak {peak / 1e9:.1f} GFLOP/s "
        f"(loop: {100 * loop_rate * flops / peak:.0f} %)"
    )
    print(
        "(e) chunk curve:  "
        + "  ".join(
            f"{k}: {v:.1f} g/s ({v / loop_rate:.2f}x)" for k, v in curve.items()
        )
    )

    if args.decode:
        results["decoder"] = decoder_share(
            args, config, params, calib, space, batch, genomes, fold, best_chunk
        )

    if args.torch:
        sec = torch_anchor(config, params, calib, space, batch, genomes, args.torch)
        if sec is None:
            print("torch anchor: skipped (torch not installed; pip install torch)")
        else:
            results["torch_eager_genomes_per_s"] = 1.0 / sec
            print(
                f"torch eager anchor (forward only, one genome at a time, "
                f"{args.torch} genomes): {1.0 / sec:.2f} genomes/s; batched JAX is "
                f"{rate * sec:.0f}x faster"
            )

    if args.devices:
        n_max = min(args.devices, jax.device_count())
        counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n < n_max] + [n_max]
        chunk = None if best_chunk == "full" else int(best_chunk)
        fns = {}
        for n in counts:
            mesh = sharding.population_mesh(n)
            ev = evaluate.make_population_eval(config, space, fold, chunk, mesh=mesh)
            fns[n] = functools.partial(ev, params, calib, genomes, batch)
        t = interleaved(fns, args.repeats)
        results["scaling"] = {str(n): args.pop / t[n] for n in counts}
        if dev.platform == "cpu":
            print(
                "device scaling (forced host devices share the same cores: a functional "
                "check, not a speed-up measurement):"
            )
        else:
            print("device scaling:")
        for n in counts:
            print(
                f"  {n:3d} devices: {args.pop / t[n]:8.1f} genomes/s "
                f"({t[counts[0]] / t[n]:.2f}x of 1 device)"
            )

    if args.json:
        with atomic.atomic_open(args.json) as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
