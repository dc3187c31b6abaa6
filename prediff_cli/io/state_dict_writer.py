"""Write NumPy arrays as a PyTorch state dict file (`torch.save` zip format), without PyTorch.

The layout is the one `state_dict_file.read_state_dict` reads (and PyTorch >= 1.6 writes): a zip archive with
`<name>/data.pkl` (a pickle of an `OrderedDict` whose values are `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, backward_hooks)` calls, each storage a persistent id `("storage", torch.<Type>Storage,
key, "cpu", numel)`), the raw little-endian bytes of every storage under `<name>/data/<key>`, `<name>/byteorder`
and `<name>/version`. Every tensor gets its own contiguous storage. Used to hand our weights to PyTorch users and to
serve official-format files to the download tests; written through `io.atomic`.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .atomic import atomic_path

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
                  np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}


class _Global:
    """A `module.name` reference written as a pickle GLOBAL without importing the module (torch is absent)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only checks that a reduce function is callable; it is never called here
        raise TypeError(f"{self.module}.{self.name} is a stand-in for pickling")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        strides = tuple(int(np.prod(self.shape[i + 1:], dtype=np.int64)) for i in range(len(self.shape)))
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, tuple(int(n) for n in self.shape), strides, False,
                 _Reduced(_Global("collections", "OrderedDict"), ())))


class _Reduced:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _TorchPickler(pickle._Pickler):
    """The pure-Python pickler with two additions: `_Global` writes a GLOBAL opcode, `_Storage` a persistent id."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", _STORAGE_NAMES[obj.array.dtype]), obj.key, "cpu",
                    int(obj.array.size))
        return None


class _LegacyPickler(_TorchPickler):
    """Storages as the legacy format names them: `("storage", type, key, device, numel, view)`, view None."""

    def persistent_id(self, obj):
        pid = super().persistent_id(obj)
        return None if pid is None else pid + (None,)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _legacy_bytes(state, storages) -> bytes:
    """PyTorch's legacy (< 1.6) layout: magic, protocol, system info, the object and the sorted storage keys as five
    protocol-2 pickles, then for each key its element count (little-endian int64) and raw bytes."""
    out = io.BytesIO()
    for header in (_LEGACY_MAGIC, _LEGACY_PROTOCOL,
                   {"protocol_version": _LEGACY_PROTOCOL, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(header, out, protocol=2)
    _LegacyPickler(out, protocol=2).dump(state)
    by_key = {s.key: s for s in storages}
    keys = sorted(by_key)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        array = by_key[key].array
        out.write(np.int64(array.size).astype("<i8").tobytes())
        out.write(array.tobytes())
    return out.getvalue()


def write_state_dict(path, arrays: Mapping[str, np.ndarray], archive_name: str = "archive",
                     legacy: bool = False) -> Path:
    """Write `arrays` (key → array; float32/64/16, int8-64, uint8, bool) as a PyTorch state dict at `path`: the zip
    format of PyTorch >= 1.6, or with `legacy` the older format (how many published weights, e.g. the I3D of FVD,
    were saved)."""
    storages, entries = [], collections.OrderedDict()
    for i, (key, value) in enumerate(arrays.items()):
        array = np.array(value, order="C", copy=False)  # (ascontiguousarray would make a 0-d array 1-d)
        if array.dtype not in _STORAGE_NAMES:
            raise ValueError(f"{key}: dtype {array.dtype} has no PyTorch storage type here")
        storage = _Storage(str(i), array.astype(array.dtype.newbyteorder("<"), copy=False))
        storages.append(storage)
        entries[str(key)] = _Tensor(storage, array.shape)
    state = _Reduced(_Global("collections", "OrderedDict"), (list(entries.items()),))
    if legacy:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(_legacy_bytes(state, storages))
        return Path(path)
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(state)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{archive_name}/data.pkl", buffer.getvalue())
            archive.writestr(f"{archive_name}/byteorder", "little")
            for storage in storages:
                with archive.open(f"{archive_name}/data/{storage.key}", "w", force_zip64=True) as fh:
                    fh.write(storage.array.tobytes())
            archive.writestr(f"{archive_name}/version", "3\n")
    return Path(path)
