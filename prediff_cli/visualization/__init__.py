"""Pictures of forecasts: the SEVIR VIL colormap, animated GIFs and PNG summary grids."""
