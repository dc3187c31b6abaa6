"""Read an official PyTorch state dict (`.pt`) or an `.npz` of the same keys into NumPy, without PyTorch.

A `torch.save` file (PyTorch >= 1.6) is a zip archive: `<name>/data.pkl` is a pickle of the dict in which every
tensor is a call to `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and every storage a
persistent id `("storage", <dtype class>, <key>, <device>, <numel>)` whose bytes live in `<name>/data/<key>`.
We unpickle with a restricted `Unpickler` that knows only those few names and builds NumPy arrays from the raw
bytes, so no arbitrary code from the file can run. The older non-zip ("legacy", PyTorch < 1.6) format is read
the same way (`_read_torch_legacy`); only the tar archives of PyTorch < 0.4 need PyTorch itself (the `convert`
extra, used with `weights_only=True`).

The file is untrusted input (weights downloaded from anywhere), so this module is a security boundary: every
malformed file ends in one `InputError` line, and nothing is allocated or viewed before its size has been checked
against what the archive really holds. In particular:
- a storage's declared element count must match the size of its record, checked on the zip directory before the
  record is read, and a compressed record may not claim to expand more than deflate ever can;
- every tensor view (offset, sizes, strides) is bound-checked against its storage before a strided view exists,
  and all tensors together may not grow far beyond the stored data (broadcast views with stride 0);
- compressed records together may not expand beyond a fixed allowance plus a small multiple of the file's size;
- `data.pkl` is size-capped and pre-scanned with `pickletools` so the C unpickler never sees opcodes that make it
  allocate by a number from the file (a huge memo index, a `bytearray8` length) rather than by the bytes present,
  nor containers nested deep enough to crash Python's hashing (a dict key nested a million tuples deep);
- only regular files are read (a FIFO or device path is refused, not waited on);
- `require_finite` refuses weights holding NaN or infinities, for callers that convert them.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import tarfile
import zipfile
from pathlib import Path
from typing import Dict

import numpy as np

from prediff.errors import InputError
from prediff.io.untrusted import check_regular_file

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}

# ~200 bytes of pickle per tensor, so 8 MiB is tens of thousands of tensors; the cap bounds the Python objects a
# hostile pickle can make (each opcode byte can create one).
_MAX_PICKLE_BYTES = 8 << 20
# Deflate cannot expand more than ~1032x; a record claiming more is a bomb from some other compressor.
_MAX_EXPANSION = 1100
# Numbers from the file beyond this are refused before any arithmetic or NumPy call sees them (2**48 elements is
# 256 TiB even at one byte each, far past any checkpoint).
_MAX_COUNT = 1 << 48
# NumPy 1.x arrays have at most 32 dimensions.
_MAX_NDIM = 32
# A state dict nests containers a few levels deep (dict → list of pairs → pair → tensor call → its arguments); a
# Lightning checkpoint adds a few more. Python's C hashing of nested tuples has no recursion guard, so this bound is
# what keeps a crafted key from crashing the process.
_MAX_NESTING = 100
# Items put into one container: a state dict holds thousands of tensors, far below this.
_MAX_ITEMS = 1 << 20
# Compressed records together may expand to this plus a multiple of the archive's size on disk (PyTorch stores its
# records uncompressed; a re-compressed file of float weights shrinks little), so a small file never makes the
# reader inflate gigabytes, whatever each record's own ratio.
_INFLATE_ALLOWANCE, _INFLATE_FACTOR = 64 << 20, 4
# All rebuilt tensors together may hold this multiple of the storage bytes read, plus a fixed allowance: views
# sharing one storage (tied weights) repeat it, a stride-0 broadcast view can multiply it without limit.
_VIEW_FACTOR, _VIEW_ALLOWANCE = 4, 64 << 20


def _show(obj, limit: int = 80) -> str:
    """`repr` of something taken from the file, on one line and short, for an error message."""
    try:
        text = repr(obj)
    except Exception:  # a deeply nested value can exhaust the recursion limit inside repr
        text = f"<{type(obj).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_expansion(path: Path, info: zipfile.ZipInfo) -> None:
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_EXPANSION * max(info.compress_size, 1):
        raise InputError(f"{path}: zip entry {_show(info.filename)} claims to expand from {info.compress_size} "
                         f"to {info.file_size} bytes; refusing a possible zip bomb")


def _check_inflation(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse an archive whose compressed records together claim to expand far beyond the file itself."""
    inflated = sum(i.file_size for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED)
    cap = _INFLATE_ALLOWANCE + _INFLATE_FACTOR * path.stat().st_size
    if inflated > cap:
        raise InputError(f"{path}: its compressed records claim to expand to {inflated:,} bytes, more than "
                         f"{cap:,} for a file of {path.stat().st_size:,} bytes; refusing a possible zip bomb")


