"""Datasets and a DataLoader: ``from gpugrad.data import DataLoader, load_dataset``."""

from .datasets import (
    DATASETS,
    ArrayDataset,
    default_data_dir,
    load_dataset,
    load_digits,
    load_mnist_like,
    make_moons,
    make_spirals,
)
from .idx import IDXError, parse_idx, read_idx, write_idx
from .loader import DataLoader

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataLoader",
    "IDXError",
    "default_data_dir",
    "load_dataset",
    "load_digits",
    "load_mnist_like",
    "make_moons",
    "make_spirals",
    "parse_idx",
    "read_idx",
    "write_idx",
]
