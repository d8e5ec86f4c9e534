"""The benchmark runner: its work counts against hand counts, its memory measurement against
known allocations, and a small end-to-end run through `jaxcycle bench` (output structure
only; speed is never asserted)."""

import json
import sys

import numpy as np
import pytest

from benchmarks import child
from benchmarks.flops import forward_macs, train_iteration_macs
from benchmarks.options import build_parser
from jaxcycle.architecture import Architecture
from jaxcycle.cli import main

pytest.importorskip("torch")


def test_reference_networks_forward_macs_match_the_published_counts():
    """ResNet-9 (ngf 64) 49.55 GMAC and the 70x70 PatchGAN 3.15 GMAC at 256x256."""
    assert forward_macs(Architecture.preset("resnet_9blocks"), 256, 256) / 1e9 == pytest.approx(
        49.55, abs=0.005
    )
    assert forward_macs(Architecture.preset("basic"), 256, 256) / 1e9 == pytest.approx(
        3.15, abs=0.005
    )


def test_forward_macs_by_hand_for_a_small_generator():
    """c7s1-8, d16, d32, one R32, u16, u8, c7s1-3 at 32x32, layer by layer."""
    ngf, h = 8, 32
    by_hand = (
        h * h * ngf * 49 * 3  # c7s1-8
        + (h // 2) ** 2 * 2 * ngf * 9 * ngf  # d16
        + (h // 4) ** 2 * 4 * ngf * 9 * 2 * ngf  # d32
        + 2 * (h // 4) ** 2 * 4 * ngf * 9 * 4 * ngf  # R32: two 3x3 convolutions
        + (h // 4) ** 2 * 4 * ngf * 9 * 2 * ngf  # u16, counted on its input
        + (h // 2) ** 2 * 2 * ngf * 9 * ngf  # u8
        + h * h * 3 * 49 * ngf  # c7s1-3
    )
    arch = Architecture("resnet", 3, 3, ngf, "instance", n_blocks=1)
    assert forward_macs(arch, h, h) == by_hand
    with_adapter = Architecture(
        "resnet", 3, 3, ngf, "instance", n_blocks=1, adapter_widths=(64, 32)
    )
    fc = (h // 4) ** 2 * (32 * 64 + 64 * 32)  # two per-pixel dense layers on the bottleneck
    assert forward_macs(with_adapter, h, h) == by_hand + fc


def test_train_iteration_counts_six_passes_of_each_network_and_three_times_forward():
    gen, disc = Architecture.preset("resnet_9blocks"), Architecture.preset("basic")
    work = train_iteration_macs(gen, disc, 256, 256)
    assert work["forward"] == 6 * work["generator_forward"] + 6 * work["discriminator_forward"]
    assert work["train"] == 3 * work["forward"]
    assert 2 * work["train"] / 1e12 == pytest.approx(1.9, abs=0.01)  # about 1.9 TFLOP
    no_identity = train_iteration_macs(gen, disc, 256, 256, identity_loss=False)
    assert no_identity["generator_passes"] == 4


def test_bench_command_writes_both_frameworks_side_by_side(tmp_path, capsys):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["bench", "--sizes", "32", "--batches", "2", "--ngf", "8", "--ndf", "8"]
    argv += ["--n-blocks", "1", "--repeats", "1", "--rounds", "2", "--warmup", "0"]
    argv += ["--pool-size", "2"]
    argv += ["--torch-variants", "eager", "channels-last"]
    argv += ["--scaling", "--cpu-devices", "2", "--json", str(out), "--markdown", str(table)]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["machine"]["backend"] == "cpu"
    (train,) = results["train"]
    assert (train["size"], train["batch"], train["dtype"]) == (32, 2, "float32")
    # Two rounds of one timed call each, pooled: the rate is of the median call.
    times = train["jaxcycle"]["times_s"]
    assert train["jaxcycle"]["compile_s"] > 0 and len(times) == 2
    assert train["jaxcycle"]["pairs_per_s"] == pytest.approx(2 / np.median(times))
    eager_times = train["torch"]["eager"]["times_s"]
    each_round = [e / t for t, e in zip(times, eager_times, strict=True)]
    assert train["round_ratios"] == pytest.approx(each_round)
    assert train["jaxcycle"]["xla_bytes"] > 0
    # Each side (and each PyTorch variant) in its own process: a peak above the baseline
    # after the imports, and above the buffers XLA assigned to the step.
    for side in (train["jaxcycle"], train["torch"]["eager"], train["torch"]["channels-last"]):
        assert side["peak_rss_bytes"] > side["baseline_rss_bytes"] > 0
    assert train["jaxcycle"]["peak_rss_bytes"] > train["jaxcycle"]["xla_bytes"]
    # The loader as `jaxcycle train` builds it at this size: resize to 36, crop 32.
    (loader,) = results["loader"]
    assert (loader["size"], loader["batch"], loader["load_size"]) == (32, 2, 36)
    assert loader["workers"] == 2 and loader["prefetch"] == 4  # configs/cyclegan.py's
    assert train["loader_pairs_per_s"] == loader["pairs_per_s"] > 0
    torch_rate = train["torch"]["eager"]["pairs_per_s"]
    assert train["ratio"] == pytest.approx(train["jaxcycle"]["pairs_per_s"] / torch_rate)
    work = results["work"]["32"]
    assert train["jaxcycle"]["tflops"] == pytest.approx(
        2 * work["train"] * train["jaxcycle"]["pairs_per_s"] / 1e12
    )
    (inference,) = results["inference"]
    assert inference["ratio"] == pytest.approx(
        inference["jaxcycle"]["images_per_s"] / inference["torch"]["eager"]["images_per_s"]
    )
    assert [r["devices"] for r in results["scaling"]] == [1, 2]
    assert [r["global_batch"] for r in results["scaling"]] == [1, 2]
    assert results["scaling"][0]["efficiency"] == pytest.approx(1.0)
    markdown = table.read_text()
    assert "| 32 | 2 | float32 |" in markdown and "| 2 | 2 |" in markdown
    head = next(line for line in markdown.splitlines() if line.startswith("| size | batch"))
    for column in ("loader", "XLA MiB", "jaxcycle RSS MiB", "PyTorch RSS MiB"):
        assert f"| {column} |" in head
    row = next(line for line in markdown.splitlines() if line.startswith("| 32 | 2 | float32 |"))
    assert len(row.split("|")) == len(head.split("|"))
    mib = train["jaxcycle"]["peak_rss_bytes"] / 2**20
    grown = (train["jaxcycle"]["peak_rss_bytes"] - train["jaxcycle"]["baseline_rss_bytes"]) / 2**20
    assert f"| {mib:.0f} (+{grown:.0f}) |" in row
    assert "| 32 | 2 | float32 | channels-last |" in markdown  # the variants' table
    low, high = sorted(train["round_ratios"])
    assert f"| {train['ratio']:.2f} ({low:.2f}-{high:.2f}) |" in row
    assert markdown.strip() in capsys.readouterr().out


def test_child_reports_the_peak_of_a_known_allocation():
    """A child that allocates 256 MiB on purpose peaks at least that far above its baseline."""
    size = 256 * 2**20
    result = child.measure({"side": "ballast", "bytes": size})["train"]
    assert result["peak_rss_bytes"] > size
    assert result["peak_rss_bytes"] - result["baseline_rss_bytes"] >= 0.95 * size


@pytest.mark.skipif(sys.platform != "linux", reason="the exec behaviour checked is Linux's")
def test_child_peak_is_its_own_not_its_parents():
    """A small child of a large parent reports its own peak (ru_maxrss would carry the
    parent's over exec on Linux)."""
    parent = np.ones(512 * 2**20 // 8)  # touched: the parent's resident memory
    assert child.peak_rss_bytes() > parent.nbytes
    result = child.measure({"side": "ballast", "bytes": 8 * 2**20})["train"]
    assert result["peak_rss_bytes"] < parent.nbytes
    del parent


def test_loader_rate_can_be_skipped():
    assert build_parser().parse_args([]).loader
    assert not build_parser().parse_args(["--no-loader"]).loader


def test_bench_refuses_an_unknown_torch_variant(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--torch-variants", "jit"])
    assert "invalid choice: 'jit'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--rounds", "--repeats"])
def test_bench_refuses_fewer_than_one_round_or_call(flag, capsys):
    with pytest.raises(SystemExit):
        main(["bench", flag, "0"])
    assert f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("size", [64, 128])
def test_layer_benchmark_times_the_same_layers_in_both_frameworks(size):
    """Each layer of `benchmarks.layers` has the same output shape in jaxcycle and PyTorch,
    at every image size (the discriminator's last layer reads C512's shrunk output)."""
    from benchmarks import layers

    for layer in layers.layers():
        ours, theirs = layers.output_shapes(layer, size, 2)
        assert ours == theirs, layer.name


def test_layer_benchmark_runs_end_to_end(capsys):
    from benchmarks import layers

    assert layers.main(["--size", "32", "--repeats", "1", "--layers", "R256", "D:out"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["R256", "D:out"]
    for row in rows:
        ours, theirs, ratio = map(float, row.split()[1:])
        assert ours > 0 and theirs > 0 and ratio > 0