def _check_unique_names(path: Path, archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    if len(names) != len(set(names)):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{path}: the zip archive holds entry {_show(dup)} more than once")


class _StorageType:
    """What `torch.FloatStorage` etc. unpickle to: only its name matters."""

    def __init__(self, name: str):
        self.name = name

    def __setstate__(self, state):  # refuse BUILD, which would otherwise rewrite our attributes
        raise InputError("the checkpoint tries to modify a storage type object")

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A storage loaded from `data/<key>`: a flat array, never a tensor itself."""

    __slots__ = ("array", "key", "type_name", "numel")

    def __init__(self, array: np.ndarray, key: str, type_name: str, numel: int):
        self.array, self.key, self.type_name, self.numel = array, key, type_name, numel

    def __setstate__(self, state):  # refuse BUILD, which would otherwise replace `array`
        raise InputError("the checkpoint tries to modify a tensor storage object")

    def __repr__(self):
        return f"<storage {self.key!r}: {self.numel} x {self.type_name}>"


def _itemsize(type_name: str) -> int:
    dtype = _STORAGE_DTYPES[type_name]
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _decode(raw, type_name: str, byteorder: str) -> np.ndarray:
    """The raw bytes of a storage → a flat NumPy array in native byte order."""
    dtype = _STORAGE_DTYPES[type_name]
    order = "<" if byteorder == "little" else ">"
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype=f"{order}u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if dtype is np.bool_:  # bytes other than 0/1 are not valid NumPy bools
        return np.frombuffer(raw, dtype=np.uint8) != 0
    dt = np.dtype(dtype).newbyteorder(order)
    return np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype), copy=False)


_MARK = object()  # a MARK on the simulated stack
# Opcodes that change the object below their arguments in place (the list, dict, set or object being filled).
_MUTATORS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


class _Shape:
    """What the pre-scan knows of an object the unpickler would build: how deeply it nests and how many items
    were put into it."""

    __slots__ = ("depth", "items")

    def __init__(self, depth: int = 0, items: int = 0):
        self.depth, self.items = depth, items


def _prescan_pickle(path: Path, data: bytes) -> int:
    """Walk the opcodes without executing them (pickletools reads only bytes that are present) and refuse a pickle
    that would make the unpickler allocate by a count written in the file, or build containers nested deeper than
    `_MAX_NESTING` or holding more than `_MAX_ITEMS` items. Returns the length of the pickle (up to and including
    its STOP opcode).

    The nesting matters because Python hashes a tuple by hashing its items recursively in C, with no recursion
    check: a dict key (or set member) nested a million tuples deep kills the process with SIGSEGV. The scan runs
    the unpickler's stack machine on shapes instead of objects: every opcode's arguments are popped (down to the
    MARK for the variable-length ones), the object it makes is one level deeper than the deepest of them, an object
    filled in place (APPEND, SETITEMS, BUILD, ...) takes the depth of what is put into it, and the memo hands out
    the same shape it stored."""
    puts = 0
    end = 0
    stack: list = []
    memo: dict = {}

    def fail(message: str) -> InputError:
        return InputError(f"{path}: data.pkl {message}")

    def pop(count: int) -> list:
        if count > len(stack) or any(item is _MARK for item in stack[len(stack) - count:]):
            raise fail("is not a valid pickle (an opcode finds too few objects on the stack)")
        taken = stack[len(stack) - count:]
        del stack[len(stack) - count:]
        return taken

    def pop_to_mark() -> list:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                taken = stack[i + 1:]
                del stack[i:]
                return taken
        raise fail("is not a valid pickle (an opcode needs a MARK that was never set)")

    def made_of(parts: list) -> _Shape:
        depth = 1 + max((p.depth for p in parts), default=-1)
        return _Shape(depth, len(parts))

    def check(shape: _Shape) -> _Shape:
        if shape.depth > _MAX_NESTING:
            raise fail(f"nests containers more than {_MAX_NESTING} levels deep; a state dict nests a few")
        if shape.items > _MAX_ITEMS:
            raise fail(f"puts more than {_MAX_ITEMS} items into one container")
        return shape

    try:
        for opcode, arg, pos in pickletools.genops(data):
            end = pos + 1  # the last opcode genops yields is STOP, one byte
            name = opcode.name
            if name in ("BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"):
                raise InputError(f"{path}: data.pkl uses the pickle opcode {name}, which a state dict never holds")
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                # A pickler numbers memo entries 0, 1, 2, ...; the C unpickler grows its memo table to twice
                # the index, so an index far ahead of the entries seen would allocate gigabytes.
                if not _is_int(arg) or arg < 0 or arg > puts:
                    raise InputError(f"{path}: data.pkl stores memo entry {_show(arg)} after only {puts} entries")
                puts += 1
                if not stack or stack[-1] is _MARK:
                    raise fail("is not a valid pickle (PUT with nothing to store)")
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                if not stack or stack[-1] is _MARK:
                    raise fail("is not a valid pickle (MEMOIZE with nothing to store)")
                memo[puts] = stack[-1]
                puts += 1
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise fail(f"reads memo entry {_show(arg)}, which was never stored")
                stack.append(memo[arg])
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "DUP":
                stack.extend(pop(1) * 2)
            elif name == "POP":
                if not stack:
                    raise fail("is not a valid pickle (POP on an empty stack)")
                stack.pop()
            elif name == "POP_MARK":
                pop_to_mark()
            elif name in _MUTATORS:
                before = opcode.stack_before
                if pickletools.markobject in before:
                    items = pop_to_mark()
                    (target,) = pop(1)
                else:
                    target, *items = pop(len(before))
                if target.__class__ is not _Shape:
                    raise fail("is not a valid pickle")
                target.depth = max(target.depth, made_of(items).depth)
                target.items += len(items)
                stack.append(check(target))
            else:
                before, after = opcode.stack_before, opcode.stack_after
                if pickletools.markobject in before:
                    fixed = before.index(pickletools.markobject)  # OBJ: its class sits above the mark
                    parts = pop_to_mark() + pop(fixed)
                else:
                    parts = pop(len(before))
                shape = check(made_of(parts))
                stack.extend(shape if i == 0 else _Shape() for i in range(len(after)))
    except InputError:
        raise
    except Exception as exc:  # genops raises ValueError for truncated or unknown opcodes
        raise InputError(f"{path}: data.pkl is not a valid pickle ({_one_line(exc)})") from None
    return end


class _TorchZipUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._path, self._archive, self._prefix, self._byteorder = path, archive, prefix, byteorder
        self._storages: Dict[str, _Storage] = {}
        self._stored_bytes = 0  # bytes of storage records read so far
        self._view_bytes = 0  # bytes of all tensors rebuilt so far
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor_v1,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
        }

    def _fail(self, message: str) -> InputError:
        return InputError(f"{self._path}: {message}")

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise self._fail(f"the checkpoint references {_show(f'{module}.{name}')}, "
                         "which a plain state dict does not contain")

    # -- storages -------------------------------------------------------------------------------------------------

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self._fail(f"unsupported persistent object {_show(pid)}; "
                             "expected ('storage', type, key, device, numel)")
        _tag, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise self._fail(f"unsupported tensor storage type {_show(storage_type)}; "
                             f"expected one of torch.{', torch.'.join(_STORAGE_DTYPES)}")
        if not isinstance(key, str) or not key or len(key) > 256:
            raise self._fail(f"storage key {_show(key)} is not a short non-empty string")
        if not isinstance(location, str):
            raise self._fail(f"storage device {_show(location)} is not a string")
        if not _is_int(numel) or not 0 <= numel <= _MAX_COUNT:
            raise self._fail(f"storage {key!r} declares {_show(numel)} elements; expected an int in 0..2**48")
        cached = self._storages.get(key)
        if cached is not None:
            if (cached.type_name, cached.numel) != (storage_type.name, numel):
                raise self._fail(f"storage {key!r} is declared as {numel} x {storage_type.name} here and as "
                                 f"{cached.numel} x {cached.type_name} before")
            return cached
        storage = _Storage(self._load_storage(key, storage_type.name, numel), key, storage_type.name, numel)
        self._storages[key] = storage
        return storage

    def _load_storage(self, key: str, type_name: str, numel: int) -> np.ndarray:
        itemsize = _itemsize(type_name)
        name = _record(self._prefix, f"data/{key}")
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise self._fail(f"storage record {name!r} is missing from the archive") from None
        nbytes = numel * itemsize
        # Checked on the zip directory, before reading: a record of another size means the declared count lies,
        # and trusting it would allocate by the count rather than by the bytes in the file.
        if info.file_size != nbytes:
            raise self._fail(f"storage {key!r} declares {numel} x {type_name} ({nbytes} bytes) but its record "
                             f"{name!r} holds {info.file_size} bytes")
        _check_expansion(self._path, info)
        raw = self._archive.read(info)
        if len(raw) != nbytes:
            raise self._fail(f"storage record {name!r} is truncated ({len(raw)} of {nbytes} bytes)")
        self._stored_bytes += nbytes
        return _decode(raw, type_name, self._byteorder)

    # -- tensors --------------------------------------------------------------------------------------------------

    def _rebuild_tensor_v2(self, *args):
        # torch: (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if len(args) not in (6, 7):
            raise self._fail(f"_rebuild_tensor_v2 is called with {len(args)} arguments; expected 6 or 7")
        if not isinstance(args[4], bool) or not isinstance(args[5], dict):
            raise self._fail("_rebuild_tensor_v2 is called with requires_grad "
                             f"{_show(args[4])} and hooks {_show(args[5])}; expected a bool and a dict")
        if len(args) == 7 and args[6] is not None and not isinstance(args[6], dict):
            raise self._fail(f"_rebuild_tensor_v2 is called with metadata {_show(args[6])}; expected a dict")
        return self._view(*args[:4])

    def _rebuild_tensor_v1(self, *args):
        if len(args) != 4:
            raise self._fail(f"_rebuild_tensor is called with {len(args)} arguments; expected 4")
        return self._view(*args)

    def _rebuild_parameter(self, *args):
        # torch: (data, requires_grad, backward_hooks)
        if len(args) != 3:
            raise self._fail(f"_rebuild_parameter is called with {len(args)} arguments; expected 3")
        if type(args[0]) is not np.ndarray:
            raise self._fail(f"_rebuild_parameter is called with {_show(args[0])}; expected a tensor")
        return args[0]

    def _view(self, storage, offset, size, stride) -> np.ndarray:
        if not isinstance(storage, _Storage):
            raise self._fail(f"a tensor is built on {_show(storage)}; expected a storage")
        shape = self._dims(size, "size")
        steps = self._dims(stride, "stride")
        if len(shape) != len(steps):
            raise self._fail(f"a tensor on storage {storage.key!r} has size {_show(size)} and stride "
                             f"{_show(stride)} of different lengths")
        if not _is_int(offset) or not 0 <= offset <= _MAX_COUNT:
            raise self._fail(f"a tensor on storage {storage.key!r} has offset {_show(offset)}; "
                             "expected a non-negative int")
        flat = storage.array
        if 0 in shape:  # an empty tensor reads no element; only its offset must lie within the storage
            if offset > storage.numel or math.prod(max(s, 1) for s in shape) > _MAX_COUNT:
                raise self._fail(f"an empty tensor of size {shape} at offset {offset} does not fit storage "
                                 f"{storage.key!r} of {storage.numel} elements")
            return np.empty(shape, dtype=flat.dtype)
        # The last element a view reads sits at offset + sum((size - 1) * stride); it must lie in the storage,
        # otherwise as_strided would read whatever memory follows the buffer.
        last = offset + sum((n - 1) * s for n, s in zip(shape, steps))
        if last >= storage.numel:
            raise self._fail(f"a tensor of size {shape}, stride {steps}, offset {offset} reads element {last} "
                             f"of storage {storage.key!r}, which has {storage.numel} elements")
        numel = math.prod(shape)
        self._view_bytes += numel * flat.itemsize
        if self._view_bytes > _VIEW_FACTOR * self._stored_bytes + _VIEW_ALLOWANCE:
            raise self._fail(f"a tensor of size {shape} on storage {storage.key!r} ({storage.numel} elements) "
                             f"brings the tensors to {self._view_bytes} bytes, far more than the "
                             f"{self._stored_bytes} bytes of data in the file")
        # A dimension of size 1 is never stepped over, so its stride (bound-checked only through size - 1 = 0)
        # is dropped rather than passed to NumPy, where a huge value could overflow.
        byte_steps = tuple(s * flat.itemsize if n > 1 else 0 for n, s in zip(shape, steps))
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape, strides=byte_steps, writeable=False)
        return np.array(view, copy=True)

    def _dims(self, value, what: str) -> tuple:
        if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
            raise self._fail(f"a tensor {what} is {_show(value)}; expected a tuple of at most {_MAX_NDIM} ints")
        if not all(_is_int(v) and 0 <= v <= _MAX_COUNT for v in value):
            raise self._fail(f"a tensor {what} is {_show(value)}; expected non-negative ints up to 2**48")
        return tuple(value)


def _record(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _read_torch_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        _check_unique_names(path, archive)
        _check_inflation(path, archive)
        pkl = [i for i in archive.infolist() if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if not pkl:
            raise InputError(f"{path} is a zip file but not a PyTorch checkpoint (no data.pkl)")
        if len(pkl) > 1:
            raise InputError(f"{path} holds {len(pkl)} data.pkl records; a PyTorch checkpoint has exactly one")
        info = pkl[0]
        prefix = info.filename[: -len("/data.pkl")] if "/" in info.filename else ""
        if info.file_size > _MAX_PICKLE_BYTES:
            raise InputError(f"{path}: data.pkl declares {info.file_size} bytes; a state dict's is at most "
                             f"{_MAX_PICKLE_BYTES} bytes")
        _check_expansion(path, info)
        byteorder = "little"
        names = set(archive.namelist())
        byteorder_name = _record(prefix, "byteorder")
        if byteorder_name in names:
            byteorder_info = archive.getinfo(byteorder_name)
            raw = archive.read(byteorder_info) if byteorder_info.file_size <= 16 else b"(too long)"
            byteorder = raw.decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise InputError(f"{path}: the byteorder record holds {_show(raw)}; expected 'little' or 'big'")
        data = archive.read(info)
        if len(data) > _MAX_PICKLE_BYTES:
            raise InputError(f"{path}: data.pkl is larger than {_MAX_PICKLE_BYTES} bytes")
        _prescan_pickle(path, data)
        return _TorchZipUnpickler(data, path, archive, prefix, byteorder).load()


class _LegacyUnpickler(_TorchZipUnpickler):
    """The object pickle of the legacy format. Its storages are persistent ids `("storage", type, key, device,
    numel, view)` whose bytes come only after the pickle, so it is unpickled twice: a dry pass (`table` None) only
    records each storage's type and size and builds no tensor; the second takes the arrays from `table`."""

    def __init__(self, data: bytes, path: Path, byteorder: str, table=None):
        super().__init__(data, path, None, "", byteorder)
        self.table = table
        self.declared: Dict[str, tuple] = {}  # key → (type name, numel), in the order first seen

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise self._fail(f"unsupported persistent object {_show(pid)}; "
                             "expected ('storage', type, key, device, numel, view)")
        _tag, storage_type, key, location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise self._fail(f"unsupported tensor storage type {_show(storage_type)}; "
                             f"expected one of torch.{', torch.'.join(_STORAGE_DTYPES)}")
        if not isinstance(key, str) or not key or len(key) > 256 or not isinstance(location, str):
            raise self._fail(f"storage key {_show(key)} / device {_show(location)} are not short strings")
        if not _is_int(numel) or not 0 <= numel <= _MAX_COUNT:
            raise self._fail(f"storage {key!r} declares {_show(numel)} elements; expected an int in 0..2**48")
        seen = self.declared.setdefault(key, (storage_type.name, numel))
        if seen != (storage_type.name, numel):
            raise self._fail(f"storage {key!r} is declared as {numel} x {storage_type.name} here and as "
                             f"{seen[1]} x {seen[0]} before")
        if view is not None:  # (view key, offset, size): a slice of the root storage
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and _is_int(view[1]) and _is_int(view[2]) and 0 <= view[1] and 0 <= view[2]
                    and view[1] + view[2] <= numel):
                raise self._fail(f"storage view {_show(view)} does not lie within storage {key!r} of {numel} "
                                 "elements")
        if self.table is None:
            return _Storage(np.empty(0, np.uint8), key, storage_type.name, numel)
        root = self.table[key]
        if view is None:
            return root
        _vkey, start, size = view
        return _Storage(root.array[start:start + size], f"{key}[{start}:{start + size}]", root.type_name, size)

    def _view(self, storage, offset, size, stride):
        return None if self.table is None else super()._view(storage, offset, size, stride)

    def _rebuild_parameter(self, *args):
        return None if self.table is None else super()._rebuild_parameter(*args)


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header pickles (numbers, a dict, a list of strings): no global, no persistent id."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected reference to {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected persistent object")


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# The legacy file is read into memory whole; no legacy state dict worth converting comes near this size.
_MAX_LEGACY_BYTES = 2 << 30


