"""Command-line layer: one small module per command; only this layer prints."""
