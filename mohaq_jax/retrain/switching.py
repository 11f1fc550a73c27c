"""Switching-aware mixed-precision retraining (Kim et al., IEEE TNNLS 2021).

Kim, Shin, Choi, Kim and Park, "Exploiting Retraining-Based Mixed-Precision
Quantization for Low-Cost DNN Accelerator Design" (IEEE TNNLS 2021): during
quantization-aware retraining at a uniform low precision some weights keep switching
between two contiguous quantization levels, because neither level lowers the loss.
Those weights get one more bit; the others stay at the low precision. Gradient noise
near the quantization thresholds is damped by a lower learning rate for weights close
to a threshold. This module is model-agnostic; :mod:`mohaq_jax.retrain.speech` and
:mod:`mohaq_jax.retrain.vision` plug in the SRU and the VGG.

Definitions used here (our reading of the method, stated so it can be checked):

* **Base grid** of a weight site with ``b`` bits and clipping value ``c`` (per tensor,
  or per output channel against the kernel's last axis): the quantizer of
  :func:`mohaq_jax.quantize.fake_quant`, ``qmax = 2**(b-1) - 1``, ``step = c / qmax``,
  integer level ``k = clip(round(w / step), -qmax, qmax)``, value ``k * step``.
* **Extra-bit weights** (a boolean mask per weight) are quantized with ``b + 1`` bits
  and the *same clip* ``c``. ``grid="nested"`` (default) halves the step:
  ``step' = step / 2``, ``k' in [-2 qmax, 2 qmax]`` (``2**(b+1) - 3`` levels, a
  ``b + 1``-bit code), so the extra-bit grid holds every base level plus the midpoint
  of each pair of contiguous levels: a weight switching between levels ``k`` and
  ``k + 1`` gains the level between them, which is the paper's "one additional
  quantization level". ``grid="uniform"`` instead uses the plain ``b + 1``-bit
  quantizer with the same clip (``qmax' = 2**b - 1``, ``step' = c / qmax'``), whose
  levels do not contain the base levels.
* **Switch**: between two consecutive optimizer steps, a weight's integer level on its
  current grid changes by exactly one (a jump of two or more levels is not counted).
  Counts accumulate, as JAX arrays, over a window of steps at the end of the uniform
  warm-up.
* **Selection**: after the warm-up, weights with ``count >= switch_threshold``, or
  the ``top_fraction`` of all quantized weights with the most switches (ties broken by
  position, never a weight with zero switches), become extra-bit weights.
* **Threshold learning-rate scale**: the thresholds of a grid are the midpoints
  ``(k + 1/2) step`` between contiguous levels. A weight whose distance to the nearest
  threshold is below ``band * step`` (its own grid's step) has its update multiplied
  by ``scale`` (:func:`threshold_lr_scale`, an optax transformation that reads the
  current params).
* **Storage**: base bits per weight, plus one bit per extra-bit weight, plus the bits
  that mark which weights carry it: per layer the cheaper of a one-bit flag per weight
  and a sparse list of ``ceil(log2 n)``-bit positions
  (:func:`mohaq_jax.hardware.reconfig.index_bits`). Only the quantized weight sites
  count (biases and other small vectors are left out, as in the reconfig model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from mohaq_jax import quantize
from mohaq_jax.hardware import reconfig

GRIDS = ("nested", "uniform")

Path = tuple[str, ...]


# ----------------------------------------------------------------------------- grid


@struct.dataclass
class WeightGrid:
    """Quantization grid of the retrained weight sites.

    Attributes:
      bits: base weight bits of each site, int32 ``(n_sites,)``.
      clips: per site the clipping value, a scalar or ``(out_channels,)`` (broadcast
        against the kernel's last axis).
      extra: per site a bool array of the kernel's shape: True = extra-bit weight.
    """

    bits: jax.Array  # shape=(n_sites,), int32
    clips: tuple[jax.Array, ...]
    extra: tuple[jax.Array, ...]


def make_grid(kernels: Sequence[jax.Array], bits, clips) -> WeightGrid:
    """A grid with no extra-bit weight.

    Args:
      kernels: the weight arrays of the sites (only their shapes are used).
      bits: int ``(n_sites,)`` base bits (validated: :data:`quantize.BIT_OPTIONS`).
      clips: per site clipping value(s).

    Returns:
      The :class:`WeightGrid`.
    """
    bits = quantize.check_bits(bits, "bits_w")
    if bits.shape != (len(kernels),):
        raise ValueError(
            f"need one weight bit-width per site ({len(kernels)}), "
            f"got shape {bits.shape}"
        )
    if np.any(bits >= quantize.FLOAT_BITS):
        raise ValueError("switching-aware retraining needs quantized sites (bits < 32)")
    return WeightGrid(
        bits=jnp.asarray(bits),
        clips=tuple(jnp.asarray(c, jnp.float32) for c in clips),
        extra=tuple(jnp.zeros(k.shape, bool) for k in kernels),
    )


def grid_params(bits, clip, extra, grid: str = "nested"):
    """Step size and largest level of every weight (traceable).

    Args:
      bits: base bits (scalar array).
      clip: clipping value(s), broadcastable to ``extra``.
      extra: bool mask, the kernel's shape.
      grid: ``"nested"`` or ``"uniform"`` (module docstring).

    Returns:
      ``(step, level_max)``, float32 arrays of ``extra``'s shape.
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; one of {GRIDS}")
    extra = jnp.asarray(extra, bool)
    clip = jnp.broadcast_to(
        jnp.maximum(jnp.asarray(clip, jnp.float32), jnp.finfo(jnp.float32).tiny),
        extra.shape,
    )
    qmax = quantize.qmax(bits)
    qmax_extra = (
        2.0 * qmax
        if grid == "nested"
        else quantize.qmax(jnp.asarray(bits, jnp.int32) + 1)
    )
    level_max = jnp.where(extra, qmax_extra, qmax)
    return clip / level_max, level_max


def levels(w, bits, clip, extra, grid: str = "nested") -> jax.Array:
    """Integer level of every weight on its grid (base or extra-bit), int32."""
    step, level_max = grid_params(bits, clip, extra, grid)
    return jnp.clip(jnp.round(w / step), -level_max, level_max).astype(jnp.int32)


def mixed_fake_quant(w, bits, clip, extra, grid: str = "nested") -> jax.Array:
    """Fake quantization with a per-weight extra bit and a straight-through estimator.

    Where ``extra`` is False this computes exactly :func:`quantize.fake_quant` (same
    operations, so the same float32 numbers); where True, the extra-bit grid.

    Args:
      w: weights, any shape.
      bits: base bits (scalar array, < 32).
      clip: clipping value(s) broadcastable to ``w``.
      extra: bool mask of ``w``'s shape.
      grid: ``"nested"`` or ``"uniform"``.

    Returns:
      Quantized ``w``; its gradient is 1 where ``|w| <= clip``, else 0.
    """
    step, level_max = grid_params(bits, clip, extra, grid)
    clip_b = jnp.broadcast_to(jnp.asarray(clip, w.dtype), w.shape)
    w_clipped = jnp.clip(w, -clip_b, clip_b)
    q = jnp.clip(jnp.round(w_clipped / step), -level_max, level_max) * step
    return w_clipped + jax.lax.stop_gradient(q - w_clipped)


# ----------------------------------------------------------------------------- sites


def get_path(tree, path: Path):
    for name in path:
        tree = tree[name]
    return tree


def set_path(tree: dict, path: Path, value) -> dict:
    """A copy of the nested dict ``tree`` with ``path`` replaced (others shared)."""
    if not path:
        return value
    new = dict(tree)
    new[path[0]] = set_path(tree[path[0]], path[1:], value)
    return new


def site_kernels(params, paths: Sequence[Path]) -> list[jax.Array]:
    return [get_path(params, p) for p in paths]


def quantize_sites(
    params, paths: Sequence[Path], wgrid: WeightGrid, grid: str = "nested"
):
    """Params with every weight site fake-quantized on its mixed grid (STE)."""
    for i, path in enumerate(paths):
        kernel = get_path(params, path)
        params = set_path(
            params,
            path,
            mixed_fake_quant(
                kernel, wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid
            ),
        )
    return params


def step_tree(
    params, paths: Sequence[Path], wgrid: WeightGrid, grid: str = "nested", enabled=True
):
    """Per-weight ``(step, clip)`` pairs as a pytree like ``params``.

    This is the ``grid`` argument of :func:`threshold_lr_scale`. Unquantized leaves
    (and every leaf when ``enabled`` is False, a traced bool) get step 0: unscaled.
    """
    zero = jnp.zeros((), jnp.float32)
    out = jax.tree_util.tree_map(lambda x: (zero, zero), params)
    enabled = jnp.asarray(enabled, bool)
    for i, path in enumerate(paths):
        step, _ = grid_params(wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid)
        clip = jnp.broadcast_to(jnp.asarray(wgrid.clips[i], jnp.float32), step.shape)
        out = set_path(out, path, (jnp.where(enabled, step, 0.0), clip))
    return out


# ----------------------------------------------------------------------------- switches


@struct.dataclass
class SwitchState:
    """Switch counters of the weight sites (all arrays, jittable)."""

    levels: tuple[jax.Array, ...]  # per site, int32, kernel shape: last seen level
    counts: tuple[jax.Array, ...]  # per site, int32, kernel shape: switches counted
    steps_counted: jax.Array  # int32 scalar: steps during which switches were counted


def init_switches(kernels, wgrid: WeightGrid, grid: str = "nested") -> SwitchState:
    """Counters at zero, levels of ``kernels`` on ``wgrid``."""
    lv = tuple(
        levels(k, wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid)
        for i, k in enumerate(kernels)
    )
    return SwitchState(
        levels=lv,
        counts=tuple(jnp.zeros(k.shape, jnp.int32) for k in kernels),
        steps_counted=jnp.zeros((), jnp.int32),
    )


def count_switches(state: SwitchState, new_levels, track) -> SwitchState:
    """Adds one to every weight whose level moved to a contiguous level.

    Args:
      state: counters.
      new_levels: per site int32 levels after the step.
      track: bool scalar; False only records the levels (outside the window).

    Returns:
      The updated :class:`SwitchState`.
    """
    track = jnp.asarray(track, bool)
    counts = tuple(
        c + jnp.where(track & (jnp.abs(new - old) == 1), 1, 0).astype(jnp.int32)
        for c, new, old in zip(state.counts, new_levels, state.levels, strict=True)
    )
    return SwitchState(
        levels=tuple(new_levels),
        counts=counts,
        steps_counted=state.steps_counted + track.astype(jnp.int32),
    )


def select_extra(
    counts, switch_threshold: int | None = None, top_fraction: float | None = None
) -> tuple[jax.Array, ...]:
    """Extra-bit masks from switch counts.

    Args:
      counts: per site int32 switch counts.
      switch_threshold: weights with ``count >= max(switch_threshold, 1)`` are chosen.
      top_fraction: else, this share of all weights (over every site together,
        ``floor(top_fraction * n)`` weights) with the most switches; ties are broken
        by position (site order, then row-major); zero-count weights are never chosen.
        Exactly one of the two must be given.

    Returns:
      Per site bool masks.
    """
    if (switch_threshold is None) == (top_fraction is None):
        raise ValueError("give exactly one of switch_threshold and top_fraction")
    if switch_threshold is not None:
        thr = max(int(switch_threshold), 1)
        return tuple(c >= thr for c in counts)
    if not 0.0 <= top_fraction <= 1.0:
        raise ValueError("top_fraction must lie in [0, 1]")
    flat = jnp.concatenate([c.reshape(-1) for c in counts])
    n_pick = int(np.floor(top_fraction * flat.shape[0]))
    order = jnp.argsort(-flat, stable=True)
    rank = (
        jnp.zeros(flat.shape, jnp.int32)
        .at[order]
        .set(jnp.arange(flat.shape[0], dtype=jnp.int32))
    )
    chosen = (rank < n_pick) & (flat >= 1)
    out, start = [], 0
    for c in counts:
        out.append(chosen[start : start + c.size].reshape(c.shape))
        start += c.size
    return tuple(out)


# ----------------------------------------------------------------------------- LR scale


class ThresholdLRState(NamedTuple):
    """Fraction of quantized weights scaled down at the last update (diagnostic)."""

    near_fraction: jax.Array  # float32 scalar


def near_threshold(w, step, clip, band) -> jax.Array:
    """True where ``w`` is within ``band * step`` of a threshold of its grid.

    Thresholds are the midpoints ``(k + 1/2) * step`` between contiguous levels inside
    ``[-clip, clip]``; a weight beyond the clip is measured from the clip (the top
    level), so it is never near. ``step == 0`` marks an unquantized weight (never
    near).
    """
    step = jnp.asarray(step, jnp.float32)
    safe = jnp.where(step > 0, step, 1.0)
    u = jnp.clip(w, -clip, clip) / safe
    dist = 0.5 - jnp.abs(u - jnp.round(u))  # distance to the nearest midpoint, in steps
    return (step > 0) & (dist < band)


def threshold_lr_scale(
    band: float = 0.1, scale: float = 0.1
) -> optax.GradientTransformationExtraArgs:
    """Multiplies the update of weights near a quantization threshold by ``scale``.

    Chain it after the optimizer (``optax.chain(adam, threshold_lr_scale(...))``): the
    step size of a weight within ``band * step`` of the midpoint between two
    contiguous levels becomes ``scale`` times smaller.

    ``update(updates, state, params, *, grid)``: ``params`` are the current (latent,
    float) params and ``grid`` a pytree like them holding at each leaf a
    ``(step, clip)`` pair, both broadcastable to the leaf (:func:`step_tree`;
    step 0 = not quantized, left unscaled). Without ``grid`` the updates pass
    unchanged.

    Args:
      band: half-width of the band, a fraction of the step (0 turns it off).
      scale: learning-rate multiplier inside the band.

    Returns:
      An optax transformation with extra-args support.
    """
    if band < 0 or not 0 <= scale:
        raise ValueError("band and scale must be >= 0")

    def init_fn(params):
        del params
        return ThresholdLRState(near_fraction=jnp.zeros((), jnp.float32))

    def update_fn(updates, state, params=None, *, grid=None, **extra_args):
        del extra_args
        if grid is None or band == 0:
            return updates, state
        if params is None:
            raise ValueError("threshold_lr_scale needs the current params")
        near = jax.tree_util.tree_map(
            lambda w, g: near_threshold(w, g[0], g[1], band), params, grid
        )
        new = jax.tree_util.tree_map(
            lambda u, m: jnp.where(m, u * jnp.asarray(scale, u.dtype), u), updates, near
        )
        leaves_near = jax.tree_util.tree_leaves(near)
        leaves_step = jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(lambda w, g: g[0], params, grid)
        )
        n_near = sum(jnp.sum(m) for m in leaves_near)
        n_quant = sum(
            jnp.sum(jnp.broadcast_to(s > 0, m.shape))
            for m, s in zip(leaves_near, leaves_step, strict=True)
        )
        frac = n_near.astype(jnp.float32) / jnp.maximum(n_quant, 1).astype(jnp.float32)
        return new, ThresholdLRState(near_fraction=frac)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ----------------------------------------------------------------------------- storage


