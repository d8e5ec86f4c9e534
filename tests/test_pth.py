"""converters.pth against PyTorch itself: both read formats, the writer, and the safety model."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters.pth import LEGACY_MAGIC_NUMBER, PthError, load_state_dict, save_state_dict

torch = pytest.importorskip("torch")


def _reference_state_dict() -> collections.OrderedDict:
    """A real module state_dict (with `_metadata`, num_batches_tracked) plus awkward tensors."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.InstanceNorm2d(4, affine=True)
    )
    net[1].num_batches_tracked += 7
    sd = net.state_dict()
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    sd["shared.base"] = base
    sd["shared.view"] = base[1:, ::2]  # non-contiguous view sharing base's storage
    sd["shared.transposed"] = base.t()
    sd["half"] = torch.randn(2, 3).half()
    sd["int32"] = torch.tensor([-5, 0, 2**31 - 1], dtype=torch.int32)
    sd["int64"] = torch.tensor([-(2**40), 3], dtype=torch.int64)
    sd["int16"] = torch.tensor([-3, 300], dtype=torch.int16)
    sd["int8"] = torch.tensor([-3, 100], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    return sd


def _torch_to_numpy(t):
    return t.detach().contiguous().numpy()


def _assert_matches(arrays: dict, sd) -> None:
    assert list(arrays) == list(sd)
    for key, tensor in sd.items():
        expected = _torch_to_numpy(tensor)
        got = arrays[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        assert got.flags.c_contiguous, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


@pytest.fixture(scope="module")
def sd():
    return _reference_state_dict()


# ------------------------------------------------------------------ reading torch's files


def test_reads_zip_format(tmp_path: Path, sd) -> None:
    path = tmp_path / "zip.pth"
    torch.save(sd, path)
    assert zipfile.is_zipfile(path)
    _assert_matches(load_state_dict(path), sd)


def test_reads_legacy_format(tmp_path: Path, sd) -> None:
    path = tmp_path / "legacy.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert pickle.loads(path.read_bytes()) == LEGACY_MAGIC_NUMBER  # first pickle of the series
    _assert_matches(load_state_dict(str(path)), sd)


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_parameters(tmp_path: Path, legacy: bool) -> None:
    lin = torch.nn.Linear(2, 3)
    sd = lin.state_dict(keep_vars=True)  # nn.Parameter values -> _rebuild_parameter
    path = tmp_path / "params.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    _assert_matches(load_state_dict(path), sd)


def test_reads_bfloat16(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    t = torch.randn(5).bfloat16()
    path = tmp_path / "bf16.pth"
    torch.save({"w": t}, path)
    got = load_state_dict(path)["w"]
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    assert np.array_equal(got.view(np.uint16), t.view(torch.int16).numpy().view(np.uint16))
    out = save_state_dict({"w": got}, tmp_path / "bf16_out.pth")
    back = torch.load(out, weights_only=True)["w"]
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


def test_reads_big_endian_zip(tmp_path: Path) -> None:
    arrays = {
        "f": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
        "i": np.array([1, -2, 3 << 40], dtype=np.int64),
    }
    little = save_state_dict(arrays, tmp_path / "little.pth")
    big = tmp_path / "big.pth"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif info.filename.endswith("/data/0"):
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            elif info.filename.endswith("/data/1"):
                data = np.frombuffer(data, "<i8").astype(">i8").tobytes()
            dst.writestr(info.filename, data)
    got = load_state_dict(big)
    from_torch = torch.load(big, weights_only=True)  # torch byteswaps too
    for key, value in arrays.items():
        assert got[key].dtype.isnative
        np.testing.assert_array_equal(got[key], value)
        np.testing.assert_array_equal(from_torch[key].numpy(), value)


# ------------------------------------------------------------------ writing


def test_save_loads_in_torch_weights_only(tmp_path: Path, sd) -> None:
    arrays = {k: _torch_to_numpy(v) for k, v in sd.items()}
    arrays["float64"] = np.arange(3, dtype=np.float64)
    arrays["fortran"] = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    arrays["big_endian_input"] = np.arange(3, dtype=">i4")
    path = save_state_dict(arrays, tmp_path / "out.pth")
    assert path == tmp_path / "out.pth"
    for kwargs in ({}, {"mmap": True}):
        back = torch.load(path, weights_only=True, **kwargs)
        assert isinstance(back, collections.OrderedDict)
        assert list(back) == list(arrays)
        for key, value in arrays.items():
            assert (
                back[key].dtype
                == torch.from_numpy(value.astype(value.dtype.newbyteorder("="))).dtype
            )
            assert tuple(back[key].shape) == value.shape, key
            np.testing.assert_array_equal(back[key].numpy(), value, err_msg=key)


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4, 2)).astype(np.float32),
        "f64": np.array([np.nan, -0.0, np.inf, 1e-310]),
        "f16": rng.standard_normal(5).astype(np.float16),
        "i64": np.array(-(2**62), dtype=np.int64),  # 0-d
        "i32": rng.integers(-(2**31), 2**31, 7, dtype=np.int32),
        "bool": np.array([[True], [False]]),
        "empty": np.zeros((2, 0), dtype=np.float32),
    }
    back = load_state_dict(save_state_dict(arrays, tmp_path / "rt.pth"))
    assert list(back) == list(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        assert back[key].tobytes() == value.tobytes(), key


def test_save_layout_matches_torch(tmp_path: Path) -> None:
    path = save_state_dict(
        {"a": np.ones(3, np.float32), "b": np.ones(1, np.int64)}, tmp_path / "x.pth"
    )
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert set(names) >= {"archive/data.pkl", "archive/data/0", "archive/data/1"}
        assert zf.read("archive/version") == b"3\n"
        assert zf.read("archive/byteorder") == b"little"
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
        # the pickle refers to torch only through GLOBAL opcodes for these names
        pkl = zf.read("archive/data.pkl")
        assert b"ccollections\nOrderedDict\n" in pkl
        assert b"ctorch._utils\n_rebuild_tensor_v2\n" in pkl
        assert b"ctorch\nFloatStorage\n" in pkl and b"ctorch\nLongStorage\n" in pkl


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keep.pth"
    save_state_dict({"a": np.zeros(2, np.float32)}, path)
    with pytest.raises(FileExistsError, match="keep.pth"):
        save_state_dict({"a": np.ones(2, np.float32)}, path)
    np.testing.assert_array_equal(load_state_dict(path)["a"], 0)
    save_state_dict({"a": np.ones(2, np.float32)}, path, overwrite=True)
    np.testing.assert_array_equal(load_state_dict(path)["a"], 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pth"]  # no temp files left


def test_save_rejects_unsupported_values(tmp_path: Path) -> None:
    with pytest.raises(PthError, match="dtype"):
        save_state_dict({"s": np.array(["x"])}, tmp_path / "bad.pth")
    with pytest.raises(PthError, match="not a string"):
        save_state_dict({1: np.zeros(1)}, tmp_path / "bad.pth")
    assert not (tmp_path / "bad.pth").exists()


# ------------------------------------------------------------------ safety


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # shaped like a state_dict, so the allowed OrderedDict global comes first
    return pickle.dumps(collections.OrderedDict(weight=Evil()), protocol=2)


def _legacy_header() -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
    return b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001, sys_info))


