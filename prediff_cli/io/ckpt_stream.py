"""Write a MindSpore `.ckpt` file one tensor at a time.

`mindspore.save_checkpoint` first gathers a host copy of every tensor and only then writes, so saving a training
run holds a second copy of the weights and optimizer moments for the length of the write: about 1 GB more for
the paper-size VAE trainer (weights 0.32 GB, AdamW moments 0.64 GB). This writer fetches each tensor from the
device just before writing it, so the extra memory is one tensor.

The bytes are those `mindspore.save_checkpoint` writes for the same entries in the same order (checked in
tests/io/test_checkpoint_stream.py): a concatenation of serialized `Checkpoint` protobuf messages, one per tensor
(the bytes of a tensor above 512 MB are split into 512 MB slices under the same tag, as MindSpore does), each
holding `tag`, `tensor.dims`, `tensor.tensor_type` (MindSpore's dtype name, e.g. "Float32") and the raw
little-endian bytes.
A string entry has dims [0], type "str" and its UTF-32 code units (NumPy's `<U` layout) as content.
"""
from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterable, Mapping, Optional, Tuple

import numpy as np

# MindSpore's slice size for one tensor in a .ckpt file (serialization.SLICE_SIZE, in KB)
SLICE_KB = 512 * 1024

_TYPE_NAMES = {np.dtype(np.float32): "Float32", np.dtype(np.float64): "Float64", np.dtype(np.float16): "Float16",
               np.dtype(np.int64): "Int64", np.dtype(np.int32): "Int32", np.dtype(np.int16): "Int16",
               np.dtype(np.int8): "Int8", np.dtype(np.uint8): "UInt8", np.dtype(np.bool_): "Bool"}


def host_array(value: Any) -> np.ndarray:
    """A NumPy array of `value`: NumPy arrays as they are, MindSpore tensors/parameters through `asnumpy()`."""
    if hasattr(value, "asnumpy"):
        value = value.asnumpy()
    return np.asarray(value, order="C")  # (not ascontiguousarray: it turns 0-d arrays into 1-d ones)


def _message(tag: str, dims: Tuple[int, ...], type_name: str, content: bytes) -> bytes:
    from mindspore.train.checkpoint_pb2 import Checkpoint

    msg = Checkpoint()
    entry = msg.value.add()
    entry.tag = tag
    entry.tensor.dims.extend(dims)
    entry.tensor.tensor_type = type_name
    entry.tensor.tensor_content = content
    return msg.SerializeToString()


def write_tensor(f: BinaryIO, tag: str, value: Any) -> None:
    array = host_array(value)
    type_name = _TYPE_NAMES.get(array.dtype)
    if type_name is None:
        raise TypeError(f"{tag}: cannot store dtype {array.dtype} in a checkpoint; "
                        f"valid: {', '.join(sorted(d.name for d in _TYPE_NAMES))}")
    content, chunk = array.tobytes(), SLICE_KB * 1024
    for start in range(0, len(content), chunk):
        f.write(_message(tag, array.shape, type_name, content[start:start + chunk]))


def write_string(f: BinaryIO, tag: str, text: str) -> None:
    f.write(_message(tag, (0,), "str", np.array(text).tobytes()))


def write_ckpt(path: os.PathLike, tensors: Iterable[Tuple[str, Any]],
               strings: Optional[Mapping[str, str]] = None) -> None:
    """Write `tensors` ((tag, array or MindSpore tensor) pairs, in order) and then `strings` to `path`.

    Each tensor is copied to the host only while it is written. The caller provides atomicity and the fsync
    (write to a temporary name, then commit: `io.atomic`)."""
    with open(path, "wb") as f:
        for tag, value in tensors:
            write_tensor(f, tag, value)
        for tag, text in (strings or {}).items():
            write_string(f, tag, text)
