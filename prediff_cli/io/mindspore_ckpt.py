"""Reading a MindSpore `.ckpt` file that comes from outside, every size it declares checked before it is used.

A `.ckpt` file (what `mindspore.save_checkpoint` writes) is a serialized protobuf `Checkpoint` message: a sequence
of `value` entries (field 1), each holding a `tag` (field 1, the parameter name) and a `tensor` (field 2) of
`dims` (field 1, int64), `tensor_type` (field 2, MindSpore's dtype name such as "Float32") and `tensor_content`
(field 3, the raw little-endian bytes). A tensor above 512 MB is split into consecutive entries under the same tag.
String entries have type "str", dims [0] and UTF-32 code units as content. With `crc_check=True` MindSpore appends
`b"crc_num"` and the CRC-32 of the message as 10 big-endian bytes.

This reader parses that wire format itself rather than handing the file to protobuf and MindSpore's loader (which
allocate what the file declares and have no limits of their own): each length is checked against the bytes left in
the enclosing message before anything is read or allocated, a tensor's shape must account for exactly the bytes it
holds, dimensions may not be negative, and the numbers of entries, dimensions and characters in a name are capped.
A file that ends early, lies about a size, or holds anything else is refused in one line naming the file. (The
format has no end marker: a file cut exactly between two entries reads as a checkpoint with fewer tensors, which the
exact key check against the network then reports.)
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import BinaryIO, Dict, List, Tuple, Union

import numpy as np

from prediff.errors import InputError
from prediff.io.untrusted import open_regular

#: the largest file read (bytes): every tensor is held in memory once read
MAX_FILE_BYTES = 16 << 30
#: distinct tensor names (the paper-size UNet has about 1,400; a training checkpoint with its optimizer state a few
#: thousand)
MAX_ENTRIES = 100_000
MAX_TAG_BYTES = 1024
MAX_TYPE_BYTES = 32
MAX_DIMS = 16
_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10

DTYPES = {"Float16": np.float16, "Float32": np.float32, "Float64": np.float64, "Int8": np.int8, "Int16": np.int16,
          "Int32": np.int32, "Int64": np.int64, "UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32,
          "UInt64": np.uint64, "Bool": np.bool_}
STRING_TYPE = "str"

Entry = Union[np.ndarray, str]


class _Malformed(Exception):
    """The bytes are not a MindSpore checkpoint (the message says where and why)."""


class _Stream:
    """Sequential reads from the message body, each checked against the end of its enclosing message."""

    def __init__(self, fh: BinaryIO, end: int):
        self.fh, self.pos, self.end, self.crc = fh, 0, end, 0

    def read(self, n: int, limit: int, what: str) -> bytearray:
        """`n` bytes (a fresh, writable buffer: the arrays made from it are writable without a copy)."""
        if n > limit - self.pos:
            raise _Malformed(f"{what} declares {n:,} bytes but only {limit - self.pos:,} remain at byte {self.pos:,}")
        data = bytearray(n)
        view, got = memoryview(data), 0
        while got < n:
            count = self.fh.readinto(view[got:])
            if not count:
                raise _Malformed(f"the file ends early, at byte {self.pos + got:,}")
            got += count
        self.pos += n
        self.crc = zlib.crc32(data, self.crc)
        return data

    def varint(self, limit: int, what: str) -> int:
        value, shift = 0, 0
        for _ in range(10):
            byte = self.read(1, limit, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise _Malformed(f"{what} at byte {self.pos:,} is not a valid varint")

    def length(self, limit: int, what: str) -> int:
        n = self.varint(limit, what)
        if n > limit - self.pos:
            raise _Malformed(f"{what} declares {n:,} bytes but only {limit - self.pos:,} remain at byte {self.pos:,}")
        return n


def _field(stream: _Stream, limit: int, what: str) -> Tuple[int, int]:
    key = stream.varint(limit, what)
    return key >> 3, key & 7


def _expect(wire: int, wanted: int, what: str, pos: int) -> None:
    if wire != wanted:
        raise _Malformed(f"{what} at byte {pos:,} has wire type {wire}, expected {wanted}")


def _tensor(stream: _Stream, end: int) -> Tuple[List[int], str, bytearray]:
    """One TensorProto occupying the stream up to `end`: (dims, tensor_type, tensor_content)."""
    dims: List[int] = []
    type_name, content = None, None
    while stream.pos < end:
        number, wire = _field(stream, end, "a tensor field")
        if number == 1 and wire == 0:
            dims.append(stream.varint(end, "a dimension"))
        elif number == 1 and wire == 2:  # packed dims
            n = stream.length(end, "the packed dimensions")
            stop = stream.pos + n
            while stream.pos < stop:
                dims.append(stream.varint(stop, "a dimension"))
        elif number == 2 and type_name is None:
            _expect(wire, 2, "the tensor type", stream.pos)
            n = stream.length(end, "the tensor type")
            if n > MAX_TYPE_BYTES:
                raise _Malformed(f"a tensor type name of {n:,} bytes")
            type_name = stream.read(n, end, "the tensor type").decode("ascii", "replace")
        elif number == 3 and content is None:
            _expect(wire, 2, "the tensor content", stream.pos)
            content = stream.read(stream.length(end, "the tensor content"), end, "the tensor content")
        else:
            raise _Malformed(f"unexpected tensor field {number} (wire type {wire}) at byte {stream.pos:,}")
        if len(dims) > MAX_DIMS:
            raise _Malformed(f"a tensor with more than {MAX_DIMS} dimensions")
    if type_name is None or content is None:
        raise _Malformed("a tensor without its type or content")
    if any(d >= 1 << 63 for d in dims):
        raise _Malformed("a negative dimension")
    return dims, type_name, content


def _value(stream: _Stream, end: int) -> Tuple[str, List[int], str, bytearray]:
    """One Checkpoint.Value: (tag, dims, tensor_type, tensor_content)."""
    tag, tensor = None, None
    while stream.pos < end:
        number, wire = _field(stream, end, "an entry field")
        if number == 1 and tag is None:
            _expect(wire, 2, "a name", stream.pos)
            n = stream.length(end, "a name")
            if n > MAX_TAG_BYTES:
                raise _Malformed(f"a tensor name of {n:,} bytes")
            raw = stream.read(n, end, "a name")
            try:
                tag = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"a tensor name that is not UTF-8 ({bytes(raw[:40])!r})") from None
        elif number == 2 and tensor is None:
            _expect(wire, 2, "a tensor", stream.pos)
            n = stream.length(end, "a tensor")
            tensor = _tensor(stream, stream.pos + n)
        elif number == 3:
            raise _Malformed("a map tensor (MindSpore's MapParameter), which no PreDiff network holds")
        else:
            raise _Malformed(f"unexpected entry field {number} (wire type {wire}) at byte {stream.pos:,}")
    if tag is None or tensor is None:
        raise _Malformed("an entry without its name or tensor")
    return (tag, *tensor)


def _finish(tag: str, dims: List[int], type_name: str, chunks: List[bytearray]) -> Entry:
    content = chunks[0] if len(chunks) == 1 else bytearray().join(chunks)
    if type_name == STRING_TYPE:
        if len(content) % 4:
            raise _Malformed(f"string entry {tag!r} holds {len(content):,} bytes, not whole UTF-32 characters")
        try:
            return content.decode("utf-32-le")
        except UnicodeDecodeError:
            raise _Malformed(f"string entry {tag!r} is not valid UTF-32") from None
    if type_name == "BFloat16":
        raise _Malformed(f"tensor {tag!r} is bfloat16, which NumPy cannot hold; save it as float32")
    dtype = DTYPES.get(type_name)
    if dtype is None:
        raise _Malformed(f"tensor {tag!r} has unknown type {type_name[:32]!r}; valid: {', '.join(DTYPES)}")
    shape = () if dims == [0] else tuple(dims)  # MindSpore writes a scalar's dims as [0]
    count = 1
    for d in shape:
        count *= d  # Python integers: a product of huge dims cannot wrap around
    itemsize = np.dtype(dtype).itemsize
    if count * itemsize != len(content):
        raise _Malformed(f"tensor {tag!r} declares shape {list(shape)} of {type_name} ({count * itemsize:,} bytes) "
                         f"but holds {len(content):,} bytes")
    return np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _parse(fh: BinaryIO, size: int) -> Dict[str, Entry]:
    body = size
    if size >= _CRC_TRAILER:
        fh.seek(size - _CRC_TRAILER)
        trailer = fh.read(_CRC_TRAILER)
        fh.seek(0)
        if trailer[:len(_CRC_MARK)] == _CRC_MARK:
            body = size - _CRC_TRAILER
    stream = _Stream(fh, body)
    entries: Dict[str, Entry] = {}
    pending = None  # (tag, dims, type, [content slices]) of the tensor being read
    while stream.pos < body:
        number, wire = _field(stream, body, "an entry")
        if number != 1 or wire != 2:
            raise _Malformed(f"unexpected top-level field {number} (wire type {wire}) at byte {stream.pos:,}")
        n = stream.length(body, "an entry")
        tag, dims, type_name, content = _value(stream, stream.pos + n)
        if pending is not None and pending[0] == tag:
            if (pending[1], pending[2]) != (dims, type_name):
                raise _Malformed(f"the slices of tensor {tag!r} disagree on its shape or type")
            pending[3].append(content)
            continue
        if pending is not None:
            entries[pending[0]] = _finish(*pending)
        if tag in entries:
            raise _Malformed(f"two tensors named {tag!r}")
        if len(entries) >= MAX_ENTRIES:
            raise _Malformed(f"more than {MAX_ENTRIES:,} tensors")
        pending = (tag, dims, type_name, [content])
    if pending is not None:
        entries[pending[0]] = _finish(*pending)
    if body != size and int.from_bytes(fh.read(_CRC_TRAILER)[len(_CRC_MARK):], "big") != stream.crc:
        raise _Malformed("its CRC-32 does not match its content (damaged)")
    return entries


def read_mindspore_ckpt(path, what: str = "checkpoint", limit: int = MAX_FILE_BYTES) -> Dict[str, Entry]:
    """Every entry of a MindSpore `.ckpt` file: name → NumPy array (little-endian, in its stored dtype and shape)
    or str (string entries), in file order.

    Raises `InputError` (one line naming `path`) for anything but a regular file of at most `limit` bytes holding a
    well-formed checkpoint: truncated, lying about a size or shape, encrypted, or holding map tensors.
    """
    path = Path(path)
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise InputError(f"{what} {path} is {size:,} bytes; at most {limit:,} are read")
        if size == 0:
            raise InputError(f"{what} {path} is empty")
        try:
            return _parse(fh, size)
        except _Malformed as exc:
            raise InputError(f"{what} {path} is not a readable MindSpore checkpoint: {exc}") from None


def looks_like_mindspore_ckpt(path) -> bool:
    """Whether `path` starts like a MindSpore checkpoint (a first entry holding a name) — a cheap test to choose a
    reader; `read_mindspore_ckpt` does the real checking."""
    try:
        with open_regular(path) as fh:
            head = fh.read(16)
    except InputError:
        return False
    # field 1 (length-delimited) of Checkpoint, a varint length, then field 1 (the tag) of the entry
    if len(head) < 3 or head[0] != 0x0A:
        return False
    i = 1
    while i < len(head) and head[i] & 0x80:
        i += 1
    return i + 1 < len(head) and head[i + 1] == 0x0A
