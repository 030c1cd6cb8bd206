"""Datasets, the IDX reader and the DataLoader."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from gpugrad.data import (
    ArrayDataset,
    DataLoader,
    IDXError,
    load_dataset,
    load_mnist_like,
    read_idx,
    write_idx,
)


def _toy(n=10, d=3):
    x = np.arange(n * d, dtype=np.float32).reshape(n, d)
    return x, np.arange(n, dtype=np.int64)


# ----------------------------------------------------------------------------- DataLoader


@pytest.mark.parametrize(
    "n, batch, drop_last, sizes",
    [(10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]), (3, 5, False, [3])],
)
def test_loader_batch_sizes_and_len(n, batch, drop_last, sizes):
    loader = DataLoader(_toy(n), batch_size=batch, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(y) for _, y in loader] == sizes


def test_loader_without_shuffle_yields_the_data_in_order_as_tensors():
    x, y = _toy(10)
    batches = list(DataLoader((x, y), batch_size=4))
    xb, yb = batches[0]
    assert xb.device == "cpu" and xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b, _ in batches]), x)
    np.testing.assert_array_equal(np.concatenate([t.numpy() for _, t in batches]), y)


def test_loader_shuffle_visits_every_sample_once_and_keeps_pairs_together():
    x, y = _toy(50)
    loader = DataLoader((x, y), batch_size=8, shuffle=True, seed=3)
    xs, ys = zip(*[(b.numpy(), t.numpy()) for b, t in loader], strict=True)
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    assert sorted(ys.tolist()) == list(range(50))
    assert not np.array_equal(ys, np.arange(50))
    np.testing.assert_array_equal(xs, x[ys])


def test_loader_shuffle_depends_only_on_seed_and_epoch():
    def labels(loader):
        return np.concatenate([t.numpy() for _, t in loader])

    a = DataLoader(_toy(40), batch_size=7, shuffle=True, seed=11)
    epoch0, epoch1 = labels(a), labels(a)  # iterating advances the epoch
    assert not np.array_equal(epoch0, epoch1)
    b = DataLoader(_toy(40), batch_size=7, shuffle=True, seed=11)
    b.set_epoch(1)
    np.testing.assert_array_equal(labels(b), epoch1)
    c = DataLoader(_toy(40), batch_size=7, shuffle=True, seed=12)
    assert not np.array_equal(labels(c), epoch0)


def test_loader_state_dict_restores_the_next_epoch_order():
    a = DataLoader(_toy(30), batch_size=5, shuffle=True)  # seed drawn at random
    list(a)
    b = DataLoader(_toy(30), batch_size=5, shuffle=True)
    b.load_state_dict(a.state_dict())
    assert [t.tolist() for _, t in a] == [t.tolist() for _, t in b]


def test_loader_iter_from_resumes_inside_an_epoch():
    loader = DataLoader(_toy(30), batch_size=4, shuffle=True, seed=5)
    full = [t.tolist() for _, t in loader]
    loader.set_epoch(0)
    assert [t.tolist() for _, t in loader.iter_from(3)] == full[3:]


def test_loader_puts_batches_on_its_device(device):
    loader = DataLoader(_toy(10), batch_size=4, shuffle=True, seed=0, device=device)
    xb, yb = next(iter(loader))
    assert xb.device.split(":")[0] == device and yb.device == xb.device
    assert xb.shape == (4, 3) and yb.dtype == np.int64


def test_loader_rejects_mismatched_arrays_and_bad_batch_size():
    x, y = _toy(10)
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        DataLoader((x, y[:9]))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((x, y), batch_size=0)


# ----------------------------------------------------------------------------- datasets


def test_digits_has_1797_images_scaled_to_unit_range_with_ten_classes():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    assert 0.19 < len(test) / 1797 < 0.21
    for ds in (train, test):
        assert ds.x.shape[1:] == (64,) and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0
        assert ds.image_shape == (8, 8) and ds.num_classes == 10
    assert set(np.unique(train.y)) == set(range(10))


def test_digits_split_is_deterministic_and_disjoint():
    a, b = load_dataset("digits", "train"), load_dataset("digits", "train")
    np.testing.assert_array_equal(a.x, b.x)
    test = load_dataset("digits", "test")
    rows = {r.tobytes() for r in a.x}
    # Digits has a few duplicate images, so compare counts rather than demand zero overlap.
    assert sum(r.tobytes() in rows for r in test.x) < 10


@pytest.mark.parametrize("name, classes", [("spirals", 3), ("moons", 2)])
def test_synthetic_sets_are_seeded_2d_classification_data(name, classes):
    a, b = load_dataset(name, "train"), load_dataset(name, "train")
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape[1] == 2 and a.num_classes == classes
    assert set(np.unique(a.y)) == set(range(classes))


def test_array_dataset_split_is_disjoint_and_covers_everything():
    ds = ArrayDataset(*_toy(20))
    a, b = ds.split(0.25)
    assert len(a) == 15 and len(b) == 5
    assert sorted(np.concatenate([a.y, b.y]).tolist()) == list(range(20))


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", "validation")


# ----------------------------------------------------------------------------- IDX files


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX bytes built by hand from the format description, independent of write_idx."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_reads_uint8_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    for name, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
        raw = _idx_bytes(arr)
        path = tmp_path / (name + (".gz" if compress else ""))
        path.write_bytes(gzip.compress(raw) if compress else raw)
        out = read_idx(path)
        assert out.dtype == np.uint8 and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_read_idx_decodes_big_endian_multibyte_types(tmp_path):
    values = np.array([[1.5, -2.25], [1e6, -0.0]], dtype=np.float32)
    path = tmp_path / "f.idx"
    path.write_bytes(_idx_bytes(values, code=0x0D))
    out = read_idx(path)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float64])
def test_write_idx_round_trips(tmp_path, suffix, dtype):
    sign = 1 if dtype == np.uint8 else -1  # negative values check the signed types
    arr = (sign * np.arange(24).reshape(2, 3, 4)).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_truncated_idx_file_names_path_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((60, 28, 28), np.uint8))[: 16 + 1000])
    with pytest.raises(IDXError) as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg
    assert "60x28x28" in msg and "47040 bytes" in msg and "file has 1000" in msg


def test_truncated_header_and_trailing_bytes_are_errors(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(IDXError, match="truncated header"):
        read_idx(path)
    path.write_bytes(_idx_bytes(np.zeros(4, np.uint8)) + b"extra")
    with pytest.raises(IDXError, match="trailing data"):
        read_idx(path)


def test_wrong_magic_and_unknown_dtype_code_are_errors(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    with pytest.raises(IDXError, match="bad magic number 0x89504e47") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 0]))
    with pytest.raises(IDXError, match="unknown IDX dtype code 0x42"):
        read_idx(path)


def test_corrupt_gzip_and_missing_file_name_the_path(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(IDXError, match="corrupt gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    missing = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_idx(missing)


# ----------------------------------------------------------------------------- MNIST layout


def _write_mnist(folder, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        (folder / f"{prefix}-images-idx3-ubyte{suffix}").write_bytes(
            gzip.compress(_idx_bytes(images)) if gz else _idx_bytes(images)
        )
        (folder / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(
            gzip.compress(_idx_bytes(labels)) if gz else _idx_bytes(labels)
        )
        out[prefix] = images, labels
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loads_from_idx_files_scaled_and_flattened(tmp_path, gz):
    raw = _write_mnist(tmp_path / "fashion-mnist", gz=gz)
    ds = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    images, labels = raw["t10k"]
    assert ds.x.shape == (4, 784) and ds.x.dtype == np.float32 and ds.image_shape == (28, 28)
    np.testing.assert_allclose(ds.x, images.reshape(4, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, labels)


def test_mnist_loads_from_a_keras_style_npz(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = np.arange(5, dtype=np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    ds = load_dataset("mnist", "train", data_dir=path)
    assert ds.x.shape == (5, 784) and ds.y.tolist() == [0, 1, 2, 3, 4]
    assert len(load_dataset("mnist", "test", data_dir=tmp_path)) == 2  # found as mnist.npz
    np.savez(path, images=x)
    with pytest.raises(ValueError, match="x_train, y_train, x_test, y_test") as err:
        load_dataset("mnist", "train", data_dir=path)
    assert str(path) in str(err.value)


def test_missing_mnist_names_the_folders_searched(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mnist_like("mnist", "train", tmp_path)
    assert str(tmp_path) in str(err.value) and "train-images-idx3-ubyte" in str(err.value)


def test_half_an_mnist_pair_says_which_file_is_missing(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def test_mismatched_image_and_label_counts_are_an_error(tmp_path):
    _write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"\(6, 28, 28\) and \(5,\)"):
        load_dataset("mnist", "train", data_dir=tmp_path)
