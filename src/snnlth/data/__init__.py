"""Datasets: on-disk parsers, a registry, device-resident batches and batched augmentation."""

from snnlth.data.catalog import DATASETS, DatasetSpec
from snnlth.data.loader import DataBundle, eval_batches, load_data, stratified_subset, train_batches

__all__ = ["DATASETS", "DataBundle", "DatasetSpec", "eval_batches", "load_data", "stratified_subset", "train_batches"]
