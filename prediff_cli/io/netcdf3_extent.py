"""Is a netCDF-3 file whole? Its header declares where every variable's data lies; a file cut short holds less.

The NetCDF library reads a classic (CDF-1), 64-bit-offset (CDF-2) or CDF-5 file past its end without complaint
(what it returns there is whatever its buffer held), so a file cut in half would be forecast from garbage. This
module parses the header (the classic format specification: magic, numrecs, dimensions, global attributes,
variables with their shapes, types and `begin` offsets), computes the last byte any variable's data needs and
compares it with the file's size. Every count in the header is bounded by the bytes actually present before it
is used, so a crafted header cannot make it allocate or loop without end.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import List, Tuple

from prediff.errors import InputError

from .untrusted import open_regular

#: nc_type → bytes per value (CDF-5 adds the unsigned and 64-bit integer types)
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_ABSENT, _DIMENSION, _VARIABLE, _ATTRIBUTE = 0, 10, 11, 12
_STREAMING, _STREAMING_64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
#: a header larger than this is not read (real headers are kilobytes; attributes can make them larger)
MAX_HEADER_BYTES = 64 << 20


class _Header:
    """A cursor over the header bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, version: int, path: Path):
        self.data, self.pos, self.path = data, 4, path
        self.wide = version == 5  # CDF-5: 64-bit counts and sizes
        self.offset_bytes = 4 if version == 1 else 8

    def fail(self, why: str):
        raise InputError(f"{self.path}: the netCDF-3 header is damaged ({why})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            self.fail("it runs past the end of the file")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def count(self) -> int:
        """A non-negative count (64-bit in CDF-5)."""
        return struct.unpack(">Q", self.take(8))[0] if self.wide else self.u32()

    def offset(self) -> int:
        return struct.unpack(">Q" if self.offset_bytes == 8 else ">I", self.take(self.offset_bytes))[0]

    def padded(self, n: int) -> bytes:
        chunk = self.take(n)
        self.take((4 - n % 4) % 4)
        return chunk

    def name(self) -> str:
        return self.padded(self.count()).decode("utf-8", "replace")

    def list_header(self, tag: int) -> int:
        """The element count of a dimension / attribute / variable list (0 when ABSENT)."""
        kind, n = self.u32(), self.count()
        if kind == _ABSENT and n == 0:
            return 0
        if kind != tag:
            self.fail(f"list tag {kind} where {tag} was expected")
        if n > len(self.data) - self.pos:  # every element takes at least one byte
            self.fail(f"it declares {n} list elements")
        return n

    def attributes(self) -> None:
        for _ in range(self.list_header(_ATTRIBUTE)):
            self.name()
            nc_type = self.u32()
            if nc_type not in _TYPE_SIZES:
                self.fail(f"unknown attribute type {nc_type}")
            n = self.count()
            if n > len(self.data):
                self.fail(f"an attribute declares {n} values")
            self.padded(n * _TYPE_SIZES[nc_type])


def _parse(data: bytes, path: Path) -> Tuple[int, List[int], List[Tuple[List[int], int, int]]]:
    """(numrecs, dimension lengths, [(dimension ids, nc_type, begin) per variable])."""
    version = data[3]
    if version not in (1, 2, 5):
        raise InputError(f"{path}: unknown netCDF-3 version {version}")
    h = _Header(data, version, path)
    numrecs = h.count()
    dims = []
    for _ in range(h.list_header(_DIMENSION)):
        h.name()
        dims.append(h.count())
    h.attributes()
    variables = []
    for _ in range(h.list_header(_VARIABLE)):
        h.name()
        n = h.count()
        if n > 1024:
            h.fail(f"a variable declares {n} dimensions")
        ids = [h.count() for _ in range(n)]
        if any(i >= len(dims) for i in ids):
            h.fail("a variable names a dimension that does not exist")
        h.attributes()
        nc_type = h.u32()
        if nc_type not in _TYPE_SIZES:
            h.fail(f"unknown variable type {nc_type}")
        h.count()  # vsize: unreliable for large variables, recomputed below
        variables.append((ids, nc_type, h.offset()))
    return numrecs, dims, variables


def netcdf3_data_end(path) -> Tuple[int, int]:
    """(the last byte the header says the data reaches, the file's size) of a netCDF-3 file."""
    path = Path(path)
    with open_regular(path, "input file") as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(min(size, MAX_HEADER_BYTES))
    if len(data) < 8 or data[:3] != b"CDF":
        raise InputError(f"{path} is not a netCDF-3 file")
    numrecs, dims, variables = _parse(data, path)
    record_dim = next((i for i, n in enumerate(dims) if n == 0), None)
    records = [(ids, t, b) for ids, t, b in variables if ids and ids[0] == record_dim]
    end = 0
    for ids, nc_type, begin in variables:
        if ids and ids[0] == record_dim:
            continue
        values = 1
        for i in ids:
            values *= dims[i]
        end = max(end, begin + values * _TYPE_SIZES[nc_type])
    streaming = numrecs == (_STREAMING_64 if data[3] == 5 else _STREAMING)  # record count not written
    if records and numrecs and not streaming:
        sizes = []
        for ids, nc_type, _ in records:
            values = 1
            for i in ids[1:]:
                values *= dims[i]
            sizes.append(values * _TYPE_SIZES[nc_type])
        # one record holds a slab of every record variable, each padded to 4 bytes unless it is the only one
        record_size = sizes[0] if len(sizes) == 1 else sum(s + (4 - s % 4) % 4 for s in sizes)
        for (_, _, begin), one in zip(records, sizes):
            end = max(end, begin + (numrecs - 1) * record_size + one)
    return end, size


def check_netcdf3_complete(path) -> None:
    """Refuse a netCDF-3 file that ends before the data its header declares (cut short in a copy or download)."""
    end, size = netcdf3_data_end(path)
    if end > size:
        raise InputError(f"{path} ends early: its header places data up to byte {end:,} but the file holds "
                         f"{size:,} bytes (cut short in a copy or download?)")
