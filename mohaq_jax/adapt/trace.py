"""Finding and quantizing the weight-multiplying ops of any JAX function of params.

The adapter (:mod:`mohaq_jax.adapt`) does not ask the model to name its layers: it
traces the user's forward ``forward(params, batch)`` to a jaxpr and follows every
params leaf through the program. An op that multiplies weights is a ``dot_general``
or ``conv_general_dilated`` equation with exactly one operand that *derives from
params* (the leaf itself, or the leaf after reshapes, transposes, casts, broadcasts or
a concatenation of several leaves, as flax's ``OptimizedLSTMCell`` concatenates its
gate kernels); the other operand is the op's input activation. This catches
``nn.Dense``, ``DenseGeneral``, ``Conv``, ``Einsum``, the attention projections, flax's
own recurrent cells and any ``x @ W`` / ``jnp.einsum`` / ``lax.dot_general`` /
``lax.conv`` on a parameter inside a custom module, whatever calls it. qwix
intercepts the same ops by patching ``jax.lax.dot_general``, ``jnp.einsum`` and
``lax.conv_general_dilated`` at the Python level (``qwix/_src/interception.py``);
working on the jaxpr instead also sees ``x @ W`` (``jnp.matmul``), which qwix 0.1.8
does not intercept, and ops inside ``lax.scan`` (``nn.RNN``).

:func:`run_jaxpr` is a small interpreter of that jaxpr: it binds every equation as
is, except that it hands each weight op to a hook (which records the op, captures its
input for calibration, or fake-quantizes the input at traced bits). Calls (``jit``,
custom derivatives, remat) are inlined; ``scan``, ``while`` and ``cond`` are rebuilt
with their bodies interpreted, so bits traced outside reach ops inside loops.
Inference only: custom derivative rules are dropped by the inlining.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.extend as jex
import numpy as np

#: Ops after which a params-derived value is still "the weight" (layout, dtype).
_LAYOUT_OPS = frozenset(
    {
        "reshape",
        "transpose",
        "convert_element_type",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "copy",
        "copy_p",
        "reduce_precision",
        "rev",
        "concatenate",
        "sharding_constraint",
    }
)
#: Call-like primitives whose inner jaxpr is inlined.
_CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "remat",
        "checkpoint",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
    }
)
WEIGHT_OPS = ("dot_general", "conv_general_dilated")

NO_LEAVES: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class WeightOp:
    """One weight-multiplying op seen while tracing (static facts, from shapes).

    ``macs`` counts every execution of the op in one call of the forward (times the
    length of each enclosing scan).
    """

    primitive: str  # "dot_general" | "conv_general_dilated"
    leaves: tuple[int, ...]  # params leaves (flatten order) the weight derives from
    weight_shape: tuple[int, ...]  # the weight operand as the op sees it
    act_shape: tuple[int, ...]  # the input activation as the op sees it
    n_contract: int  # weight elements summed into one output value (n_in)
    macs: int  # multiply-accumulates per call of the forward
    scope: str  # flax/jax name stack where the op was traced, for messages


def _inner_jaxpr(eqn):
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if inner is not None:
            return inner
    return None


def _as_closed(inner):
    if isinstance(inner, jex.core.ClosedJaxpr):
        return inner.jaxpr, inner.consts
    return inner, ()


def op_facts(eqn, weight_index: int, leaves, multiplier: int) -> WeightOp:
    """The :class:`WeightOp` of a ``dot_general`` / conv equation (from its avals)."""
    w_aval = eqn.invars[weight_index].aval
    a_aval = eqn.invars[1 - weight_index].aval
    out_size = math.prod(eqn.outvars[0].aval.shape)
    if eqn.primitive.name == "dot_general":
        (lhs_c, rhs_c), _ = eqn.params["dimension_numbers"]
        contract = lhs_c if weight_index == 0 else rhs_c
        n_contract = math.prod(w_aval.shape[d] for d in contract)
    else:  # conv: every output value sums a kernel window over its input channels
        rhs_spec = eqn.params["dimension_numbers"].rhs_spec
        n_contract = math.prod(w_aval.shape) // w_aval.shape[rhs_spec[0]]
    return WeightOp(
        primitive=eqn.primitive.name,
        leaves=tuple(sorted(leaves)),
        weight_shape=tuple(w_aval.shape),
        act_shape=tuple(a_aval.shape),
        n_contract=int(n_contract),
        macs=int(out_size * n_contract * multiplier),
        scope=str(eqn.source_info.name_stack),
    )


class Hook:
    """What the interpreter does at a weight op; the base class just runs it.

    ``frames`` is a stack of lists that subclasses may fill with ``(key, value)``
    pairs (calibration captures); a ``scan`` body's values come back stacked over
    its steps.
    """

    def __init__(self):
        self.frames: list[list] = [[]]

    def weight_op(self, eqn, invals, weight_index: int, leaves, multiplier: int):
        """Output values of the op (a list); default: the op unchanged."""
        del weight_index, leaves, multiplier
        return _bind(eqn, invals)


def _bind(eqn, invals):
    out = eqn.primitive.bind(*invals, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def run_jaxpr(
    jaxpr,
    consts: Sequence,
    args: Sequence,
    arg_leaves: Sequence[frozenset],
    hook: Hook,
    multiplier: int = 1,
    *,
    run: Sequence[bool] | None = None,
    preset: dict | None = None,
    returns: Sequence | None = None,
):
    """Evaluates ``jaxpr`` on ``args``, handing every weight op to ``hook``.

    Args:
      jaxpr: an open ``Jaxpr`` (constvars bound to ``consts``).
      consts, args: its constants and inputs (arrays or tracers).
      arg_leaves: per input, the params leaves it derives from (empty: none).
      hook: a :class:`Hook`.
      multiplier: executions of this jaxpr per call of the forward (scan lengths).
      run: per equation, whether to run it (default all): a part of the program.
      preset: var -> value known beforehand (the other part's results).
      returns: the vars to return instead of the jaxpr's outputs.

    Returns:
      ``(outputs, output_leaves)``.
    """
    env, prov = dict(preset or {}), {}

    def read(v):
        return v.val if isinstance(v, jex.core.Literal) else env[v]

    def leaves_of(v):
        return NO_LEAVES if isinstance(v, jex.core.Literal) else prov.get(v, NO_LEAVES)

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a, p in zip(jaxpr.invars, args, arg_leaves, strict=True):
        env[v], prov[v] = a, p
    for index, eqn in enumerate(jaxpr.eqns):
        if run is not None and not run[index]:
            continue
        invals = [read(v) for v in eqn.invars]
        in_leaves = [leaves_of(v) for v in eqn.invars]
        name = eqn.primitive.name
        out_leaves = None
        if name in WEIGHT_OPS and bool(in_leaves[0]) != bool(in_leaves[1]):
            w = 0 if in_leaves[0] else 1
            outs = hook.weight_op(eqn, invals, w, in_leaves[w], multiplier)
        elif name in _CALLS and _inner_jaxpr(eqn) is not None:
            inner, inner_consts = _as_closed(_inner_jaxpr(eqn))
            outs, out_leaves = run_jaxpr(
                inner, inner_consts, invals, in_leaves, hook, multiplier
            )
        elif name == "scan":
            outs = _scan(eqn, invals, in_leaves, hook, multiplier)
        elif name == "while":
            outs = _while(eqn, invals, in_leaves, hook, multiplier)
        elif name == "cond":
            outs = _cond(eqn, invals, in_leaves, hook, multiplier)
        else:
            outs = _bind(eqn, invals)
            if name in _LAYOUT_OPS and all(in_leaves):
                out_leaves = [frozenset().union(*in_leaves)] * len(outs)
        if out_leaves is None:
            out_leaves = [NO_LEAVES] * len(outs)
        for v, val, p in zip(eqn.outvars, outs, out_leaves, strict=True):
            env[v] = val
            if p:
                prov[v] = p
    outvars = jaxpr.outvars if returns is None else returns
    return [read(v) for v in outvars], [leaves_of(v) for v in outvars]


def split_program(jaxpr, late_inputs: Sequence[int]):
    """Splits a jaxpr's equations into the part before and after ``late_inputs``.

    An equation is *late* if it reads a late input or a late equation's output
    (equations are in dependency order, so one pass decides). The early part is
    what the first stage of a population evaluation computes once per setting of
    its genes; the *frontier* is the early values the late part or the outputs read.

    Returns:
      ``(early, frontier)``: a bool per equation and the frontier vars.
    """
    late = {jaxpr.invars[i] for i in late_inputs}

    def is_var(v):
        return not isinstance(v, jex.core.Literal)

    early = []
    for eqn in jaxpr.eqns:
        is_late = any(is_var(v) and v in late for v in eqn.invars)
        if is_late:
            late.update(eqn.outvars)
        early.append(not is_late)
    made_early = [
        v for eqn, e in zip(jaxpr.eqns, early, strict=True) if e for v in eqn.outvars
    ]
    needed = {v for v in jaxpr.outvars if is_var(v)}
    for eqn, e in zip(jaxpr.eqns, early, strict=True):
        if not e:
            needed.update(v for v in eqn.invars if is_var(v))
    return tuple(early), tuple(v for v in made_early if v in needed)


def _scan(eqn, invals, in_leaves, hook, multiplier):
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    body, body_consts = _as_closed(p["jaxpr"])
    consts, init, xs = (
        invals[:n_consts],
        invals[n_consts : n_consts + n_carry],
        invals[n_consts + n_carry :],
    )
    leaves = list(in_leaves[:n_consts]) + [NO_LEAVES] * (len(invals) - n_consts)

    keys = []  # what each captured value is, known once the body is traced

    def step(carry, x):
        hook.frames.append([])
        outs, _ = run_jaxpr(
            body,
            body_consts,
            [*consts, *carry, *x],
            leaves,
            hook,
            multiplier * p["length"],
        )
        captured = hook.frames.pop()
        keys[:] = [key for key, _ in captured]
        return outs[:n_carry], (outs[n_carry:], [value for _, value in captured])

    carry, (ys, captured) = jax.lax.scan(
        step,
        init,
        xs,
        length=p["length"],
        reverse=p["reverse"],
        unroll=p["unroll"],
    )
    # Captures come back stacked over the steps: (length, ...).
    hook.frames[-1].extend(zip(keys, captured, strict=True))
    return [*carry, *ys]


def _no_capture(hook, what: str):
    if hook.frames[-1]:
        raise NotImplementedError(
            f"a weight op inside {what} cannot be calibrated from captures; "
            "use lax.scan, or calibrate that site by hand"
        )


def _while(eqn, invals, in_leaves, hook, multiplier):
    p = eqn.params
    n_cc, n_bc = p["cond_nconsts"], p["body_nconsts"]
    cond_j, cond_consts = _as_closed(p["cond_jaxpr"])
    body_j, body_consts = _as_closed(p["body_jaxpr"])
    cc, bc, init = invals[:n_cc], invals[n_cc : n_cc + n_bc], invals[n_cc + n_bc :]
    c_leaves = list(in_leaves[:n_cc]) + [NO_LEAVES] * len(init)
    b_leaves = list(in_leaves[n_cc : n_cc + n_bc]) + [NO_LEAVES] * len(init)

    def cond_fn(carry):
        outs, _ = run_jaxpr(cond_j, cond_consts, [*cc, *carry], c_leaves, hook)
        return outs[0]

    def body_fn(carry):
        hook.frames.append([])
        # The trip count is unknown: MACs count one iteration.
        outs, _ = run_jaxpr(
            body_j, body_consts, [*bc, *carry], b_leaves, hook, multiplier
        )
        _no_capture(hook, "a while loop")
        hook.frames.pop()
        return outs

    return list(jax.lax.while_loop(cond_fn, body_fn, list(init)))


def _cond(eqn, invals, in_leaves, hook, multiplier):
    index, ops = invals[0], invals[1:]
    leaves = in_leaves[1:]

    def branch(closed):
        inner, inner_consts = _as_closed(closed)

        def fn(*args):
            hook.frames.append([])
            outs, _ = run_jaxpr(inner, inner_consts, args, leaves, hook, multiplier)
            _no_capture(hook, "a cond branch")
            hook.frames.pop()
            return outs

        return fn

    return list(
        jax.lax.switch(index, [branch(b) for b in eqn.params["branches"]], *ops)
    )


def trace(forward: Callable, params, batch):
    """The forward's jaxpr for the shapes of ``params`` and ``batch`` (no compute).

    Works on tracers too (inside ``jit``/``vmap`` the per-example shapes are used).

    Returns:
      ``(closed_jaxpr, n_param_leaves)``; the jaxpr's inputs are the params leaves
      (``jax.tree_util`` flatten order) followed by the batch leaves.
    """

    def spec(x):
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype)

    shapes = jax.tree_util.tree_map(spec, (params, batch))
    closed = jax.make_jaxpr(forward)(*shapes)
    return closed, len(jax.tree_util.tree_leaves(params))


def interpret(forward: Callable, params, batch, hook: Hook):
    """Runs ``forward(params, batch)`` through :func:`run_jaxpr` (flat outputs)."""
    closed, n_params = trace(forward, params, batch)
    args = jax.tree_util.tree_leaves((params, batch))
    leaves = [frozenset({i}) for i in range(n_params)] + [NO_LEAVES] * (
        len(args) - n_params
    )
    outs, _ = run_jaxpr(closed.jaxpr, closed.consts, args, leaves, hook)
    out_tree = jax.tree_util.tree_structure(jax.eval_shape(forward, params, batch))
    return jax.tree_util.tree_unflatten(out_tree, outs)


class _Recorder(Hook):
    def __init__(self):
        super().__init__()
        self.ops: list[WeightOp] = []

    def weight_op(self, eqn, invals, weight_index, leaves, multiplier):
        self.ops.append(op_facts(eqn, weight_index, leaves, multiplier))
        return _bind(eqn, invals)


def find_weight_ops(forward: Callable, params, batch) -> list[WeightOp]:
    """Every weight op of ``forward(params, batch)``, in trace order (no compute)."""
    recorder = _Recorder()
    jax.eval_shape(lambda p, b: interpret(forward, p, b, recorder), params, batch)
    return recorder.ops


__all__ = [
    "WEIGHT_OPS",
    "Hook",
    "WeightOp",
    "find_weight_ops",
    "interpret",
    "op_facts",
    "run_jaxpr",
    "split_program",
    "trace",
]