#: Storage and energy of a retrained configuration; the accounting lives with the
#: accelerator model (moved to :func:`mohaq_jax.hardware.reconfig.retrained_costs`).
compression = reconfig.retrained_costs


# ----------------------------------------------------------------------------- loop


@dataclasses.dataclass(frozen=True)
class SwitchingConfig:
    """Schedule and settings of switching-aware retraining."""

    warmup_epochs: int = 2  # uniform QAT epochs before the extra-bit weights are chosen
    window_epochs: int = 1  # last warm-up epochs during which switches are counted
    retrain_epochs: int = 2  # epochs of retraining with the mixed representation
    switch_threshold: int | None = None  # extra bit where count >= this ...
    top_fraction: float | None = 0.1  # ... or for this share of weights (exactly one)
    grid: str = "nested"  # extra-bit grid: "nested" (halved step) or "uniform"
    lr_band: float = 0.1  # LR damping band around thresholds (fraction of step; 0=off)
    lr_scale: float = 0.1  # LR multiplier inside the band
    damp_warmup: bool = True  # damp near thresholds in warm-up too (else only after)

    def __post_init__(self):
        if self.warmup_epochs < 0 or self.retrain_epochs < 0:
            raise ValueError("epochs must be >= 0")
        if not 0 <= self.window_epochs <= self.warmup_epochs:
            raise ValueError("window_epochs must lie in [0, warmup_epochs]")
        if (self.switch_threshold is None) == (self.top_fraction is None):
            raise ValueError("set exactly one of switch_threshold and top_fraction")
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}")

    @property
    def epochs(self) -> int:
        return self.warmup_epochs + self.retrain_epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def uniform_config(epochs: int) -> SwitchingConfig:
    """Plain uniform QAT in the same loop: no extra bits, no LR damping."""
    return SwitchingConfig(
        warmup_epochs=epochs,
        window_epochs=0,
        retrain_epochs=0,
        switch_threshold=None,
        top_fraction=0.0,
        lr_band=0.0,
    )


