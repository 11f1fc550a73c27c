"""Population-parallel evaluation and training over many devices.

A population outgrows one device long before the model does, so the population axis is
what gets split: genomes (and, for batched QAT, their stacked params and optimizer
states) are sharded over a :class:`jax.sharding.Mesh` axis named ``"pop"``, while the
float weights, calibration tables and data are replicated. With a second mesh axis
``"batch"`` the data are split along utterances too, and per-genome metric sums are
``psum``-ed over it. Everything goes through JAX's own machinery (``shard_map`` under
``jit``), so the same code runs on one CPU, 8 forced host devices, a GPU box, or many
hosts after :func:`initialize_distributed`.

A population that does not divide the device count is padded (by repeating its last
row, so the padding is well-formed work) and the padding is dropped from the results.
On a single device every helper here returns the function unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

POP = "pop"  # mesh axis of the population
BATCH = "batch"  # mesh axis of the data (utterances), optional


def population_mesh(
    n_devices: int | None = None, n_batch: int = 1, devices: Sequence | None = None
) -> Mesh:
    """A mesh ``(pop, batch)`` over the first ``n_devices`` devices.

    Args:
      n_devices: devices to use (default: all, ``jax.devices()``, every host's).
      n_batch: how many of them split the data along utterances; the rest
        (``n_devices // n_batch``) split the population.
      devices: explicit device list (overrides ``n_devices``).

    Returns:
      A :class:`Mesh` with axes ``("pop", "batch")``.
    """
    devices = list(jax.devices() if devices is None else devices)
    n_devices = len(devices) if n_devices is None else n_devices
    if not 1 <= n_devices <= len(devices):
        raise ValueError(f"asked for {n_devices} devices, {len(devices)} available")
    if n_batch < 1 or n_devices % n_batch:
        raise ValueError(f"n_batch={n_batch} must divide n_devices={n_devices}")
    grid = np.asarray(devices[:n_devices], dtype=object).reshape(-1, n_batch)
    return Mesh(grid, (POP, BATCH))


def mesh_size(mesh: Mesh | None, axis: str = POP) -> int:
    """Devices along ``axis`` (1 without a mesh)."""
    return 1 if mesh is None else int(mesh.shape[axis])


def pad_rows(x, multiple: int):
    """Pads the leading axis to a multiple by repeating the last row (traceable).

    Returns:
      The padded array (unchanged when already a multiple).
    """
    n = x.shape[0]
    size = -(-n // multiple) * multiple
    if size == n:
        return x
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.concatenate([x, xp.repeat(x[-1:], size - n, axis=0)], axis=0)


def _spec(axis, name: str):
    if axis == 0:
        return PartitionSpec(name)
    if axis == BATCH:
        return PartitionSpec(BATCH)
    return PartitionSpec()


def _leading(tree, in_axes) -> int:
    sizes = {
        leaf.shape[0]
        for axis, sub in zip(in_axes, tree, strict=True)
        if axis == 0
        for leaf in jax.tree_util.tree_leaves(sub)
    }
    if len(sizes) != 1:
        raise ValueError(
            f"population arguments disagree on their leading size: {sizes}"
        )
    return sizes.pop()


def shard_population(
    fn: Callable,
    mesh: Mesh | None,
    in_axes: Sequence[int | None],
    out_axes: Any = 0,
    axis_name: str = POP,
) -> Callable:
    """Splits a population-batched function over a mesh axis, padding as needed.

    ``fn`` must already work on a whole population (e.g. ``jax.vmap`` of a per-genome
    function, or :func:`mohaq_jax.evaluation.evaluate.make_population_eval`'s inner function);
    each device runs it on its slice. Arguments with ``in_axes`` 0 (every leaf of that
    argument's pytree has the population as its leading axis: genomes, stacked params,
    optimizer states, per-genome keys) are padded to a multiple of the axis size and
    split; arguments with ``None`` (float weights, data, calibration) are replicated.
    Outputs with ``out_axes`` 0 are gathered along the population and the padding is
    dropped; ``None`` outputs must be identical on every device (e.g. already reduced
    with ``psum``).

    Args:
      fn: population function ``fn(*args) -> outputs``.
      mesh: the mesh; ``None`` or a single device returns ``fn`` unchanged.
      in_axes: per positional argument, 0 (population), None (replicated) or
        ``"batch"`` (leading axis split over the mesh's ``batch`` axis, unpadded: the
        caller pads it and reduces over ``batch`` inside ``fn``).
      out_axes: 0 or None, or a pytree prefix of the outputs made of them.
      axis_name: mesh axis that carries the population.

    Returns:
      A function with ``fn``'s signature and results (not jitted: jit it, or call it
      inside a jitted function).
    """
    in_axes = tuple(in_axes)
    if mesh is None or mesh.size == 1:
        return fn
    n_shards = mesh_size(mesh, axis_name)
    in_specs = tuple(_spec(a, axis_name) for a in in_axes)
    out_specs = jax.tree_util.tree_map(lambda a: _spec(a, axis_name), out_axes)
    mapped = jax.shard_map(
        fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )

    def sharded(*args):
        if len(args) != len(in_axes):
            raise TypeError(f"expected {len(in_axes)} arguments, got {len(args)}")
        n = _leading(args, in_axes)
        args = tuple(
            jax.tree_util.tree_map(lambda x: pad_rows(x, n_shards), arg)
            if axis == 0
            else arg
            for axis, arg in zip(in_axes, args, strict=True)
        )
        out = mapped(*args)

        def unpad(axis, sub):
            return jax.tree_util.tree_map(lambda x: x[:n], sub) if axis == 0 else sub

        return jax.tree_util.tree_map(unpad, out_axes, out)

    return sharded


def population_sharding(mesh: Mesh, axis_name: str = POP) -> NamedSharding:
    """Sharding of an array whose leading axis is the population."""
    return NamedSharding(mesh, PartitionSpec(axis_name))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of an array every device holds whole."""
    return NamedSharding(mesh, PartitionSpec())


def to_host(x) -> np.ndarray:
    """A (possibly multi-host) sharded array as a numpy array on this host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


_JOINED = False  # whether this process joined a multi-host run (only once allowed)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-host run (``jax.distributed.initialize``); a no-op for one process.

    Call it first thing in ``main()``, before any other JAX call (calling it again
    does nothing). With no arguments
    JAX reads the cluster from the environment (SLURM, Open MPI, TPU pods), or from
    ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``.
    """
    global _JOINED
    if num_processes == 1 or _JOINED:
        return
    if coordinator_address is None and num_processes is None and process_id is None:
        if not any(
            k in os.environ
            for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")
        ):
            return
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    _JOINED = True


def device_count() -> int:
    """Devices of the run, every host's (joins a multi-host run first)."""
    initialize_distributed()
    return len(jax.devices())


def describe_devices() -> str:
    """The devices JAX sees, in words (``"1 cpu"``, ``"8 gpu"``)."""
    devices = jax.devices()
    return f"{len(devices)} {devices[0].platform}"


def is_main_process() -> bool:
    """True on the process that owns the search state, logs and writes checkpoints."""
    return jax.process_index() == 0


def describe(mesh: Mesh | None) -> str:
    """One line naming the mesh, for logs."""
    if mesh is None:
        return f"1 device ({jax.devices()[0].device_kind})"
    shape = ", ".join(f"{k}={v}" for k, v in mesh.shape.items())
    kind = mesh.devices.flat[0].device_kind
    return (
        f"{mesh.size} devices ({kind}), mesh {shape}, {jax.process_count()} process(es)"
    )


__all__ = [
    "BATCH",
    "POP",
    "describe",
    "initialize_distributed",
    "is_main_process",
    "mesh_size",
    "pad_rows",
    "population_mesh",
    "population_sharding",
    "replicated",
    "shard_population",
    "to_host",
]
