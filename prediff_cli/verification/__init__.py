"""Forecast verification: streaming scores (init / accumulate / compute) on the 0–1 VIL scale."""