def make_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    paths: Sequence[Path],
    grid: str = "nested",
) -> Callable:
    """The pure switching-aware QAT step (jit it where it is called).

    Args:
      loss_fn: ``loss_fn(qparams, batch, key, aux) -> scalar``; ``qparams`` has the
        weight sites already fake-quantized (the model must not quantize them again),
        ``aux`` is passed through (activation bits, clips ...).
      optimizer: an optax transformation; one that accepts the ``grid`` extra
        argument (:func:`threshold_lr_scale` in a chain) damps near thresholds.
      paths: params paths of the weight sites.
      grid: extra-bit grid.

    Returns:
      ``step(params, opt_state, switches, batch, key, wgrid, aux, track, damp)
      -> (params, opt_state, switches, loss)``; ``track`` (bool array) says whether
      this step's level changes are counted, ``damp`` (bool array) whether the
      threshold LR scale acts in this step.
    """
    paths = tuple(tuple(p) for p in paths)
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)

    def step(params, opt_state, switches, batch, key, wgrid, aux, track, damp=True):
        def objective(p):
            return loss_fn(quantize_sites(p, paths, wgrid, grid), batch, key, aux)

        loss, grads = jax.value_and_grad(objective)(params)
        # optax's Adam bias correction computes ``b1 ** count`` (float ** int32),
        # which strict dtype promotion refuses.
        with jax.numpy_dtype_promotion("standard"):
            if extra_args:
                updates, opt_state = optimizer.update(
                    grads,
                    opt_state,
                    params,
                    grid=step_tree(params, paths, wgrid, grid, damp),
                )
            else:
                updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        new_levels = [
            levels(
                get_path(params, p), wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid
            )
            for i, p in enumerate(paths)
        ]
        switches = count_switches(switches, new_levels, track)
        return params, opt_state, switches, loss

    return step