def _read_torch_legacy(path: Path) -> dict:
    """PyTorch's legacy (pre-1.6) format without PyTorch: five pickles (magic number, protocol version, system
    info, the object, the list of storage keys) followed, for each key in that list, by the storage's element
    count (int64) and its raw bytes. Every count and length is checked against the bytes in the file."""
    size = path.stat().st_size
    if size > _MAX_LEGACY_BYTES:
        raise InputError(f"{path} is {size} bytes; a legacy-format PyTorch file is read whole and may be at most "
                         f"{_MAX_LEGACY_BYTES} bytes")
    data = path.read_bytes()
    pos = 0

    def small(what: str):
        nonlocal pos
        chunk = data[pos:pos + 4096]
        end = _prescan_pickle(path, chunk)
        if end == 0:
            raise InputError(f"{path}: the legacy {what} is missing")
        value = _PlainUnpickler(io.BytesIO(chunk[:end])).load()
        pos += end
        return value

    if small("magic number") != _LEGACY_MAGIC:
        raise InputError(f"{path} is not a PyTorch checkpoint (a pickle without the legacy magic number)")
    protocol = small("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise InputError(f"{path}: legacy protocol version {_show(protocol)}; supported: {_LEGACY_PROTOCOL}")
    info = small("system info")
    if not isinstance(info, dict) or not isinstance(info.get("little_endian"), bool):
        raise InputError(f"{path}: the legacy system info {_show(info)} does not say the byte order")
    byteorder = "little" if info["little_endian"] else "big"
    body = data[pos:pos + _MAX_PICKLE_BYTES + 1]
    end = _prescan_pickle(path, body)
    if end == 0 or end > _MAX_PICKLE_BYTES:
        raise InputError(f"{path}: the pickled state dict is missing or larger than {_MAX_PICKLE_BYTES} bytes")
    body = body[:end]
    dry = _LegacyUnpickler(body, path, byteorder)
    dry.load()
    pos += end
    chunk = data[pos:pos + _MAX_PICKLE_BYTES + 1]
    keys_end = _prescan_pickle(path, chunk)
    keys = _PlainUnpickler(io.BytesIO(chunk[:keys_end])).load() if keys_end else None
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)
            and set(keys) == set(dry.declared)):
        raise InputError(f"{path}: the legacy storage key list {_show(keys)} does not name each storage of the "
                         "state dict exactly once")
    pos += keys_end
    table = {}
    order = "<" if byteorder == "little" else ">"
    for key in keys:
        type_name, numel = dry.declared[key]
        nbytes = numel * _itemsize(type_name)
        if pos + 8 + nbytes > len(data):
            raise InputError(f"{path}: storage {key!r} ({numel} x {type_name}) runs past the end of the file "
                             f"({len(data)} bytes); the file is truncated")
        count = int(np.frombuffer(data, dtype=f"{order}i8", count=1, offset=pos)[0])
        if count != numel:
            raise InputError(f"{path}: storage {key!r} is declared with {numel} elements but its data with {count}")
        table[key] = _Storage(_decode(memoryview(data)[pos + 8:pos + 8 + nbytes], type_name, byteorder), key,
                              type_name, numel)
        pos += 8 + nbytes
    if pos != len(data):
        raise InputError(f"{path}: {len(data) - pos} bytes follow the last storage; the file is not a PyTorch "
                         "checkpoint or is damaged")
    real = _LegacyUnpickler(body, path, byteorder, table)
    real._stored_bytes = sum(s.array.nbytes for s in table.values())
    return real.load()


