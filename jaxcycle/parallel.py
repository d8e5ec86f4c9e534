"""Data parallelism over every device of every host: the mesh, shardings, batch placement and
multi-host start-up.

Parameters, optimizer states and pools are replicated; batches are split along the batch
axis over the mesh's 'data' axis. The losses are means over the global batch, so XLA's
all-reduce of their gradients averages the per-device gradients (parameters are never
averaged), and the result equals one device running the whole batch.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-host run (`jax.distributed.initialize`) when one is configured.

    Arguments left out come from the environment (JAXCYCLE_COORDINATOR, JAXCYCLE_NUM_PROCESSES,
    JAXCYCLE_PROCESS_ID) or, on TPU pods and SLURM/Open MPI clusters, from JAX's own
    detection. Without any of them this is a single-process run and nothing happens.
    """
    coordinator_address = coordinator_address or os.environ.get("JAXCYCLE_COORDINATOR")
    if num_processes is None and "JAXCYCLE_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAXCYCLE_NUM_PROCESSES"])
    if process_id is None and "JAXCYCLE_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAXCYCLE_PROCESS_ID"])
    if coordinator_address is None and num_processes is None:
        return
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of state: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding of batches: split along the leading (batch) axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh) -> int:
    """The per-process batch; the global batch must split evenly over devices and hosts."""
    devices = mesh.devices.size
    if global_batch % devices:
        raise ValueError(
            f"batch size {global_batch} does not split over {devices} devices; "
            f"use a multiple of {devices}"
        )
    return global_batch // jax.process_count()


def place_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's part of the global batch -> global arrays sharded over the mesh."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