def retrain(
    params,
    paths: Sequence[Path],
    wgrid: WeightGrid,
    loss_fn: Callable,
    aux: Any,
    optimizer: optax.GradientTransformation,
    batches: Callable[[int], Iterable],
    key: jax.Array,
    config: SwitchingConfig,
    evaluate: Callable | None = None,
    progress: bool = False,
    desc: str = "switching QAT",
) -> tuple[Any, WeightGrid, dict]:
    """Uniform warm-up, selection of switching weights, mixed-precision retraining.

    Epochs ``0 .. warmup_epochs - 1`` train at the base bits (switches counted in the
    last ``window_epochs``); then the extra-bit weights are selected
    (:func:`select_extra`), the counters restart on the new grid (the final counts
    show how much switching remains) and ``retrain_epochs`` more epochs train with the
    mixed representation. Optimizer state and step numbering run on across phases.
    With ``lr_band > 0`` the optimizer gets :func:`threshold_lr_scale` chained after
    it (in warm-up too when ``damp_warmup``).

    Args:
      params: starting (float) params.
      paths: params paths of the weight sites.
      wgrid: base grid (:func:`make_grid`, no extra-bit weight).
      loss_fn, aux: as in :func:`make_step`.
      optimizer: base optimizer (e.g. ``train.make_optimizer``).
      batches: ``batches(epoch) -> iterable of batches`` (deterministic per epoch).
      key: dropout keys; step ``s`` uses ``fold_in(key, s)``.
      config: schedule.
      evaluate: optional ``evaluate(qparams) -> float`` error after every epoch
        (``qparams`` already quantized on the current grid).
      progress: tqdm bar over steps.
      desc: bar label.

    Returns:
      ``(params, wgrid, info)``: the final latent params, the grid with the extra-bit
      masks, and info with ``history`` (per epoch: epoch, phase, loss, error,
      near_fraction), ``window_counts`` (per site int numpy arrays: switches counted
      in the window), ``final_counts`` (switches during the mixed phase),
      ``extra_counts``/``n_weights`` per site, ``steps`` and ``window_steps``.
    """
    paths = tuple(tuple(p) for p in paths)
    damp = config.lr_band > 0
    opt = (
        optax.chain(optimizer, threshold_lr_scale(config.lr_band, config.lr_scale))
        if damp
        else optimizer
    )
    step_fn = jax.jit(
        make_step(loss_fn, opt, paths, config.grid), donate_argnums=(0, 1)
    )
    opt_state = opt.init(params)
    params = jax.tree_util.tree_map(jnp.copy, params)
    switches = init_switches(site_kernels(params, paths), wgrid, config.grid)
    history, window_counts, n_step, window_steps = [], None, 0, 0
    n_weights = [int(np.prod(k.shape)) for k in site_kernels(params, paths)]
    bar = tqdm(total=None, desc=desc, disable=not progress, leave=False, unit="step")
    for epoch in range(config.epochs):
        if epoch == config.warmup_epochs:
            window_counts = [np.asarray(c) for c in switches.counts]
            window_steps = int(switches.steps_counted)
            masks = select_extra(
                switches.counts, config.switch_threshold, config.top_fraction
            )
            wgrid = wgrid.replace(extra=tuple(masks))
            switches = init_switches(site_kernels(params, paths), wgrid, config.grid)
        warm = epoch < config.warmup_epochs
        phase = "warmup" if warm else "mixed"
        track = jnp.asarray(
            (not warm) or epoch >= config.warmup_epochs - config.window_epochs
        )
        damp_now = jnp.asarray((not warm) or config.damp_warmup)
        losses = []
        for batch in batches(epoch):
            key_step = jax.random.fold_in(key, n_step)
            params, opt_state, switches, loss = step_fn(
                params,
                opt_state,
                switches,
                batch,
                key_step,
                wgrid,
                aux,
                track,
                damp_now,
            )
            losses.append(loss)
            n_step += 1
            bar.update(1)
        record = {
            "epoch": epoch + 1,
            "phase": phase,
            "loss": float(np.mean(jax.device_get(losses))) if losses else None,
        }
        if damp:
            record["near_fraction"] = float(opt_state[1].near_fraction)
        if evaluate is not None:
            record["error"] = float(
                evaluate(quantize_sites(params, paths, wgrid, config.grid))
            )
        history.append(record)
        bar.set_postfix(
            phase=phase,
            loss=f"{record['loss']:.3f}",
            err=f"{record.get('error', float('nan')):.3f}",
        )
    bar.close()
    if window_counts is None:  # no mixed phase
        window_counts = [np.asarray(c) for c in switches.counts]
        window_steps = int(switches.steps_counted)
        final_counts = None
    else:
        final_counts = [np.asarray(c) for c in switches.counts]
    info = {
        "history": history,
        "window_counts": window_counts,
        "window_steps": window_steps,
        "final_counts": final_counts,
        "extra_counts": [int(np.sum(m)) for m in wgrid.extra],
        "n_weights": n_weights,
        "steps": n_step,
    }
    return params, wgrid, info
