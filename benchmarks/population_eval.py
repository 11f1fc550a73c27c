"""Population evaluation speed: batched pass, per-genome loop and the authors' stack.

Prints, in one run on the current device, every variant timed in the same interleaved
rounds:
  (a) genomes/s of the batched pass (``make_population_eval``) at the chunk size given
      by ``--chunk``, fixed before timing (never the best of several),
  (b) genomes/s of a loop calling the *same* ``evaluate_genome``, jitted once for one
      genome, warmed up, weight tables computed once outside (never weakened),
  (c) their ratio,
  (d) GFLOP/s of the matmul work each side actually does (2 x MACs x padded frames;
      the batched pass computes the first stage once per setting of its genes, the
      loop once per genome) as a share of a plain ``jnp.dot`` measured in the same run,
  (e) every chunk size of ``--chunks`` against the same loop,
  (f) the phone-loop decoder's share of evaluation time (decoded vs raw-argmax PER at
      ``--chunk``; goal <= 20 %),
  (g) the outside anchor: PyTorch + the ``sru`` package (the MOHAQ authors' stack,
      ``benchmarks/torch_sru.py``), one genome at a time, same model, data, genomes
      and quantized sites, against the batched pass with raw PER (torch computes the
      frame errors only) and the loop; skipped without the ``bench`` extra,
and optionally device scaling of the sharded evaluator (``--devices``).

Timings are interleaved (every variant once per repeat) and reported as medians, so a
noisy shared CPU biases all variants alike; compare ratios, not absolute numbers.

  python -m benchmarks.population_eval                         # CPU, pop 64
  python -m benchmarks.population_eval --pop 256 --chunk 32 --chunks 8,32,64,full  # GPU
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python -m benchmarks.population_eval --devices 8       # functional check only
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import torch_sru
from mohaq_jax import decode
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from mohaq_jax.runtime import atomic, sharding


def build(args):
    """Model, params, calibration, data and population of the benchmark."""
    config = sru.Config(
        n_features=args.features,
        n_classes=args.classes,
        hidden=args.hidden,
        n_layers=args.layers,
        bidirectional=not args.unidirectional,
        n_proj=args.proj,
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
    space = genome.get_space(args.space, sru.sites(config))
    rng = np.random.default_rng(args.seed)
    genomes = jnp.asarray(
        rng.integers(0, space.upper + 1, (args.pop, space.n_genes)), jnp.int32
    )
    fold = np.arange(args.classes, dtype=np.int32)
    return config, params, calib, space, (feats, labels, lengths), genomes, fold


def matmul_flops(config, space, batch, pop: int) -> dict:
    """Matmul FLOPs (2 x MACs x padded frames) of the work each side actually does.

    The batched pass computes the first stage (layer 1 and its projection) once per
    setting of the first stage's genes, for every setting, when there are fewer
    settings than genomes (``evaluate.make_population_eval``); every genome then runs
    the remaining layers. The per-genome loop and the torch anchor run every layer for
    every genome.

    Returns:
      ``per_genome`` (all layers, one genome), ``first`` (the first stage, once),
      ``first_settings`` (settings of its genes), ``shared`` (bool) and
      ``batched_population`` (the batched pass on ``pop`` genomes).
    """
    features = batch[0]
    frames = features.shape[0] * features.shape[1]
    specs = sru.sites(config)
    first_sites = set(sru.first_stage_sites(config))
    first = sum(s.macs_per_frame for i, s in enumerate(specs) if i in first_sites)
    total = sum(s.macs_per_frame for s in specs)
    n_settings = len(evaluate.first_stage_combos(space, config))
    shared = n_settings < pop
    batched = (n_settings * first + pop * (total - first)) if shared else pop * total
    return {
        "per_genome": 2.0 * total * frames,
        "first": 2.0 * first * frames,
        "first_settings": n_settings,
        "shared": shared,
        "batched_population": 2.0 * batched * frames,
    }


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


def torch_anchor(config, params, calib, space, batch, genomes, threads: int = 0):
    """One genome at a time through PyTorch + the ``sru`` package (the authors' stack).

    Returns a callable that evaluates ``genomes`` in a Python loop: per genome, the
    weights are fake-quantized in torch, the model runs forward (``sru``'s CPU kernel)
    and the frame errors are counted; or None when torch/sru are not installed.
    ``threads``: torch's intra-op threads during the call (0 = torch's default).
    """
    if not torch_sru.available():
        return None
    import torch

    model = torch_sru.build(config, sru.sites(config), params)
    feats, pad = torch_sru.inputs(batch[0], batch[2])
    labels = torch.from_numpy(np.ascontiguousarray(np.asarray(batch[1]).T))
    scored = labels >= 0
    settings = [torch_sru.genome_clips(calib, space, g) for g in np.asarray(genomes)]

    default_threads = torch.get_num_threads()

    def run():
        wrong = 0
        torch.set_num_threads(threads or default_threads)
        with torch.no_grad():
            for bits_w, bits_a, w_clip, a_clip in settings:
                model.set_genome(bits_w, bits_a, w_clip, a_clip)
                logits = model(feats, pad)
                wrong += int(((logits.argmax(-1) != labels) & scored).sum())
        torch.set_num_threads(default_threads)
        return wrong

    return run


def decoder_share(args, config, params, calib, space, batch, genomes, fold, chunk):
    """(f): evaluation time with decoded vs smoothed vs raw PER, same chunk size."""
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


def _chunk(text: str) -> int | None:
    return None if text == "full" else int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pop", type=int, default=64, help="population size")
    parser.add_argument(
        "--chunk",
        default="1",
        help="chunk size of the headline ratio, fixed before timing ('full' = one "
        "vmap); PERF-NOTES: small on CPU, large on a GPU",
    )
    parser.add_argument(
        "--chunks",
        default="1,2,4,8,16,full",
        help="chunk sizes of the curve, each against the same loop; 'full' = one vmap",
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
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--proj", type=int, default=64, help="projection size before a layer (0 = none)"
    )
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
        default=4,
        metavar="N",
        help="genomes per round of the PyTorch + sru anchor (0 = skip)",
    )
    parser.add_argument(
        "--decode",
        type=int,
        default=1,
        help="1 = also time the phone-loop decoder's share (f); 0 = skip",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chunks = [_chunk(c) for c in args.chunks.split(",")]
    if _chunk(args.chunk) not in chunks:
        chunks.insert(0, _chunk(args.chunk))
    args.chunk_list = chunks
    return args


def _label(chunk: int | None) -> str:
    return f"chunk={chunk or 'full'}"


def main(argv=None):
    args = parse_args(argv)
    config, params, calib, space, batch, genomes, fold = build(args)
    dev = jax.devices()[0]
    work = matmul_flops(config, space, batch, args.pop)
    print(
        f"device: {dev.platform} / {dev.device_kind} x{jax.device_count()}, "
        f"jax {jax.__version__}"
    )
    print(
        f"model: {config.n_layers} x {'bi' if config.bidirectional else 'uni'}SRU "
        f"{config.hidden}, projections {config.n_proj or 'none'}, "
        f"{len(space.layers)} sites, {config.n_features} features, "
        f"{config.n_classes} classes; data {args.batch} utt x {args.frames} frames; "
        f"space {args.space}; pop {args.pop}"
    )
    first_note = (
        f"first stage once per setting of its genes ({work['first_settings']} "
        f"settings, {work['first'] / 1e9:.3f} GFLOP each)"
        if work["shared"]
        else "first stage per genome (more settings than genomes)"
    )
    print(
        f"matmul work: {work['per_genome'] / 1e9:.3f} GFLOP per genome in the loop and "
        f"the torch anchor; batched pass {work['batched_population'] / 1e9:.2f} GFLOP "
        f"for {args.pop} genomes ({first_note})"
    )

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
    for c in args.chunk_list:
        ev = evaluate.make_population_eval(config, space, fold, chunk_size=c)
        fns[_label(c)] = functools.partial(ev, params, calib, genomes, batch)
    anchor = None
    if args.torch:
        anchor = torch_anchor(
            config, params, calib, space, batch, genomes[: args.torch]
        )
        if anchor is None:
            print("torch anchor: skipped (pip install -e '.[bench]' for torch and sru)")
        else:
            # torch's default threads (all cores) and one thread: on a loaded machine
            # the default's spinning workers can cost more than they gain.
            fns["torch"] = anchor
            fns["torch_1"] = torch_anchor(
                config, params, calib, space, batch, genomes[: args.torch], threads=1
            )
            raw = evaluate.make_population_eval(
                config, space, fold, chunk_size=_chunk(args.chunk), per_mode="raw"
            )
            fns["raw"] = functools.partial(raw, params, calib, genomes, batch)
    t = interleaved(fns, args.repeats)

    peak = max(dot_flops[k] / t[k] for k in dot_flops)
    loop_rate = len(loop_genomes) / t["loop"]
    curve = {k[6:]: args.pop / t[k] for k in t if k.startswith("chunk=")}
    chosen = _label(_chunk(args.chunk))[6:]
    rate = curve[chosen]
    batched_gflops = work["batched_population"] / t[_label(_chunk(args.chunk))] / 1e9
    loop_gflops = loop_rate * work["per_genome"] / 1e9
    results = {
        "device": f"{dev.platform}/{dev.device_kind}",
        "pop": args.pop,
        "model": {
            "layers": config.n_layers,
            "hidden": config.hidden,
            "bidirectional": config.bidirectional,
            "proj": config.n_proj,
            "sites": len(space.layers),
            "features": config.n_features,
            "classes": config.n_classes,
            "utterances": args.batch,
            "frames": args.frames,
            "space": args.space,
        },
        "gflop_per_genome": work["per_genome"] / 1e9,
        "gflop_batched_population": work["batched_population"] / 1e9,
        "first_stage_settings": work["first_settings"],
        "first_stage_shared": work["shared"],
        "chunk": chosen,
        "batched_genomes_per_s": rate,
        "loop_genomes_per_s": loop_rate,
        "ratio": rate / loop_rate,
        "dot_peak_gflops": peak / 1e9,
        "dot_gflops": {k: dot_flops[k] / t[k] / 1e9 for k in dot_flops},
        "batched_gflops": batched_gflops,
        "loop_gflops": loop_gflops,
        "share_of_peak": batched_gflops * 1e9 / peak,
        "loop_share_of_peak": loop_gflops * 1e9 / peak,
        "chunk_curve": {
            k: {"genomes_per_s": v, "ratio": v / loop_rate} for k, v in curve.items()
        },
    }
    print(f"(a) batched pass (chunk {chosen}, fixed): {rate:8.1f} genomes/s")
    print(f"(b) jitted per-genome loop:            {loop_rate:8.1f} genomes/s")
    print(f"(c) ratio batched / loop:              {rate / loop_rate:8.2f} x")
    print(
        f"(d) batched {batched_gflops:.1f} GFLOP/s of work done = "
        f"{100 * results['share_of_peak']:.0f} % of jnp.dot peak {peak / 1e9:.1f} "
        f"GFLOP/s (loop: {loop_gflops:.1f} GFLOP/s, "
        f"{100 * results['loop_share_of_peak']:.0f} %)"
    )
    print(
        "(e) every chunk size against the same loop:  "
        + "  ".join(
            f"{k}: {v:.1f} g/s ({v / loop_rate:.2f}x)" for k, v in curve.items()
        )
    )
    if anchor is not None:
        raw_rate = args.pop / t["raw"]
        print(
            f"(g) {torch_sru.versions()}, one genome at a time (weights fake-quantized "
            f"in torch, forward, frame errors; {args.torch} genomes a round), against "
            f"the batched pass with raw PER (chunk {chosen}, {raw_rate:.1f} genomes/s) "
            f"and the jitted loop:"
        )
        results["torch_sru"] = {
            "genomes_timed": args.torch,
            "batched_raw_genomes_per_s": raw_rate,
        }
        for name, threads in (("torch", "default"), ("torch_1", "1")):
            torch_rate = args.torch / t[name]
            results["torch_sru"][f"threads_{threads}"] = {
                "genomes_per_s": torch_rate,
                "ratio_batched_raw": raw_rate / torch_rate,
                "ratio_batched": rate / torch_rate,
                "ratio_loop": loop_rate / torch_rate,
                "gflops": torch_rate * work["per_genome"] / 1e9,
            }
            print(
                f"    torch threads {threads:7s}: {torch_rate:8.2f} genomes/s, "
                f"{torch_rate * work['per_genome'] / 1e9:.1f} GFLOP/s; batched (raw "
                f"PER) {raw_rate / torch_rate:.1f}x, batched (smoothed PER) "
                f"{rate / torch_rate:.1f}x, jitted loop {loop_rate / torch_rate:.1f}x"
            )

    if args.decode:
        results["decoder"] = decoder_share(
            args, config, params, calib, space, batch, genomes, fold, _chunk(args.chunk)
        )

    if args.devices:
        n_max = min(args.devices, jax.device_count())
        counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n < n_max] + [n_max]
        fns = {}
        for n in counts:
            mesh = sharding.population_mesh(n)
            ev = evaluate.make_population_eval(
                config, space, fold, _chunk(args.chunk), mesh=mesh
            )
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
