"""Data parallelism gives the single-device result: over 8 simulated CPU devices, and over two
processes joined by jax.distributed on 127.0.0.1. Each run is a subprocess (tests/
parallel_worker.py), since the device count must be fixed before JAX starts."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("parallel_worker.py")


def _run(out, *args, timeout=600):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(procs, timeout=600):
    for p in procs:
        output, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, output[-3000:]


def _assert_same(a_path, b_path, devices_a, devices_b):
    a, b = np.load(a_path), np.load(b_path)
    assert int(a["__devices__"]) == devices_a and int(b["__devices__"]) == devices_b
    assert sorted(a.files) == sorted(b.files)
    for name in set(a.files) - {"__devices__"}:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=0, err_msg=name)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "params.npz"
    _wait([_run(out, "--devices", 8, "--use-devices", 1)])
    return out


def test_eight_devices_match_one(single_device, tmp_path):
    out = tmp_path / "params.npz"
    _wait([_run(out, "--devices", 8)])
    _assert_same(single_device, out, 1, 8)


def test_two_processes_match_one(single_device, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "params.npz"
    procs = [
        _run(out, "--devices", 2, "--process-id", i, "--num-processes", 2, "--port", port)
        for i in range(2)
    ]
    _wait(procs)
    _assert_same(single_device, out, 1, 4)