def _read_with_torch(path: Path) -> dict:
    try:
        import torch  # optional (the `convert` extra), for this legacy format only: imported here, not at the top
    except ImportError:
        raise InputError(f"{path} uses PyTorch's legacy (pre-1.6) format, which needs PyTorch to read; "
                         "install it with: pip install 'prediff[convert]'") from None

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        return obj
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in obj.items()}


def _check_npz(path: Path) -> None:
    """Compare every member's `.npy` header with its zip entry before NumPy reads it: `np.load` allocates the
    array the header declares and only then reads, so a lying header would allocate by its word alone."""
    with zipfile.ZipFile(path) as archive:
        _check_unique_names(path, archive)
        _check_inflation(path, archive)
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise InputError(f"{path}: entry {_show(info.filename)} is not a .npy array")
            _check_expansion(path, info)
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise InputError(f"{path}: entry {_show(info.filename)} uses .npy format version "
                                     f"{_show(version)}; supported: 1.0 and 2.0")
                header_end = fh.tell()
            if dtype.hasobject:
                raise InputError(f"{path}: entry {_show(info.filename)} holds Python objects, not numbers")
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size - header_end != nbytes:
                raise InputError(f"{path}: entry {_show(info.filename)} declares shape {_show(shape)} of "
                                 f"{dtype} ({nbytes} bytes) but holds {info.file_size - header_end} bytes")


