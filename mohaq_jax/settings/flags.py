"""Every command-line flag of the experiments, declared once.

One row per flag: ``"section.field"`` of :class:`mohaq_jax.settings.config.ExperimentConfig`
that it sets, its one name (the same in every experiment), its kind (``int``,
``float``, ``str``, ``SWITCH`` for an on/off flag, ``ONOFF`` for a ``--x`` /
``--no-x`` pair over a field whose None means "decided by the other settings", ``INTS`` for comma-separated ints,
or a tuple of choices) and its help. Defaults are the dataclass defaults (shown by
``--help``); experiments override a few. Flags marked ``images`` are offered only by
the image experiments (``cli.build_parser(..., images=True)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mohaq_jax.search.algorithms import ALGORITHMS

SWITCH = "switch"  # an on/off flag (argparse store_true)
INTS = "ints"  # comma-separated ints, e.g. "16,16,32" -> (16, 16, 32)
ONOFF = "onoff"  # --name sets True, --no-name False, neither None (the field decides)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag and the config field it sets."""

    target: str  # "section.field" of ExperimentConfig
    flag: str  # the flag's one name, e.g. "--pop"
    kind: Any  # int, float, str, SWITCH, ONOFF, INTS, or a tuple of choices
    help: str  # what it does (the default is appended by --help)
    invert: bool = False  # a SWITCH that sets the field to False (--no-progress)
    images: bool = False  # offered by the image experiments only

    @property
    def section(self) -> str:
        return self.target.split(".")[0]

    @property
    def field(self) -> str:
        return self.target.split(".")[1]


