"""The platform contract: declared metrics, genome spaces and a cost function.

A platform declares every metric its cost function returns (:class:`Metric`: name,
unit, maximized or minimized, description), which of them the memory constraint
bounds, and the genome spaces it runs. :meth:`Platform.make_cost_fn` checks, when it
traces, that the cost function returns exactly the declared metrics, so a search can
offer only what a platform declares (:meth:`Platform.check_objectives`) and no
platform reports a placeholder for a quantity it does not model.

A new accelerator is one file: a frozen spec dataclass, a pure
``costs(bits_w, bits_a, layers, spec) -> dict`` (see :mod:`mohaq_jax.hardware.base`
for the per-layer arrays and the memory formula) and a ``PLATFORM = Platform(...)``
that declares its metrics; plus one line in ``mohaq_jax.hardware.PLATFORMS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.hardware.base import CostFn, check_bits_supported, layer_arrays

if TYPE_CHECKING:  # genome spaces sit above hardware; only their type is named here
    from mohaq_jax.evaluation.genome import GenomeSpace


@dataclasses.dataclass(frozen=True)
class Metric:
    """One quantity a platform's cost function returns.

    Attributes:
      name: key in the cost function's dict.
      unit: e.g. ``"x"`` (a ratio), ``"pJ/frame"``, ``"MB"``.
      maximize: True if larger is better (negated before NSGA-II minimizes it).
      description: one line: what it is and how it is computed.
      objective: True if the search may use it as an objective; False for parts of
        another metric and alternative aggregations that are only reported.
      placeholder: "" when every constant it is built on cites a source; else why
        it is not (which constants are placeholders). Reports and plots label such a
        metric's numbers as resting on placeholders (:attr:`label`).
    """

    name: str
    unit: str
    maximize: bool
    description: str
    objective: bool = True
    placeholder: str = ""

    @property
    def label(self) -> str:
        """Name and unit, with "PLACEHOLDER constants" when :attr:`placeholder`."""
        mark = ", PLACEHOLDER constants" if self.placeholder else ""
        return f"{self.name} ({self.unit}{mark})"

    @property
    def direction(self) -> str:
        """``"maximized"`` or ``"minimized"``."""
        return "maximized" if self.maximize else "minimized"

    def __str__(self) -> str:
        return f"{self.name} ({self.unit}, {self.direction})"


@dataclasses.dataclass(frozen=True)
class Platform:
    """An accelerator: its metrics, genome spaces, constants and a pure cost function.

    The contract: ``costs`` returns exactly the metrics named in ``metrics`` (checked
    when :meth:`make_cost_fn` traces it), each a finite float32 scalar, and nothing
    else; a metric a model cannot give is left out of ``metrics``, never faked.

    Attributes:
      name: registry name.
      spaces: names of the genome spaces (``mohaq_jax.evaluation.genome.SPACES``) this platform
        runs; the first is the one searched by default.
      spec: frozen dataclass of constants, each field citing its source.
      costs: ``costs(bits_w, bits_a, layers, spec) -> dict`` of scalar arrays, pure
        and jittable, one genome's per-layer bits.
      weight_bits: bit-widths the platform runs for weights.
      act_bits: bit-widths the platform runs for input activations.
      metrics: every key ``costs`` returns, with unit and direction.
      memory_metric: the metric bounded by the memory constraint (a minimized one),
        or None if the platform has no memory constraint.
      memory_limit_mb: the memory constraint used for the paper's model (in the unit
        of ``memory_metric``; ``inf`` for none); a search may pass its own.
      description: one line for listings.
    """

    name: str
    spaces: tuple[str, ...]
    spec: Any
    costs: Callable[..., dict[str, jax.Array]]
    weight_bits: tuple[int, ...]
    act_bits: tuple[int, ...]
    metrics: tuple[Metric, ...]
    memory_metric: str | None = None
    memory_limit_mb: float = float("inf")
    description: str = ""

    def __post_init__(self):
        if isinstance(self.spaces, str) or not self.spaces:
            raise ValueError(
                f"platform {self.name!r}: spaces must be a non-empty tuple of "
                "genome space names"
            )
        names = [m.name for m in self.metrics]
        if not names or len(set(names)) != len(names):
            raise ValueError(
                f"platform {self.name!r}: metrics must be non-empty with unique "
                f"names, got {names}"
            )
        if "error" in names:
            raise ValueError(
                f"platform {self.name!r}: 'error' is the model's metric, not a "
                "platform's"
            )
        if self.memory_metric is not None and (
            self.memory_metric not in names or self.metric(self.memory_metric).maximize
        ):
            raise ValueError(
                f"platform {self.name!r}: memory_metric {self.memory_metric!r} must "
                f"be one of its minimized metrics {names}"
            )
        if self.memory_metric is None and np.isfinite(self.memory_limit_mb):
            raise ValueError(
                f"platform {self.name!r} has a memory limit but no memory_metric"
            )

    # ---- declared metrics -----------------------------------------------------------
    @property
    def space_name(self) -> str:
        """The genome space searched by default (``spaces[0]``)."""
        return self.spaces[0]

    def metric_names(self) -> tuple[str, ...]:
        """Names of every metric the cost function returns, declaration order."""
        return tuple(m.name for m in self.metrics)

    def objectives(self) -> tuple[str, ...]:
        """Names of the metrics a search may use as objectives."""
        return tuple(m.name for m in self.metrics if m.objective)

    def placeholders(self) -> dict[str, str]:
        """Metric name -> why its numbers rest on placeholder constants (only the
        metrics that do)."""
        return {m.name: m.placeholder for m in self.metrics if m.placeholder}

    def metric(self, name: str) -> Metric:
        """The declared metric ``name``; a ValueError listing the declared ones."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise ValueError(
            f"platform {self.name!r} has no metric {name!r}; it declares: "
            + ", ".join(str(m) for m in self.metrics)
        )

    def maximized(self, names: Sequence[str]) -> tuple[str, ...]:
        """Those of ``names`` (platform metrics or ``"error"``) that are maximized."""
        return tuple(n for n in names if n != "error" and self.metric(n).maximize)

    def check_objectives(
        self, names: Sequence[str], maximize: Sequence[str] | None = None
    ) -> tuple[str, ...]:
        """Validates search objectives against the declaration.

        Args:
          names: objectives; ``"error"`` (the model's) or this platform's objective
            metrics.
          maximize: if given, must name exactly the maximized ones among ``names``.

        Returns:
          the maximized ones among ``names``.

        Raises:
          ValueError: naming the offending objective and the platform's objectives.
        """
        offered = self.objectives()
        for name in names:
            if name != "error" and name not in offered:
                raise ValueError(
                    f"objective {name!r} is not offered by platform {self.name!r}; "
                    "its objectives: error, "
                    + ", ".join(str(self.metric(n)) for n in offered)
                )
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a name: {tuple(names)}")
        wanted = self.maximized(names)
        if maximize is not None and set(maximize) != set(wanted):
            raise ValueError(
                f"maximize={tuple(maximize)} disagrees with platform {self.name!r}, "
                f"which maximizes {wanted} among the objectives {tuple(names)}"
            )
        return wanted

    # ---- cost functions -------------------------------------------------------------
    def check_space(self, space: GenomeSpace) -> None:
        """Raises ValueError if ``space`` can produce bits this platform cannot run."""
        names = [layer.name for layer in space.layers]
        for which, supported, what in (
            ("w", self.weight_bits, "weights"),
            ("a", self.act_bits, "activations"),
        ):
            for name, values in zip(names, space.layer_values(which), strict=True):
                bad = [v for v in values if v not in supported]
                if bad:
                    raise ValueError(
                        f"genome space {space.name!r} can give layer {name} "
                        f"{bad[0]}-bit {what}, which platform {self.name!r} cannot run "
                        f"(it supports {supported}); search it with the "
                        f"{self.space_name!r} space"
                    )

    def check_bits(self, bits_w, bits_a, names: Sequence[str] = ()) -> None:
        """Checks concrete per-layer bits at the Python boundary."""
        check_bits_supported(bits_w, self.weight_bits, self.name, "weights", names)
        check_bits_supported(bits_a, self.act_bits, self.name, "activations", names)

    def make_cost_fn(self, space: GenomeSpace) -> CostFn:
        """Cost function of ONE genome of ``space`` (int levels, ``(n_genes,)``).

        Validates ``space`` against the platform here, outside jit. The returned
        function is pure and jittable; ``jax.vmap`` it over a population. It raises a
        ValueError at trace time if the genome's shape is not ``(space.n_genes,)``, or
        if ``costs`` does not return exactly the declared metrics.

        Returns:
          ``cost(genome) -> dict[str, jax.Array]`` of float32 scalars, keys
          :meth:`metric_names`.
        """
        self.check_space(space)
        layers = layer_arrays(space.layers)
        spec, costs, declared = self.spec, self.costs, set(self.metric_names())

        def cost(genome: jax.Array) -> dict[str, jax.Array]:
            genome = jnp.asarray(genome)
            if genome.shape != (space.n_genes,):
                raise ValueError(
                    f"platform {self.name!r} with space {space.name!r} takes one "
                    f"genome of shape ({space.n_genes},), got {genome.shape}; "
                    "vmap over a population"
                )
            bits_w, bits_a = space.decode(genome)
            out = costs(bits_w, bits_a, layers, spec)
            if set(out) != declared:
                raise ValueError(
                    f"platform {self.name!r}: costs returned {sorted(out)}, but the "
                    f"platform declares {sorted(declared)}"
                )
            return {k: jnp.asarray(out[k], jnp.float32) for k in self.metric_names()}

        return cost

    def evaluate(self, space: GenomeSpace, genomes) -> dict[str, np.ndarray]:
        """Costs of a population at the Python boundary (validated, vmapped, jitted).

        Args:
          space: the genome space the genomes belong to.
          genomes: int ``(pop, n_genes)`` or ``(n_genes,)``.

        Returns:
          dict of numpy arrays, shape ``(pop,)`` (or scalars for one genome).
        """
        genomes = space.validate(genomes)
        cost = self.make_cost_fn(space)
        fn = jax.jit(jax.vmap(cost) if genomes.ndim == 2 else cost)
        return {k: np.asarray(v) for k, v in fn(jnp.asarray(genomes)).items()}

    def memory_constraint(
        self, memory: jax.Array, limit_mb: float | None = None
    ) -> jax.Array:
        """Normalized constraint ``(memory - limit) / limit``; feasible when <= 0.

        The authors' form (``g1 = (mem_size - 6) / 6``); ``memory`` is the value of
        :attr:`memory_metric`, ``limit_mb`` defaults to :attr:`memory_limit_mb`.
        """
        if self.memory_metric is None:
            raise ValueError(f"platform {self.name!r} declares no memory metric")
        limit = self.memory_limit_mb if limit_mb is None else limit_mb
        return (memory - jnp.float32(limit)) / jnp.float32(limit)