def _read_npz(path: Path) -> dict:
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a readable .npz file (not a zip archive)")
    try:
        _check_npz(path)
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if any(k.startswith("param/") for k in keys):
                return {k[len("param/"):]: z[k] for k in keys if k.startswith("param/")}
            return {k: z[k] for k in keys}
    except InputError:
        raise
    except Exception as exc:  # zipfile, zlib and NumPy's header parser raise many kinds; all mean a bad file
        raise InputError(f"{path} is not a readable .npz file ({type(exc).__name__}: {_one_line(exc)})") from None


def _read_pt(path: Path):
    if zipfile.is_zipfile(path):
        return _read_torch_zip(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        raise InputError(f"{path} is a damaged or truncated zip archive, not a readable PyTorch checkpoint")
    # The legacy format is a sequence of pickles (protocol 2 starts with 0x80) or, before PyTorch 0.4, a tar
    # archive (read only through PyTorch, when it is installed).
    if head.startswith(b"\x80"):
        return _read_torch_legacy(path)
    if not tarfile.is_tarfile(path):
        raise InputError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor the legacy format)")
    return _read_with_torch(path)


def read_state_dict(path) -> Dict[str, np.ndarray]:
    """Official key → NumPy array from a `.pt`/`.pth`/`.ckpt` PyTorch file or an `.npz`.

    An `.npz` may hold the keys directly or under `param/` (the layout of the parity fixtures). A Lightning
    checkpoint (a dict with a `state_dict` entry) is unwrapped.
    """
    path = Path(path)
    check_regular_file(path, "weights file")  # a FIFO or device would hang or never end
    if path.suffix == ".npz":
        obj = _read_npz(path)
    else:
        try:
            obj = _read_pt(path)
        except InputError:
            raise
        except Exception as exc:
            # A hostile pickle or zip can make the unpickler, zipfile or zlib raise almost anything (TypeError,
            # struct.error, RecursionError, MemoryError, ...); each means the file is bad, never a crash.
            # KeyboardInterrupt is not an Exception and still stops the program.
            raise InputError(f"{path} is not a readable PyTorch state dict "
                             f"({type(exc).__name__}: {_one_line(exc)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path} holds a {type(obj).__name__} at the top level; expected a state dict "
                         "(a dict of name to tensor)")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputError(f"{path}: key {_show(key)} is not a string; a state dict maps names to tensors")
        if not isinstance(value, np.ndarray):
            raise InputError(f"{path}: entry {_show(key)} is a {type(value).__name__}, not a tensor")
        out[key] = value
    return out


def require_finite(state: Dict[str, np.ndarray], source) -> None:
    """Refuse a state dict holding NaN or infinite floating-point values: weights like that make every forecast
    NaN, and no published network has them."""
    for key, value in state.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise InputError(f"{source}: entry {_show(key)} holds NaN or infinite values; these are not usable weights")
