"""Pipelines: training, forecasting and evaluation built from config, data, models and io."""
