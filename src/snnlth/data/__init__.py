"""Datasets: on-disk parsers, a registry, device-resident batches and batched augmentation."""

from snnlth.data.catalog import DATASETS, DatasetSpec
from snnlth.data.loader import DataBundle, eval_batches, load_data, stratified_subset, train_batches
from snnlth.data.source import DataSource, TorchSource

__all__ = ["DATASETS", "DataBundle", "DataSource", "DatasetSpec", "TorchSource", "eval_batches", "load_data",
           "stratified_subset", "train_batches"]
