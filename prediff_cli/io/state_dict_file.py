"""Read an official PyTorch state dict (`.pt`) or an `.npz` of the same keys into NumPy, without PyTorch.

A `torch.save` file (PyTorch >= 1.6) is a zip archive: `<name>/data.pkl` is a pickle of the dict in which every
tensor is a call to `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and every storage a
persistent id `("storage", <dtype class>, <key>, <device>, <numel>)` whose bytes live in `<name>/data/<key>`.
We unpickle with a restricted `Unpickler` that knows only those few names and builds NumPy arrays from the raw
bytes, so no arbitrary code from the file can run. The older non-zip format needs PyTorch itself: if torch is
installed (the `convert` extra), it is used with `weights_only=True`.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Dict

import numpy as np

from prediff_cli.errors import InputError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    flat = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return flat[int(offset)].copy()
    itemsize = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[int(offset):], shape=size,
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view, copy=True)


def _rebuild_parameter(data, *_ignored):
    return data


class _TorchZipUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(fh)
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: Dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise InputError(f"the checkpoint references {module}.{name}, which a plain state dict does not contain")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise InputError(f"unsupported persistent object in the checkpoint: {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            dtype = _STORAGE_DTYPES.get(getattr(storage_type, "name", ""))
            if dtype is None:
                raise InputError(f"unsupported tensor storage type {storage_type!r} in the checkpoint")
            if dtype == "bfloat16":
                self._storages[key] = _bfloat16_to_float32(raw)
            else:
                dt = np.dtype(dtype).newbyteorder("<" if self._byteorder == "little" else ">")
                self._storages[key] = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype), copy=False)
        return self._storages[key]


def _read_torch_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise InputError(f"{path} is a zip file but not a PyTorch checkpoint (no data.pkl)")
        prefix = pkl[0][: -len("/data.pkl")] if "/" in pkl[0] else ""
        names = set(archive.namelist())
        byteorder_name = f"{prefix}/byteorder" if prefix else "byteorder"
        byteorder = archive.read(byteorder_name).decode().strip() if byteorder_name in names else "little"
        with archive.open(pkl[0]) as fh:
            return _TorchZipUnpickler(fh, archive, prefix, byteorder).load()


def _read_with_torch(path: Path) -> dict:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(f"{path} uses PyTorch's legacy (pre-1.6) format, which needs PyTorch to read; "
                         "install it with: pip install 'prediff[convert]'") from None
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in obj.items()}


def read_state_dict(path) -> Dict[str, np.ndarray]:
    """Official key → NumPy array from a `.pt`/`.pth`/`.ckpt` PyTorch file or an `.npz`.

    An `.npz` may hold the keys directly or under `param/` (the layout of the parity fixtures). A Lightning
    checkpoint (a dict with a `state_dict` entry) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.files)
                if any(k.startswith("param/") for k in keys):
                    return {k[len("param/"):]: z[k] for k in keys if k.startswith("param/")}
                return {k: z[k] for k in keys}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} is not a readable .npz file ({exc})") from None
    try:
        obj = _read_torch_zip(path) if zipfile.is_zipfile(path) else _read_with_torch(path)
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise InputError(f"{path}: entry {key!r} is not a tensor")
        out[str(key)] = value
    return out
