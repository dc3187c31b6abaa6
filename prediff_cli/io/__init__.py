"""File formats: checkpoints, official state dicts, the SEVIR grid, CF-NetCDF forecasts, atomic writes."""