def test_evil_payload_is_live(tmp_path: Path) -> None:
    """Sanity check that the payload used below really runs code under plain pickle."""
    marker = tmp_path / "pwned"
    obj = pickle.loads(_evil_pickle(marker))
    obj["weight"].close()
    assert marker.exists()


@pytest.mark.parametrize("container", ["plain", "zip", "legacy", "legacy-header"])
def test_refuses_code_execution(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    payload = _evil_pickle(marker)
    path = tmp_path / "evil.pth"
    if container == "plain":
        path.write_bytes(payload)
    elif container == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("evil/data.pkl", payload)
            zf.writestr("evil/version", "3\n")
    elif container == "legacy":
        path.write_bytes(_legacy_header() + payload + pickle.dumps([], protocol=2))
    else:  # payload in the sys-info slot of the series
        head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001))
        path.write_bytes(head + payload)
    with pytest.raises(PthError, match="refusing to load global") as err:
        load_state_dict(path)
    assert "evil.pth" in str(err.value)
    assert "open" in str(err.value)
    assert not marker.exists()


def test_refuses_whole_model_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(PthError, match=r"model\.pth: refusing to load global 'torch\.nn\."):
        load_state_dict(path)


# ------------------------------------------------------------------ broken / wrong files


def _torch_file(tmp_path: Path, name: str, obj, legacy: bool = False) -> Path:
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _expect_error(path: Path, match: str | None = None) -> PthError:
    with pytest.raises(PthError, match=match) as err:
        load_state_dict(path)
    assert path.name in str(err.value)
    return err.value


