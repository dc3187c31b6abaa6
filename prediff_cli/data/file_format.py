"""Telling a NetCDF radar file from a plain HDF5 one, by its first bytes and netCDF-4's marks."""
from __future__ import annotations

from pathlib import Path

import h5py

from prediff.errors import InputError
from prediff.io.untrusted import open_regular


def file_format(path: Path, variable: str = "vil") -> str:
    """'netcdf' (netCDF-3, or netCDF-4: HDF5 with netCDF's dimension scales), 'hdf5', or one line of error."""
    with open_regular(path, "input file") as f:
        magic = f.read(4)
    if magic[:3] == b"CDF":
        return "netcdf"
    if not h5py.is_hdf5(path):
        raise InputError(f"{path} is neither HDF5 nor NetCDF; expected a NetCDF file with a (time, y, x) variable "
                         "or an HDF5 file with a 'vil' dataset in SEVIR layout (N,H,W,T) or (T,H,W)")
    try:
        with h5py.File(path, "r") as h5:
            node = h5.get(variable)
            if "_NCProperties" in h5.attrs or (isinstance(node, h5py.Dataset) and "DIMENSION_LIST" in node.attrs):
                return "netcdf"
    except Exception as exc:  # noqa: BLE001 - any library failure on an outside file is "cannot read"
        raise InputError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    return "hdf5"