# fmt: off
FLAGS: tuple[Flag, ...] = (
    # data
    Flag("data.name", "--data", ("espeak", "timit", "transcribed"), "data set: 'espeak' (synthesized speech from eSpeak NG, generated locally, NOT TIMIT), 'timit' (needs --timit-dir) or 'transcribed' (needs --corpus-dir)"),
    Flag("data.timit_dir", "--timit-dir", str, "root of your LDC TIMIT copy (TRAIN/ and TEST/ inside); implies --data timit"),
    Flag("data.timit_partial", "--timit-partial", SWITCH, "accept a partial TIMIT copy (e.g. NLTK's sample): splits are built from the speakers present instead of the standard lists"),
    Flag("data.allow_missing_labels", "--allow-missing-labels", SWITCH, "leave out the TIMIT recordings that have no .PHN file (named and counted) instead of refusing a complete copy"),
    Flag("data.espeak_size", "--espeak-size", ("default", "tiny", "timit"), "size of the synthesized corpus ('tiny' for smoke tests, 'timit' for TIMIT's split sizes)"),
    Flag("data.data_seed", "--data-seed", int, "seed of the synthesized corpus (speakers, sentences, noise)"),
    Flag("data.corpus_dir", "--corpus-dir", str, "folder of a transcribed speech corpus (with --data transcribed)"),
    Flag("data.phone_tier", "--phone-tier", str, "with --data transcribed: frame labels from this tier of the TextGrid beside each recording (NAME.TextGrid or NAME_phones.TextGrid) instead of forced alignment (None: align)"),
    Flag("data.cache_dir", "--cache-dir", str, "where features and baselines are cached (None: $MOHAQ_CACHE or ~/.cache/mohaq_jax)"),
    Flag("data.cifar_dir", "--cifar-dir", str, "folder with the CIFAR-10 python batches (cifar-10-batches-py); implies CIFAR-10 (None: scikit-learn's 8x8 digits)", images=True),
    Flag("data.max_train_images", "--max-train-images", int, "use the first N training images only (None: all)", images=True),
    Flag("data.image_size", "--image-size", int, "digits: the 8x8 images are upsampled to this size (a multiple of 8; CIFAR-10 stays 32x32)", images=True),
    Flag("data.image_noise", "--image-noise", float, "digits: standard deviation of the fixed Gaussian pixel noise added to every image (grey values in [0, 1]; 0 = clean), a harder task", images=True),
    # model
    Flag("model.name", "--model", str, "acoustic model (registry name)"),
    Flag("model.hidden", "--hidden", int, "recurrent units per direction (paper: 550)"),
    Flag("model.layers", "--layers", int, "stacked recurrent layers (paper: 4)"),
    Flag("model.proj", "--proj", int, "low-rank projection size before recurrent layers 2.. (0 = none)"),
    Flag("model.proj_first", "--proj-first", SWITCH, "also project the first recurrent layer's input (when --proj is smaller than it; the paper's model does not)"),
    Flag("model.dropout", "--dropout", float, "dropout on recurrent-layer outputs while training (paper: 0.1)"),
    Flag("model.bidirectional", "--unidirectional", SWITCH, "forward recurrence only (else bidirectional)", invert=True),
    Flag("model.paper_model", "--paper-model", SWITCH, "the authors' size: 4 bidirectional layers of 550, projection 256 (overrides --hidden/--layers/--proj/--dropout)"),
    # vgg
    Flag("vgg.conv_widths", "--conv-widths", INTS, "the VGG-9's six conv widths, comma-separated (None: the data set's, 16,16,32,32,64,64 for digits, 32,32,64,64,128,128 for CIFAR-10)", images=True),
    Flag("vgg.fc_widths", "--fc-widths", INTS, "the VGG-9's two hidden FC widths, comma-separated (None: the data set's, 128,128 for digits, 512,512 for CIFAR-10)", images=True),
    # training
    Flag("training.epochs", "--epochs", int, "maximum float training epochs"),
    Flag("training.batch_size", "--batch-size", int, "examples per training step"),
    Flag("training.lr", "--lr", float, "initial Adam learning rate of float training"),
    Flag("training.min_lr", "--min-lr", float, "stop once the halved learning rate falls below this"),
    Flag("training.grad_clip", "--grad-clip", float, "global gradient-norm clip (0 = off)"),
    Flag("training.weight_decay", "--weight-decay", float, "decoupled weight decay (AdamW; 0 = Adam)"),
    Flag("training.pad_multiple", "--pad-multiple", int, "batch lengths are rounded up to a multiple of this (fewer compilations, more padding)"),
    Flag("training.seed", "--train-seed", int, "init, dropout and batch-order seed of float training"),
    Flag("training.minutes", "--train-minutes", float, "bound float training by wall-clock minutes: it stops after the step that passes the bound, mid-epoch if need be, evaluates dev and keeps the best params (not reproducible across machines; None: no bound)"),
    Flag("training.baseline_dir", "--baseline-dir", str, "checkpoint folder of the float baseline (None: a folder in the cache named after data, model and training settings, shared by every experiment; the image search keeps one file per such settings in it)"),
    Flag("training.retrain", "--retrain-baseline", SWITCH, "train the baseline again even if a checkpoint exists"),
    # search
    Flag("search.algorithm", "--algorithm", tuple(ALGORITHMS), "nsga2 / moead: the Pareto front; simple_ga / de / cma_es: evosax single-objective search, maximize speedup subject to the error and memory limits, at the same budget"),
    Flag("search.compare", "--compare", str, f"comma list of other algorithms ({', '.join(ALGORITHMS)}) to run on the same problem with the same seed and budget after the main search; the report compares them (not with --beacons)"),
    Flag("search.platform", "--platform", ("bitfusion", "reconfig"), "accelerator cost model of the image search: bitfusion (error, speedup, energy; 2/4/8/16 bits) or reconfig (error, energy, compression; 2/3/4 bits); each speech experiment has its own", images=True),
    Flag("search.surrogate", "--surrogate", ONOFF, "surrogate-assisted search: a ridge model of the error (sensitivity proxy as prior) pre-screens 30x the offspring each generation and only the most promising by predicted rank are evaluated (the budget counts real evaluations); default (None): on for inference-only NSGA-II searches, off otherwise"),
    Flag("search.seed_proxy", "--seed-proxy", ONOFF, "start from the sensitivity stage: its genomes plus the Pareto set its additive error proxy predicts form the initial population; default (None): on for inference-only NSGA-II searches, off otherwise"),
    Flag("search.pop", "--pop", int, "population size (paper: 40)"),
    Flag("search.offspring", "--offspring", int, "genomes evaluated per generation (paper: 10)"),
    Flag("search.generations", "--generations", int, "generations after the initial population (paper: 15)"),
    Flag("search.seed", "--seed", int, "search seed (same seed, same front)"),
    Flag("search.budget", "--budget", int, "stop after this many genome evaluations (None: no limit)"),
    Flag("search.seed_uniform", "--no-seed-uniform", SWITCH, "a purely random initial population for plain searches (by default it holds every uniform genome: all-4, all-8, all-16 bits, ...; a proxy-seeded one holds the sensitivity genomes and the proxy's front instead)", invert=True),
    Flag("search.max_error", "--max-error", float, "error constraint as a fraction (paper: 0.24 on TIMIT); None: float dev error + --error-margin"),
    Flag("search.error_margin", "--error-margin", float, "default error constraint above the float model's dev error (the paper's 24% was about 7 points above its float PER)"),
    Flag("search.memory_limit_mb", "--memory-limit-mb", float, "memory constraint in MB; None: the speech searches scale the platform's paper limit by this model's 16-bit size relative to the paper model's, the image search has no memory constraint"),
    Flag("search.error_metric", "--error-metric", ("phone_error", "frame_error"), "error objective measured on the dev set"),
    Flag("search.per", "--per", ("smoothed", "decoded", "raw"), "how the phone error is read off the model: smoothed framewise posteriors, decoded, or raw argmax"),
    Flag("search.calib_utts", "--calib-utts", int, "training utterances used to calibrate clipping values"),
    Flag("search.calib_images", "--calib-images", int, "training images used to calibrate clipping values", images=True),
    Flag("search.calib", "--calib", ("mse", "max"), "clipping calibration: MSE-optimal clip ratio or max-abs"),
    Flag("search.chunk_size", "--chunk-size", int, "genomes evaluated together (lax.map batch size; small on CPU, large on GPU)"),
    Flag("search.batch_frames", "--batch-frames", int, "frames per streamed evaluation batch (dev/test splits are scored in length-bucketed batches of at most this many frames, padding included): memory is bounded by it, results do not depend on it"),
    Flag("search.eval_batch", "--eval-batch", int, "images per evaluation batch (dev/test splits are streamed in batches of this many; results do not depend on it)", images=True),
    Flag("search.max_eval", "--max-eval", int, "evaluate on the first N dev and test images only (None: all)", images=True),
    Flag("search.race", "--race", SWITCH, "racing: score each generation batch by batch over the dev set and stop a genome once its whole-dev error is, with --race-confidence, above the error constraint (recorded as infeasible with its partial error, marked)"),
    Flag("search.race_confidence", "--race-confidence", float, "with --race: confidence of each stop (a lower bound on the genome's whole-dev error from the batches scored so far, in a random order; 1.0: stop only genomes certain to be infeasible)"),
    Flag("search.race_batches", "--race-batches", int, "with --race: the dev set is scored in about this many batches (the finer, the earlier a genome can stop)"),
    Flag("search.devices", "--devices", int, "devices the population is split over (a jax.sharding mesh; all hosts' devices in a multi-host run); 1 = no sharding"),
    Flag("search.data_shards", "--data-shards", int, "of --devices, how many split the data along utterances"),
    Flag("search.confidence", "--confidence", float, "level of the bootstrap confidence intervals of dev and test error"),
    Flag("search.n_bootstrap", "--bootstrap", int, "bootstrap resamples of utterances (images: of images) for the confidence intervals (0 = none)"),
    Flag("search.margin", "--margin", float, "error increase still counted as 'no significant increase' (absolute fraction; 0.01 = 1 point)"),
    # beacons
    Flag("beacons.enabled", "--beacons", SWITCH, "run an inference-only and a beacon-based search with the same seed and budget, and compare them"),
    Flag("beacons.threshold", "--beacon-threshold", int, "max level distance to a beacon (the authors: 5)"),
    Flag("beacons.genes", "--beacon-genes", ("weights", "all"), "genes the beacon distance counts (the authors: weight genes)"),
    Flag("beacons.max_beacons", "--max-beacons", int, "beacons retrained at most, besides the float model"),
    Flag("beacons.per_generation", "--beacons-per-generation", int, "new beacons retrained at most per generation (batched)"),
    Flag("beacons.epochs", "--beacon-epochs", int, "QAT epochs per beacon (the authors: about 20 on TIMIT)"),
    Flag("beacons.max_ptq_error", "--beacon-max-ptq-error", float, "promising genomes have PTQ error below this (None: any)"),
    Flag("beacons.min_speedup", "--beacon-min-speedup", float, "promising genomes have speedup above this (None: any)"),
    Flag("beacons.retrain", "--beacon-retrain", ("qat", "switching"), "how beacons are retrained: QAT with the straight-through estimator, or switching-aware mixed precision (Kim et al. 2021)"),
    Flag("beacons.verify", "--verify-retrain", int, "Pareto solutions of the beacon search actually retrained to check the beacon estimate"),
    # switching
    Flag("switching.seed", "--seed", int, "QAT batch-order seed of the runs"),
    Flag("switching.seeds", "--seeds", int, "VGG: repeat float training and every run with seeds --seed .. --seed + N - 1 (same data split) and report paired bootstrap intervals over the images"),
    Flag("switching.runs", "--runs", str, "comma-separated runs: uN uniform N-bit QAT, sN switching-aware base N bits"),
    Flag("switching.warmup_epochs", "--warmup-epochs", int, "uniform QAT epochs before extra-bit weights are chosen"),
    Flag("switching.window_epochs", "--window-epochs", int, "last warm-up epochs in which switches are counted"),
    Flag("switching.retrain_epochs", "--retrain-epochs", int, "epochs with the mixed representation (uniform runs train warmup + retrain epochs in total)"),
    Flag("switching.top_fraction", "--top-fraction", float, "share of weights with most switches that get the extra bit"),
    Flag("switching.switch_threshold", "--switch-threshold", int, "instead of --top-fraction: extra bit where count >= this"),
    Flag("switching.grid", "--grid", ("nested", "uniform"), "extra-bit grid: nested = halved step, uniform = plain b+1 bits"),
    Flag("switching.qat_lr", "--qat-lr", float, "QAT Adam learning rate"),
    Flag("switching.lr_band", "--lr-band", float, "damp updates within this fraction of a step of a threshold"),
    Flag("switching.lr_scale", "--lr-scale", float, "learning-rate multiplier inside the band"),
    Flag("switching.bits_a", "--bits-a", int, "activation bits (2..4)"),
    Flag("switching.max_train_utts", "--max-train-utts", int, "retrain on the first N training utterances only (0 = all) to stay fast"),
    # output
    Flag("output.out", "--out", str, "output folder"),
    Flag("output.resume", "--resume", SWITCH, "continue the search checkpointed in --out after a crash or kill"),
    Flag("output.progress", "--no-progress", SWITCH, "no progress bars and no phase messages", invert=True),
    Flag("output.export_qwix", "--export-qwix", SWITCH, "after the search, quantize the float model with qwix's PTQ for every Pareto solution (its bits as qwix rules) and report qwix's dev and test error beside the search's, with intervals, and what qwix cannot express (qwix.csv, qwix.json)"),
    Flag("output.debug", "--debug", SWITCH, "show the full traceback of a user error (else one line, exit status 2)"),
)
# fmt: on


