"""Datasets as plain arrays: features ``x`` (N, D) float32 and labels ``y`` (N,) int64.

``load_dataset(name, split)`` serves the vendored 8x8 ``digits``, ``mnist`` and
``fashion-mnist`` from local IDX or ``.npz`` files, and the seeded synthetic ``spirals`` and
``moons``. Nothing is downloaded: a missing file is an error that says where it was looked for.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .idx import read_idx

DATASETS = ("digits", "mnist", "fashion-mnist", "spirals", "moons")
SPLITS = ("train", "test")
_DIGITS = Path(__file__).with_name("digits.csv.gz")
# Fixed so that the test split of digits and of the synthetic sets never moves between runs,
# whatever --seed a training run uses.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


@dataclass
class ArrayDataset:
    """Features ``x`` (N, ...) and integer labels ``y`` (N,); ``ds[idx]`` indexes both."""

    x: np.ndarray
    y: np.ndarray
    name: str = ""
    num_classes: int = field(default=0)
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.x, self.y = np.asarray(self.x), np.asarray(self.y)
        if self.x.shape[:1] != self.y.shape or self.y.ndim != 1:
            raise ValueError(
                f"ArrayDataset {self.name!r}: x {self.x.shape} and y {self.y.shape} need the "
                "same first dimension and y must be 1-D"
            )
        if self.num_classes == 0 and self.y.size:
            self.num_classes = int(self.y.max()) + 1

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    @property
    def num_features(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    def split(self, fraction: float, seed: int = _SPLIT_SEED) -> tuple[ArrayDataset, ArrayDataset]:
        """Two disjoint datasets, the second holding ``fraction`` of the samples (shuffled)."""
        if not 0 < fraction < 1:
            raise ValueError(f"split: fraction must lie in (0, 1), got {fraction}")
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - max(1, round(fraction * len(self)))
        a, b = np.sort(order[:cut]), np.sort(order[cut:])
        return self._subset(a), self._subset(b)

    def _subset(self, index) -> ArrayDataset:
        return ArrayDataset(
            self.x[index], self.y[index], self.name, self.num_classes, self.image_shape
        )


def _train_test(x, y, split, **kw) -> ArrayDataset:
    train, test = ArrayDataset(x, y, **kw).split(_TEST_FRACTION, _SPLIT_SEED)
    return train if split == "train" else test


def load_digits(split: str = "train") -> ArrayDataset:
    """The 1,797 8x8 digits bundled with gpugrad, pixels scaled to [0, 1], split 80/20."""
    try:
        with gzip.open(_DIGITS, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{_DIGITS}: the bundled digits data is missing; reinstall gpugrad"
        ) from None
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise ValueError(f"{_DIGITS}: corrupt digits data ({e})") from None
    if table.ndim != 2 or table.shape[1] != 65:
        raise ValueError(f"{_DIGITS}: expected rows of 64 pixels + 1 label, got {table.shape}")
    x = (table[:, :64] / 16.0).astype(np.float32)
    y = table[:, 64].astype(np.int64)
    return _train_test(x, y, split, name="digits", num_classes=10, image_shape=(8, 8))


def make_spirals(n: int = 1500, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """``classes`` interleaved spiral arms in the plane, n // classes points each."""
    rng = np.random.default_rng(seed)
    per = n // classes
    r = np.tile(np.linspace(0.05, 1.0, per), classes)
    label = np.repeat(np.arange(classes), per)
    theta = label * 4.0 + r * 4.0 + rng.normal(0.0, noise, per * classes)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return x.astype(np.float32), label.astype(np.int64)


def make_moons(n: int = 1000, noise: float = 0.15, seed: int = 0):
    """Two interleaving half circles with Gaussian noise, n // 2 points each."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t = np.linspace(0.0, np.pi, half)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, (2 * half, 2))
    y = np.repeat(np.arange(2), half)
    return x.astype(np.float32), y.astype(np.int64)


# ----------------------------------------------------------------------------- MNIST family

_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Folder names other tools use, so an existing download can be pointed at as it is.
_SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
}


def default_data_dir() -> Path:
    return Path(os.environ.get("GPUGRAD_DATA", "data")).expanduser()


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_npz(path: Path, split: str):
    keys = (f"x_{split}", f"y_{split}")
    try:
        # Open the file ourselves: np.load leaks its handle when the zip directory is corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            files = sorted(z.files)
            arrays = [z[k] for k in keys if k in files]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    if len(arrays) != 2:
        raise ValueError(
            f"{path}: needs arrays x_train, y_train, x_test, y_test (the Keras layout), "
            f"found {files}"
        )
    return arrays


def load_mnist_like(name: str, split: str = "train", data_dir=None) -> ArrayDataset:
    """MNIST or Fashion-MNIST from IDX files (plain or .gz) or a Keras-style ``.npz``.

    ``data_dir`` may be the ``.npz`` itself or a folder holding the four IDX files, directly
    or in a subfolder named after the dataset (also torchvision's ``MNIST/raw`` layout).
    """
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.suffix == ".npz":
        x, y = _load_npz(root, split)
        source = root
    else:
        folders = [root] + [root / sub for sub in _SUBDIRS[name]]
        npz = next((f / f"{name}.npz" for f in folders if (f / f"{name}.npz").is_file()), None)
        stems = _IDX_NAMES[split]
        found = None
        for folder in folders:
            images, labels = (_find(folder, s) for s in stems)
            if images and labels:
                found = (images, labels)
                break
            if images or labels:  # half a pair is a broken download: say which half
                missing = stems[1] if images else stems[0]
                raise FileNotFoundError(f"{folder / missing}[.gz]: missing (its pair is there)")
        if found is None and npz is None:
            tried = ", ".join(str(f) for f in folders)
            raise FileNotFoundError(
                f"{name}: no {stems[0]}[.gz] / {stems[1]}[.gz] or {name}.npz in {tried}; "
                f"download the four IDX files into one of them or pass --data-dir PATH "
                "(a folder or an .npz file)"
            )
        if found is not None:
            x, y = read_idx(found[0]), read_idx(found[1])
            source = found[0]
        else:
            x, y = _load_npz(npz, split)
            source = npz
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{source}: expected images (N, H, W) and labels (N,), got {x.shape} and {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{source}: labels must lie in 0..9, found {y.min()}..{y.max()}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    features = (x.reshape(len(x), -1) / scale).astype(np.float32)
    return ArrayDataset(
        features, y.astype(np.int64), name, num_classes=10, image_shape=tuple(x.shape[1:])
    )


def load_dataset(name: str, split: str = "train", data_dir=None) -> ArrayDataset:
    """One split ("train" or "test") of a named dataset, features flattened to (N, D).

    >>> ds = load_dataset("digits", "test")
    >>> ds.x.shape, ds.x.dtype, ds.num_classes
    ((359, 64), dtype('float32'), 10)
    """
    if split not in SPLITS:
        raise ValueError(f"load_dataset: split must be one of {SPLITS}, got {split!r}")
    if name == "digits":
        return load_digits(split)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist_like(name, split, data_dir)
    if name == "spirals":
        return _train_test(*make_spirals(), split, name="spirals", num_classes=3)
    if name == "moons":
        return _train_test(*make_moons(), split, name="moons", num_classes=2)
    raise ValueError(f"load_dataset: unknown dataset {name!r}; choose from {DATASETS}")