def test_truncated_zip(tmp_path: Path, sd) -> None:
    path = _torch_file(tmp_path, "cut_zip.pth", sd)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_error(path, "truncated or corrupt zip")


@pytest.mark.parametrize("keep", [0.5, -3])
def test_truncated_legacy(tmp_path: Path, sd, keep: float) -> None:
    path = _torch_file(tmp_path, "cut_legacy.pth", sd, legacy=True)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)] if keep > 0 else raw[:keep])
    err = _expect_error(path)
    if keep < 0:
        assert "truncated" in str(err)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"noise{seed}.pth"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    _expect_error(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    _expect_error(path, "empty")


def test_bad_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "magic.pth"
    path.write_bytes(pickle.dumps({"weight": 1.0}, protocol=2))
    _expect_error(path, "magic number")


@pytest.mark.parametrize("legacy", [False, True])
def test_top_level_list(tmp_path: Path, legacy: bool) -> None:
    path = _torch_file(tmp_path, "list.pth", [torch.ones(2)], legacy)
    _expect_error(path, r"not a state_dict \(top-level object is list\)")


@pytest.mark.parametrize("legacy", [False, True])
def test_top_level_tensor(tmp_path: Path, legacy: bool) -> None:
    path = _torch_file(tmp_path, "tensor.pth", torch.ones(2), legacy)
    _expect_error(path, r"not a state_dict \(top-level object is a tensor\)")


def test_nested_dict(tmp_path: Path) -> None:
    path = _torch_file(tmp_path, "nested.pth", {"net": {"w": torch.ones(1)}})
    _expect_error(path, "'net' holds a dict")


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nowhere.pth", "no such file")


def _rewrite_zip(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def test_missing_data_pkl(tmp_path: Path) -> None:
    src = _torch_file(tmp_path, "src.pth", {"w": torch.ones(2)})
    dst = tmp_path / "nopkl.pth"
    _rewrite_zip(src, dst, lambda name, data: None if name.endswith("data.pkl") else data)
    _expect_error(dst, "no data.pkl")


def test_missing_storage_record(tmp_path: Path) -> None:
    src = _torch_file(tmp_path, "src.pth", {"w": torch.ones(2)})
    dst = tmp_path / "nostorage.pth"
    _rewrite_zip(src, dst, lambda name, data: None if name.endswith("data/0") else data)
    _expect_error(dst, "storage '0' is missing")


def test_short_storage_record(tmp_path: Path) -> None:
    src = _torch_file(tmp_path, "src.pth", {"w": torch.ones(4)})
    dst = tmp_path / "short.pth"
    _rewrite_zip(src, dst, lambda name, data: data[:5] if name.endswith("data/0") else data)
    _expect_error(dst, "holds 5 bytes, expected 16")


def test_tensor_past_end_of_storage(tmp_path: Path) -> None:
    """A pickle whose size/stride reach outside the storage is refused, not read out of bounds."""
    src = save_state_dict({"w": np.ones(4, np.float32)}, tmp_path / "src.pth")
    dst = tmp_path / "oob.pth"

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("data.pkl"):
            # size (4,) -> (200,): BININT1 4 inside the size tuple "(K\x04t"
            assert data.count(b"(K\x04t") == 1
            return data.replace(b"(K\x04t", b"(K\xc8t")
        return data

    _rewrite_zip(src, dst, edit)
    _expect_error(dst, "past the end of its storage")


def test_storage_key_missing_legacy(tmp_path: Path) -> None:
    path = _torch_file(tmp_path, "keys.pth", {"w": torch.ones(2)}, legacy=True)
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    for _ in range(4):  # magic, protocol version, sys info, the object
        for _ in pickletools.genops(stream):
            pass
    keys_start = stream.tell()
    for _ in pickletools.genops(stream):
        pass
    # replace the storage key list by an empty one: the tensor's storage is never found
    path.write_bytes(raw[:keys_start] + pickle.dumps([], protocol=2) + raw[stream.tell() :])
    _expect_error(path, "is missing")