#: The image search's defaults where they differ from the speech experiments' (by
#: flag name, for :func:`mohaq_jax.orchestration.cli.build_parser`): MOHAQ's 40/10/15 search,
#: Kim et al.'s VGG training, a 5-point error margin.
IMAGE_SEARCH_DEFAULTS = {
    "--out": "results/vision_mohaq",
    "--platform": "bitfusion",
    "--epochs": 15,
    "--batch-size": 64,
    "--error-margin": 0.05,
}

#: The settings the image search reads, by config section (the rest is unused).
IMAGE_SEARCH_FIELDS = {
    "data": ("cifar_dir", "max_train_images", "image_size"),
    "vgg": ("conv_widths", "fc_widths"),
    "training": (
        "epochs",
        "batch_size",
        "lr",
        "grad_clip",
        "seed",
        "baseline_dir",
        "retrain",
    ),
    "search": (
        "platform",
        "pop",
        "offspring",
        "generations",
        "seed",
        "max_error",
        "error_margin",
        "memory_limit_mb",
        "calib_images",
        "calib",
        "eval_batch",
        "max_eval",
        "chunk_size",
        "algorithm",
        "compare",
        "budget",
        "devices",
        "seed_uniform",
        "confidence",
        "n_bootstrap",
    ),
    # beacon QAT is the STE fine-tuning (no --beacon-retrain: the VGG's switching-aware
    # retraining trains one genome at a time, not a batch of beacons)
    "beacons": (
        "enabled",
        "threshold",
        "genes",
        "max_beacons",
        "per_generation",
        "epochs",
        "max_ptq_error",
        "min_speedup",
        "verify",
    ),
    "output": ("out", "resume", "progress", "debug"),
}
