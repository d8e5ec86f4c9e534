"""Read and write PyTorch ``.pth`` state_dict files without PyTorch and without running their code.

Two on-disk formats exist and both are read:

* **Zip format** (``torch.save`` default since PyTorch 1.6). A zip archive whose members all
  live under one folder (``<archive>/``; its name varies, so ``data.pkl`` is found by suffix):

  - ``<archive>/data.pkl``: the pickled object. Every tensor is pickled as a call to
    ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    backward_hooks[, metadata])`` and every storage as a *persistent id*
    ``('storage', torch.<T>Storage, key, location, numel)``;
  - ``<archive>/data/<key>``: the raw bytes of each storage;
  - ``<archive>/byteorder``: ``little`` or ``big`` (absent in old files: little);
  - ``<archive>/version`` (``3``) and some bookkeeping records that are not needed here.

* **Legacy format** (PyTorch <= 1.5, e.g. the published CycleGAN generators saved by PyTorch
  0.3/0.4, or ``torch.save(..., _use_new_zipfile_serialization=False)``). Several pickles one
  after the other in a single file: the magic number ``0x1950a86a20f9469cfc6c``, the protocol
  version ``1001``, a dict of system information, the object itself (whose storages are
  persistent ids ``('storage', torch.<T>Storage, root_key, location, numel, view_metadata)``,
  tensors rebuilt by ``_rebuild_tensor_v2`` or, in 0.3, ``_rebuild_tensor``), and a list of
  storage keys. Then, for every key in that order, a little-endian int64 element count and
  the storage's raw little-endian bytes.

Safety model: a pickle can name any importable callable and call it, so loading an untrusted
``.pth`` with :mod:`pickle` runs arbitrary code. Here the pickles are read by a
:class:`pickle.Unpickler` whose ``find_class`` resolves only the handful of globals a
state_dict needs (``collections.OrderedDict``, the tensor-rebuild functions and the
``torch.*Storage`` types), each mapped to a small local stand-in defined in this module;
everything else raises :class:`PthError` before anything is called. The stand-ins only record
their arguments: storages are resolved lazily from the file's bytes after unpickling, and
tensors are rebuilt with numpy from (storage, dtype, offset, size, stride) after bounds
checks. ``torch`` is never imported.

Writing produces the zip format, loadable by ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import pickletools
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PthError", "load_state_dict", "save_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# storage type name -> (numpy dtype name, element size in bytes)
_STORAGE_TYPES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("float32", 4),
    "DoubleStorage": ("float64", 8),
    "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
    "ComplexFloatStorage": ("complex64", 8),
    "ComplexDoubleStorage": ("complex128", 16),
}
_DTYPE_TO_STORAGE = {dtype: name for name, (dtype, _) in _STORAGE_TYPES.items()}

_ALIGNMENT = 64  # torch's writer aligns the data of every zip record to 64 bytes
_ARCHIVE_NAME = "archive"


class PthError(ValueError):
    """A ``.pth`` file could not be read or written (corrupt, unsupported or unsafe)."""


# --------------------------------------------------------------------------------------------
# Local stand-ins for the few torch globals a state_dict pickle refers to.
# --------------------------------------------------------------------------------------------


class _StorageType:
    """Stand-in for a ``torch.<T>Storage`` class: only knows its element type."""

    __slots__ = ("name", "dtype_name", "itemsize")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype_name, self.itemsize = _STORAGE_TYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _StorageRef:
    """A storage named by a persistent id; its bytes are looked up after unpickling."""

    __slots__ = ("stype", "key", "numel", "view")

    def __init__(
        self, stype: _StorageType, key: str, numel: int, view: tuple[int, int] | None
    ) -> None:
        self.stype = stype
        self.key = key
        self.numel = numel  # elements of the root storage
        self.view = view  # legacy storage view: (element offset, element count) in the root


class _TensorRef:
    """A tensor as recorded by the pickle: storage reference plus geometry."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(
        self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise PthError(f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor`` (PyTorch 0.3)."""
    if not isinstance(storage, _StorageRef):
        raise PthError(f"tensor storage must be a storage reference, got {type(storage).__name__}")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
        raise PthError(f"tensor storage offset must be an int, got {storage_offset!r}")
    size_t = _int_tuple(size, "size")
    stride_t = _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise PthError(f"tensor size {size_t} and stride {stride_t} differ in length")
    return _TensorRef(storage, storage_offset, size_t, stride_t)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``; requires_grad/hooks/metadata dropped."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is just its tensor."""
    if not isinstance(data, _TensorRef):
        raise PthError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _name in _STORAGE_TYPES:
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name)
    # pre-1.6 files saved from GPU tensors name torch.cuda.<T>Storage; the bytes are the same
    _ALLOWED_GLOBALS[("torch.cuda", _name)] = _ALLOWED_GLOBALS[("torch", _name)]
