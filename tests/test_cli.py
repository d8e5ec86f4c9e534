"""End to end through the command line: a reference .pth converted, then images translated,
against the PyTorch model's own output."""

import numpy as np
import pytest
from PIL import Image

from jaxcycle.architecture import Architecture
from jaxcycle.cli import main
from jaxcycle.data.images import read_image

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    """A 3-channel ResNet generator with random weights, as a .pth and converted."""
    root = tmp_path_factory.mktemp("gen")
    arch = Architecture("resnet", 3, 3, 8, "instance", n_blocks=2)
    model = ref.randomize(ref.build(arch), seed=3)
    torch.save(model.state_dict(), root / "g.pth")
    assert main(["convert", str(root / "g.pth"), str(root / "params")]) == 0
    return model, root


def _torch_translate(model, rgb_01):
    """The reference pipeline: RGB in [0, 1] -> [-1, 1] -> generator -> [0, 1]."""
    x = torch.from_numpy(rgb_01.transpose(2, 0, 1)[None].astype(np.float32)) * 2 - 1
    with torch.no_grad():
        y = model(x)[0].numpy().transpose(1, 2, 0)
    return (y + 1) / 2


def test_convert_then_translate_matches_pytorch(generator, tmp_path):
    model, root = generator
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)  # 36x44: not a multiple of 4
    grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (32, 40), dtype=np.uint16)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(rgb).save(inputs / "rgb.png")
    Image.fromarray(grey).save(inputs / "grey.png")
    Image.fromarray(grey16).save(inputs / "grey16.png")

    out = tmp_path / "out"
    assert (
        main(
            [
                "translate",
                str(inputs),
                "--checkpoint",
                str(root / "params"),
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )

    got = np.asarray(Image.open(out / "rgb.png")).astype(float)
    assert got.shape == rgb.shape
    # The reference network sees the whole image; ours pads 36x44 to multiples of 4 = itself.
    expected = _torch_translate(model, rgb / 255.0) * 255
    assert np.abs(got - expected).max() <= 1.0

    got = np.asarray(Image.open(out / "grey.png")).astype(float)
    expected = _torch_translate(model, np.repeat(grey[..., None], 3, -1) / 255.0).mean(-1) * 255
    assert got.shape == grey.shape and np.abs(got - expected).max() <= 1.0

    out16 = read_image(out / "grey16.png")
    assert out16.bits == 16 and out16.grey and out16.pixels.shape == (32, 40, 1)
    expected = _torch_translate(model, np.repeat(grey16[..., None], 3, -1) / 65535.0).mean(-1)
    got = (out16.pixels[..., 0] + 1) / 2
    assert np.abs(got - expected).max() <= 1.0 / 65535 + 1e-6


def test_translate_refuses_to_overwrite(generator, tmp_path, capsys):
    _, root = generator
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"keep")
    args = [
        "translate",
        str(tmp_path / "a.png"),
        "--checkpoint",
        str(root / "params"),
        "--output",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert main(args) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "a.png").read_bytes() == b"keep"


def test_files_after_options_are_files_too(generator, tmp_path, capsys):
    """`translate a.png --checkpoint .pth --output out b.png`: both files are translated (the
    .pth file itself is the generator), equal to translating them in one list; an unknown
    option is still an error."""
    model, root = generator
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / f"{name}.png"
        )
    a, b, pth = str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(root / "g.pth")
    split = ["translate", a, "--checkpoint", pth, "--output", str(tmp_path / "o1"), b]
    together = ["translate", a, b, "--checkpoint", pth, "--output", str(tmp_path / "o2")]
    assert main([*split, "--quiet"]) == 0 and main([*together, "--quiet"]) == 0
    for name in ("a.png", "b.png"):
        got = np.asarray(Image.open(tmp_path / "o1" / name))
        np.testing.assert_array_equal(got, np.asarray(Image.open(tmp_path / "o2" / name)))
        rgb = np.asarray(Image.open(tmp_path / name)) / 255.0
        assert np.abs(got - _torch_translate(model, rgb) * 255).max() <= 1.0
    with pytest.raises(SystemExit):
        main([*split, "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_translate_names_a_corrupt_image(generator, tmp_path, capsys):
    _, root = generator
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert (
        main(
            [
                "translate",
                str(tmp_path / "broken.png"),
                "--checkpoint",
                str(root / "params"),
                "--output",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "broken.png" in capsys.readouterr().err


def test_convert_to_torch_loads_strictly(generator, tmp_path):
    model, root = generator
    assert main(["convert", "--to-torch", str(root / "params"), str(tmp_path / "g.pth")]) == 0
    again = ref.build(Architecture("resnet", 3, 3, 8, "instance", n_blocks=2))
    again.load_state_dict(torch.load(tmp_path / "g.pth", weights_only=True), strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_convert_errors_name_the_file(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "o")]) == 1
    assert "missing.pth" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    assert main(["convert", str(tmp_path / "junk.pth"), str(tmp_path / "o")]) == 1
    assert "junk.pth" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_pretrained_list_shows_all_eighteen(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXCYCLE_CACHE", str(tmp_path))
    assert main(["pretrained", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("iphone2dslr_flower", "style_ukiyoe", "cityscapes_photo2label", "map2sat"):
        assert name in out
    assert len([line for line in out.splitlines() if line.endswith(" no")]) == 18
