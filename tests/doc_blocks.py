"""The code blocks of the README and docs/, and radar files shaped like the ones they name (shared by
tests/project/test_readme_examples.py and tests/project/test_doc_examples.py)."""
import re
from pathlib import Path

import numpy as np


def blocks(text: str, language: str) -> list:
    """The bodies of the fenced ```language blocks of a Markdown text, in order."""
    return re.findall(rf"```{language}\n(.*?)\n```", text, re.S)


def documents(repo_root: Path) -> list:
    """What users read as documentation: README.md, then docs/*.md by name."""
    return [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]


def python_blocks(repo_root: Path) -> dict:
    """(document relative to the repository, e.g. "docs/grids.md", index of the block in it) → the text of every
    ```python block of the documents."""
    return {(str(document.relative_to(repo_root)), index): block for document in documents(repo_root)
            for index, block in enumerate(blocks(document.read_text(), "python"))}


def event_frames(radar_file: Path, count: int = 13) -> np.ndarray:
    """The first `count` frames (T, H, W) of the first event of a SEVIR-shaped HDF5 file, digital 0-255."""
    import h5py

    with h5py.File(radar_file) as h5:
        return np.moveaxis(h5["vil"][0], -1, 0)[:count].astype(np.float32)


def radar_netcdf(path: Path, radar_file: Path, variable: str, grid=None) -> Path:
    """13 frames of `variable(time, y, x)` in kg m-2 with a CF time coordinate (every 10 minutes from 2019-07-01
    18:00 UTC), from the first event of a SEVIR-shaped radar file; on the map grid `grid` (an `io.grid.Grid` of the
    frames' size: its mapping and x/y coordinates are written) or on none."""
    import netCDF4

    from prediff.vil_scale import digital_to_kg_m2

    frames = event_frames(radar_file)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("time", "y", "x"), frames.shape):
            ds.createDimension(dim, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "minutes since 2019-07-01 18:00:00", "standard_name": "time", "axis": "T"})
        time[:] = np.arange(len(frames)) * 10.0
        vil = ds.createVariable(variable, "f4", ("time", "y", "x"))
        vil.units = "kg m-2"
        vil[:] = digital_to_kg_m2(frames)
        if grid is not None:
            mapping = ds.createVariable(grid.mapping_name, "i4", ())
            mapping.setncatts(grid.mapping_attrs())
            vil.grid_mapping = grid.mapping_name
            for dim, values, attrs in zip(("x", "y"), grid.coordinates(*frames.shape[1:]), grid.coordinate_attrs()):
                coordinate = ds.createVariable(dim, "f8", (dim,))
                coordinate[:] = values
                coordinate.setncatts(attrs)
    return path
