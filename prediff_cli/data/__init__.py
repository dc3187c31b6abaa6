"""Data: the SEVIR-LR catalog and dataset, batching, synthetic data, downloads and forecast inputs."""
from .batches import EpochBatches, augment, iterate_batches
from .catalog import EventRecord, read_catalog
from .sevir import SequenceSet, SevirLR, open_dataset

__all__ = ["EpochBatches", "EventRecord", "SequenceSet", "SevirLR", "augment", "iterate_batches", "open_dataset",
           "read_catalog"]
