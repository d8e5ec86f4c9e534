"""The converter against PyTorch: reference networks with random weights, saved as `.pth`,
converted, and run on the same batch; the reverse export loaded by PyTorch with strict=True;
and clear errors for files that fit no architecture."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from converters import pth
from converters.tables import ArchitectureError
from jaxcycle import checkpoints
from jaxcycle.architecture import Architecture
from jaxcycle.weights import abstract_variables, convert_pth, export_pth, torch_to_flax

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

A = Architecture
CASES = [
    # ResNet generators: both presets, 1 and 3 channels, every norm and padding, odd sizes.
    (A("resnet", 3, 3, 8, "instance", n_blocks=9), (32, 32)),
    (A("resnet", 1, 1, 8, "instance", n_blocks=6), (33, 27)),
    (A("resnet", 3, 3, 8, "batch", n_blocks=6, use_dropout=True), (28, 36)),
    (A("resnet", 1, 3, 8, "batch", n_blocks=2, padding="zero"), (32, 32)),
    (A("resnet", 3, 1, 8, "none", n_blocks=2, padding="replicate", use_dropout=True), (24, 24)),
    # U-Net generators: unet_128 and unet_256.
    (A("unet", 3, 3, 8, "instance", num_downs=7), (128, 128)),
    (A("unet", 1, 1, 8, "batch", num_downs=8, use_dropout=True), (256, 256)),
    (A("unet", 3, 1, 8, "none", num_downs=5), (64, 32)),
    # PatchGAN discriminators, n_layers 1 to 4, and the pixel discriminator.
    (A("nlayer", 3, width=8, norm="instance", n_layers=1), (32, 32)),
    (A("nlayer", 1, width=8, norm="batch", n_layers=2), (35, 29)),
    (A("nlayer", 3, width=8, norm="instance", n_layers=3), (70, 70)),
    (A("nlayer", 1, width=8, norm="batch", n_layers=4), (64, 64)),
    (A("pixel", 3, width=8, norm="instance"), (17, 19)),
    (A("pixel", 1, width=8, norm="batch"), (16, 16)),
]


def _id(case):
    arch, (h, w) = case
    return f"{arch.kind}-{arch.norm}-{arch.input_nc}ch-{h}x{w}"


def _run_flax(arch, variables, x_nchw):
    y = arch.build().apply(variables, jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    return np.asarray(y).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("arch,size", CASES, ids=[_id(c) for c in CASES])
def test_converted_network_matches_pytorch(tmp_path, arch, size):
    x = np.random.default_rng(0).standard_normal((2, arch.input_nc, *size), dtype=np.float32)
    calibrate = torch.from_numpy(np.random.default_rng(1).standard_normal(x.shape, np.float32))
    model = ref.randomize(ref.build(arch), seed=len(arch.describe()), calibrate=calibrate)
    src = tmp_path / "net.pth"
    torch.save(model.state_dict(), src)

    padding = arch.padding if arch.padding == "replicate" else None  # not in the tensors
    dst, inferred = convert_pth(src, tmp_path / "params", padding=padding)
    # Dropout has no tensors in a U-Net, so it cannot be read back from one.
    assert dataclasses.replace(inferred, use_dropout=arch.use_dropout) == arch
    variables, loaded_arch, metadata = checkpoints.load_params(dst)
    assert loaded_arch == inferred
    assert metadata["source"]["sha256"] and metadata["architecture"]["kind"] == arch.kind

    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = _run_flax(inferred, variables, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "arch",
    [
        A("resnet", 3, 3, 8, "batch", n_blocks=3),
        A("unet", 1, 3, 8, "instance", num_downs=5),
        A("nlayer", 3, width=8, norm="batch", n_layers=2),
    ],
)
def test_flax_torch_flax_round_trip_is_bit_exact(tmp_path, arch):
    rng = np.random.default_rng(7)
    variables = jax.tree.map(
        lambda s: rng.uniform(0.1, 2.0, s.shape).astype(s.dtype), abstract_variables(arch)
    )
    checkpoints.save_params(tmp_path / "a", variables, arch)

    export_pth(tmp_path / "a", tmp_path / "a.pth")
    model = ref.build(arch)
    model.load_state_dict(torch.load(tmp_path / "a.pth", weights_only=True), strict=True)
    torch.save(model.state_dict(), tmp_path / "b.pth")
    convert_pth(tmp_path / "b.pth", tmp_path / "b")
    back, _, _ = checkpoints.load_params(tmp_path / "b")

    flat_a = jax.tree.leaves_with_path(variables)
    flat_b = jax.tree.leaves_with_path(back)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, a), (_, b) in zip(flat_a, flat_b, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b), path


def test_published_format_resnet9_ngf64_legacy_file(tmp_path):
    """The published generators' exact form: ResNet-9, ngf 64, instance norm, saved in the
    legacy (pre-1.6) format with InstanceNorm running-stat keys, as PyTorch 0.4 wrote them."""
    arch = A("resnet", 3, 3, 64, "instance", n_blocks=9)
    model = ref.randomize(ref.build(arch), seed=5)
    sd = model.state_dict()
    for i in (2, 5, 8, 20, 23):  # the legacy InstanceNorm2d(track_running_stats) keys
        sd[f"model.{i}.running_mean"] = torch.zeros(64)
        sd[f"model.{i}.running_var"] = torch.ones(64)
    sd["model.10.conv_block.2.running_mean"] = torch.zeros(256)
    src = tmp_path / "horse2zebra.pth"
    torch.save(sd, src, _use_new_zipfile_serialization=False)
    assert 45e6 < src.stat().st_size < 46e6

    dst, inferred = convert_pth(src, tmp_path / "params")
    assert inferred == arch
    variables, _, _ = checkpoints.load_params(dst)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_flax(arch, variables, x), expected, atol=1e-5, rtol=0)


def test_module_prefix_is_accepted():
    arch = A("pixel", 3, width=4, norm="instance")
    sd = {f"module.{k}": v.numpy() for k, v in ref.build(arch).state_dict().items()}
    assert torch_to_flax(sd, source="dp.pth")[0] == arch


def _resnet_sd():
    return {
        k: v.numpy() for k, v in ref.build(A("resnet", 3, 3, 4, n_blocks=1)).state_dict().items()
    }


def test_unknown_and_missing_tensors_are_named():
    sd = _resnet_sd()
    sd["model.99.weight"] = np.zeros(3, np.float32)
    del sd["model.10.conv_block.1.bias"]
    with pytest.raises(ArchitectureError) as e:
        torch_to_flax(sd, source="bad.pth")
    message = str(e.value)
    assert "bad.pth" in message
    assert "missing tensors: model.10.conv_block.1.bias" in message
    assert "unknown tensors: model.99.weight" in message


def test_misshapen_tensor_is_named():
    sd = _resnet_sd()
    sd["model.4.weight"] = np.zeros((8, 4, 5, 5), np.float32)
    with pytest.raises(ArchitectureError, match=r"shapes that do not fit: model\.4\.weight"):
        torch_to_flax(sd, source="bad.pth")


def test_names_of_no_architecture_are_refused(tmp_path):
    src = tmp_path / "classifier.pth"
    pth.save_state_dict({"fc.weight": np.zeros((2, 3), np.float32)}, src)
    with pytest.raises(ArchitectureError, match=r"classifier\.pth: the names fit no reference"):
        convert_pth(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_convert_never_overwrites(tmp_path):
    src = tmp_path / "d.pth"
    torch.save(ref.build(A("pixel", 3, width=4)).state_dict(), src)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_pth(src, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_convert_runs_without_torch(tmp_path):
    """`jaxcycle convert` (both ways) in a process where importing torch fails: the converter
    needs no PyTorch, and the params it writes give the PyTorch model's output."""
    import subprocess
    import sys
    import textwrap

    arch = A("resnet", 3, 3, 8, "instance", n_blocks=2)
    model = ref.randomize(ref.build(arch), seed=7)
    src = tmp_path / "net.pth"
    torch.save(model.state_dict(), src)
    script = textwrap.dedent(
        f"""
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        from jaxcycle.cli import main

        assert main(["convert", {str(src)!r}, {str(tmp_path / "params")!r}]) == 0
        assert main(["convert", "--to-torch", {str(tmp_path / "params")!r},
                     {str(tmp_path / "back.pth")!r}]) == 0
        assert "torch" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16), dtype=np.float32)
    variables, _, _ = checkpoints.load_params(tmp_path / "params")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_flax(arch, variables, x), expected, atol=1e-5)
    back = torch.load(tmp_path / "back.pth")
    for name, tensor in model.state_dict().items():
        if name in back:
            assert torch.equal(back[name], tensor), name