del _name


def _ascii(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_ALLOWED_GLOBALS` and records storage references."""

    def __init__(self, data: io.BytesIO, filename: str, legacy: bool) -> None:
        super().__init__(data, encoding="utf-8")
        self.stream = data
        self._filename = filename
        self._legacy = legacy
        self.storages: dict[str, _StorageType] = {}  # key -> type, in order of first use

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise PthError(
                f"{self._filename}: refusing to load global '{module}.{name}' "
                "(a .pth may only hold tensors and plain containers)"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        expected = 6 if self._legacy else 5
        if not isinstance(pid, tuple) or len(pid) != expected or _ascii(pid[0]) != "storage":
            raise PthError(f"{self._filename}: unsupported persistent id {pid!r}")
        stype, key, _location, numel = pid[1:5]
        key = _ascii(key)
        if not isinstance(stype, _StorageType):
            raise PthError(f"{self._filename}: persistent id names no storage type: {pid!r}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise PthError(f"{self._filename}: malformed storage persistent id {pid!r}")
        known = self.storages.setdefault(key, stype)
        if known is not stype:
            raise PthError(
                f"{self._filename}: storage {key!r} is used both as {known!r} and {stype!r}"
            )
        view = None
        if self._legacy and pid[5] is not None:
            meta = pid[5]
            if (
                not isinstance(meta, tuple)
                or len(meta) != 3
                or not all(isinstance(v, int) and v >= 0 for v in meta[1:])
            ):
                raise PthError(f"{self._filename}: malformed storage view {meta!r}")
            view = (meta[1], meta[2])
            if view[0] + view[1] > numel:
                raise PthError(f"{self._filename}: storage view {meta!r} exceeds its storage")
        return _StorageRef(stype, key, numel, view)


def _unpickle(unpickler: _RestrictedUnpickler, filename: str, what: str) -> Any:
    """Run ``unpickler`` on the next pickle of its stream, turning every failure into PthError.

    The pickle is first walked with :func:`pickletools.genops` (which only parses, and reads
    length-prefixed data without pre-allocating it) to reject malformed input and the
    protocol-5 buffer opcodes, which a ``.pth`` never needs and whose huge declared sizes
    the C unpickler would try to allocate up front.
    """
    stream = unpickler.stream
    start = stream.tell()
    try:
        for opcode, _, _ in pickletools.genops(stream):
            if opcode.proto >= 5:
                raise PthError(f"{filename}: {what} uses pickle opcode {opcode.name}")
        stream.seek(start)
        return unpickler.load()
    except PthError as e:
        if str(e).startswith(f"{filename}:"):
            raise
        raise PthError(f"{filename}: {e}") from None
    except Exception as e:  # any other failure means the bytes are not a valid pickle
        raise PthError(f"{filename}: could not read {what} ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------------------------
# Rebuilding arrays
# --------------------------------------------------------------------------------------------


def _numpy_dtype(stype: _StorageType, filename: str) -> np.dtype:
    if stype.dtype_name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise PthError(
                f"{filename}: holds bfloat16 tensors; install the 'ml_dtypes' package to read them"
            ) from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(stype.dtype_name)


def _storage_array(
    raw: bytes | memoryview, stype: _StorageType, numel: int, big_endian: bool, filename: str
) -> np.ndarray:
    """1-D native-order array over the first ``numel`` elements of ``raw``."""
    dtype = _numpy_dtype(stype, filename)
    nbytes = numel * stype.itemsize
    buf = memoryview(raw)[:nbytes]
    if dtype.name == "bfloat16":
        if big_endian:
            return np.frombuffer(buf, dtype=">u2").astype("<u2").view(dtype)
        return np.frombuffer(buf, dtype="<u2").view(dtype)
    order = ">" if big_endian else "<"
    arr = np.frombuffer(buf, dtype=dtype.newbyteorder(order))
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _materialize(
    ref: _TensorRef, storages: Mapping[str, np.ndarray], filename: str, name: str
) -> np.ndarray:
    root = storages[ref.storage.key]
    storage = root
    if ref.storage.view is not None:
        start, count = ref.storage.view
        storage = root[start : start + count]
    if any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise PthError(f"{filename}: tensor {name!r} has negative size, stride or offset")
    if 0 in ref.size:
        return np.empty(ref.size, dtype=storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= storage.shape[0]:
        raise PthError(
            f"{filename}: tensor {name!r} (size {ref.size}, stride {ref.stride}, offset "
            f"{ref.offset}) reaches past the end of its storage of {storage.shape[0]} elements"
        )
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :],
        shape=ref.size,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    return np.array(view, copy=True, order="C")


def _check_state_dict(obj: Any, filename: str) -> dict[str, _TensorRef]:
    if isinstance(obj, _TensorRef):
        raise PthError(f"{filename}: not a state_dict (top-level object is a tensor)")
    if not isinstance(obj, dict):
        raise PthError(f"{filename}: not a state_dict (top-level object is {type(obj).__name__})")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise PthError(f"{filename}: state_dict key {key!r} is not a string")
        if not isinstance(value, _TensorRef):
            kind = "storage" if isinstance(value, _StorageRef) else type(value).__name__
            raise PthError(
                f"{filename}: state_dict entry {key!r} holds a {kind}, not a tensor"
                " (nested or non-tensor values are not supported)"
            )
    return obj


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _load_zip(raw: bytes, filename: str) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except Exception as e:  # zipfile raises BadZipFile, NotImplementedError, OSError, ...
        raise PthError(f"{filename}: truncated or corrupt zip archive ({e})") from e
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise PthError(f"{filename}: zip archive has no data.pkl (not a torch.save file)")
        pkl_name = min(pkl, key=lambda n: (n.count("/"), n))
        prefix = pkl_name[: -len("data.pkl")]

        def read(member: str) -> bytes:
            try:
                return zf.read(member)
            except Exception as e:  # bad CRC, bad header, unsupported compression, ...
                raise PthError(f"{filename}: cannot read {member!r} from the archive ({e})") from e

        big_endian = False
        if prefix + "byteorder" in names:
            order = read(prefix + "byteorder").strip()
            if order not in (b"little", b"big"):
                raise PthError(f"{filename}: unknown byte order {order!r}")
            big_endian = order == b"big"

        unpickler = _RestrictedUnpickler(io.BytesIO(read(pkl_name)), filename, legacy=False)
        obj = _unpickle(unpickler, filename, "data.pkl")
        state = _check_state_dict(obj, filename)

        storages: dict[str, np.ndarray] = {}
        numels: dict[str, int] = {}
        for ref in state.values():
            numels[ref.storage.key] = max(numels.get(ref.storage.key, 0), ref.storage.numel)
        for key, stype in unpickler.storages.items():
            if key not in numels:
                continue
            member = f"{prefix}data/{key}"
            if member not in names:
                raise PthError(f"{filename}: storage {key!r} is missing ({member} not in archive)")
            data = read(member)
            need = numels[key] * stype.itemsize
            if len(data) < need:
                raise PthError(
                    f"{filename}: storage {key!r} holds {len(data)} bytes, expected {need}"
                )
            storages[key] = _storage_array(data, stype, numels[key], big_endian, filename)
        return {k: _materialize(ref, storages, filename, k) for k, ref in state.items()}


def _load_legacy(raw: bytes, filename: str) -> dict[str, np.ndarray]:
    stream = io.BytesIO(raw)

    def header(what: str) -> Any:
        return _unpickle(_RestrictedUnpickler(stream, filename, legacy=True), filename, what)

    try:
        magic = header("the magic number")
    except PthError as e:
        if "refusing" in str(e):
            raise
        raise PthError(
            f"{filename}: not a PyTorch .pth file (neither a zip archive nor a pickle series;"
            f" {str(e).removeprefix(filename + ': ')})"
        ) from e.__cause__
    if not isinstance(magic, int) or magic != LEGACY_MAGIC_NUMBER:
        raise PthError(f"{filename}: bad magic number; not a PyTorch .pth file (or corrupt)")
    version = header("the protocol version")
    if version != LEGACY_PROTOCOL_VERSION:
        raise PthError(f"{filename}: unsupported legacy protocol version {version!r}")
    header("the system info")
    unpickler = _RestrictedUnpickler(stream, filename, legacy=True)
    obj = _unpickle(unpickler, filename, "the pickled object")
    state = _check_state_dict(obj, filename)
    keys = header("the storage key list")
    if not isinstance(keys, list) or not all(isinstance(_ascii(k), str) for k in keys):
        raise PthError(f"{filename}: malformed storage key list")
    keys = [_ascii(k) for k in keys]

    view = memoryview(raw)
    pos = stream.tell()
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        stype = unpickler.storages.get(key)
        if stype is None:
            raise PthError(f"{filename}: storage {key!r} is listed but never referenced")
        if pos + 8 > len(raw):
            raise PthError(f"{filename}: truncated file (storage {key!r} header missing)")
        (count,) = struct.unpack_from("<q", raw, pos)
        pos += 8
        nbytes = count * stype.itemsize
        if count < 0 or pos + nbytes > len(raw):
            raise PthError(
                f"{filename}: truncated file (storage {key!r} needs {max(nbytes, 0)} bytes, "
                f"{len(raw) - pos} left)"
            )
        storages[key] = _storage_array(view[pos : pos + nbytes], stype, count, False, filename)
        pos += nbytes
    for name, ref in state.items():
        if ref.storage.key not in storages:
            raise PthError(f"{filename}: storage {ref.storage.key!r} of tensor {name!r} is missing")
    return {k: _materialize(ref, storages, filename, k) for k, ref in state.items()}


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state_dict ``.pth`` file into numpy arrays, without torch.

    Both the zip format (PyTorch >= 1.6) and the legacy pickle-series format (PyTorch <= 1.5)
    are accepted. No code from the file is run: only ``collections.OrderedDict``, the
    tensor-rebuild functions and the ``torch.*Storage`` types may be named by its pickles.

    Args:
        path: the ``.pth`` file.

    Returns:
        A dict (in the file's order) mapping each state_dict key to a C-contiguous numpy array
        with the tensor's shape and dtype (bfloat16 via ``ml_dtypes``).

    Raises:
        PthError: the file is missing, truncated, corrupt, not a state_dict, or names any
            other global (the message names the file).
    """
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PthError(f"{filename}: no such file") from None
    except OSError as e:
        raise PthError(f"{filename}: cannot read file ({e})") from e
    if not raw:
        raise PthError(f"{filename}: empty file")
    if raw[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _load_zip(raw, filename)
    if raw[257:262] == b"ustar":
        raise PthError(f"{filename}: the tar format of PyTorch < 0.1.10 is not supported")
    return _load_legacy(raw, filename)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


class _PickleWriter:
    """Minimal protocol-2 pickle emitter for an OrderedDict of ``_rebuild_tensor_v2`` calls."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n"

    def str_(self, s: str) -> None:
        data = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE

    def int_(self, n: int) -> None:
        if 0 <= n < 0x100:
            self.out += b"K" + bytes([n])  # BININT1
        elif 0 <= n < 0x10000:
            self.out += b"M" + struct.pack("<H", n)  # BININT2
        elif -(2**31) <= n < 2**31:
            self.out += b"J" + struct.pack("<i", n)  # BININT
        else:
            data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(data)]) + data  # LONG1

    def int_tuple(self, values: tuple[int, ...]) -> None:
        if not values:
            self.out += b")"  # EMPTY_TUPLE
            return
        self.out += b"("  # MARK
        for v in values:
            self.int_(v)
        self.out += b"t"  # TUPLE

    def empty_ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE, REDUCE

    def tensor(
        self,
        storage_name: str,
        key: str,
        numel: int,
        shape: tuple[int, ...],
        stride: tuple[int, ...],
    ) -> None:
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("  # MARK: arguments of _rebuild_tensor_v2
        self.out += b"("  # MARK: persistent id tuple
        self.str_("storage")
        self.global_("torch", storage_name)
        self.str_(key)
        self.str_("cpu")
        self.int_(numel)
        self.out += b"tQ"  # TUPLE, BINPERSID
        self.int_(0)  # storage offset
        self.int_tuple(shape)
        self.int_tuple(stride)
        self.out += b"\x89"  # NEWFALSE: requires_grad
        self.empty_ordered_dict()  # backward_hooks
        self.out += b"tR"  # TUPLE, REDUCE


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def _aligned_zipinfo(name: str, offset: int, size: int) -> zipfile.ZipInfo:
    """ZipInfo whose data starts on a 64-byte boundary when its local header is at ``offset``."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header = 30 + len(name.encode("utf-8")) + 4  # fixed header, name, our extra field header
    if size * 1.05 > zipfile.ZIP64_LIMIT:
        header += 20  # zipfile appends a zip64 extra field for large members
    pad = (-(offset + header)) % _ALIGNMENT
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    return info


def save_state_dict(
    state_dict: Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``state_dict`` as a zip-format ``.pth`` file, as ``torch.save`` does by default.

    ``torch.load(path, weights_only=True)`` returns an ``OrderedDict`` of CPU tensors equal to
    the inputs, with the same dtypes (float16/32/64, bfloat16, int8/16/32/64, uint8, bool,
    complex64/128). Every tensor gets its own contiguous storage. The file is written to a
    temporary file in the same folder and moved into place atomically.

    Args:
        state_dict: mapping from string keys to arrays (anything ``numpy.asarray`` accepts).
        path: destination file.
        overwrite: replace ``path`` if it exists; otherwise an existing file is an error.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        PthError: a key is not a string or an array has a dtype torch cannot store this way.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")

    pickler = _PickleWriter()
    pickler.empty_ordered_dict()
    records: list[tuple[str, bytes]] = []
    if state_dict:
        pickler.out += b"("  # MARK for SETITEMS
    for index, (key, value) in enumerate(state_dict.items()):
        if not isinstance(key, str):
            raise PthError(f"{path}: state_dict key {key!r} is not a string")
        array = np.asarray(value)
        storage_name = _DTYPE_TO_STORAGE.get(array.dtype.name)
        if storage_name is None:
            raise PthError(f"{path}: {key!r} has dtype {array.dtype}, which cannot be saved")
        if array.dtype.itemsize > 1 and array.dtype.str[0] == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        storage_key = str(index)
        shape = tuple(int(n) for n in array.shape)
        pickler.str_(key)
        pickler.tensor(storage_name, storage_key, array.size, shape, _contiguous_strides(shape))
        records.append((f"data/{storage_key}", array.tobytes()))
    if state_dict:
        pickler.out += b"u"  # SETITEMS
    pickler.out += b"."  # STOP

    all_records = [
        ("data.pkl", bytes(pickler.out)),
        ("byteorder", b"little"),
        *records,
        ("version", b"3\n"),
    ]

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, data in all_records:
                    info = _aligned_zipinfo(f"{_ARCHIVE_NAME}/{name}", f.tell(), len(data))
                    zf.writestr(info, data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
