"""Command-line layer: one small module per command; only this layer prints.

Imports: the command modules here (`prediff/cli/*.py`) import the pipeline that does a command's work inside the
command function (or the helper it calls), so that `prediff --help`, `prediff info` and every command's argument
parsing start without loading MindSpore, netCDF4, matplotlib, scipy, xarray or the networks
(tests/project/test_imports.py checks this). Every other module imports at module top. The exceptions say why where they
stand: `prediff` and `prediff_models` load their public names on first use (`__getattr__`), so that importing
either stays cheap, and PyTorch, an optional dependency, is imported only to read the tar archives of PyTorch < 0.4.
"""
