"""Checkpoints: nested training state in one ``.npz`` file, written atomically.

Arrays (NumPy, CuPy, gpugrad tensors) become npz entries named by their path in the nested
state (``model/0.weight``, ``optimizer/state/0/exp_avg``); everything else (numbers, strings,
RNG states, metrics) goes into one JSON document stored as the entry ``__meta__``, in which
each array is a placeholder naming its entry (a gpugrad Tensor's placeholder also records
``requires_grad``). Loading gives NumPy arrays whatever device saved them; ``gg.load`` (see
``gpugrad/serialization.py``) turns the Tensors' entries back into Tensors.

A save writes a temporary file beside the target, flushes and fsyncs it, renames it over the
target with ``os.replace`` (atomic on POSIX and Windows) and fsyncs the directory, so a crash
at any moment leaves either the old checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

_META = "__meta__"
_ARRAY = "__ndarray__"  # placeholder {"__ndarray__": entry name}
_SCALAR = "__npscalar__"  # NumPy scalars keep their dtype: {"__npscalar__": entry name}
_ITEMS = "__items__"  # a dict with non-string keys: {"__items__": [[key, value], ...]}
_TUPLE = "__tuple__"
_TENSOR = "__tensor__"  # a gpugrad Tensor: {"__tensor__": entry name, "requires_grad": bool}
FORMAT = "gpugrad-checkpoint-1"


def _is_tensor(value) -> bool:
    # Duck-typed: this module sits below the Tensor class in the import layers.
    return hasattr(value, "numpy") and hasattr(value, "device") and hasattr(value, "requires_grad")


def _as_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if _is_tensor(value):
        return value.numpy()  # copied to the host if on a GPU
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        return value.get()  # a CuPy array
    return None


def _claim(path: str, arrays: dict) -> None:
    # Keys containing "/" could otherwise make two arrays share an entry name.
    if path in arrays or path == _META:
        raise ValueError(f"checkpoint: two values map to the entry name {path!r}; rename a key")


def _flatten(value, path: str, arrays: dict):
    """The JSON form of ``value``, moving every array into ``arrays`` under its path."""
    arr = _as_numpy(value)
    if arr is not None:
        if arr.dtype.hasobject:
            raise TypeError(f"checkpoint: {path or 'value'} is an object array; save numbers")
        _claim(path, arrays)
        arrays[path] = arr
        if _is_tensor(value):
            return {_TENSOR: path, "requires_grad": bool(value.requires_grad)}
        return {_ARRAY: path}
    if isinstance(value, np.generic):
        _claim(path, arrays)
        arrays[path] = np.asarray(value)
        return {_SCALAR: path}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _flatten(v, f"{path}/{k}" if path else k, arrays) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(f"checkpoint: key {k!r} under {path or 'top'} is not JSON-able")
            items.append([k, _flatten(v, f"{path}/{k}" if path else str(k), arrays)])
        return {_ITEMS: items}
    if isinstance(value, list | tuple):
        out = [_flatten(v, f"{path}/{i}" if path else str(i), arrays) for i, v in enumerate(value)]
        return {_TUPLE: out} if isinstance(value, tuple) else out
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(
        f"checkpoint: cannot store {path or 'value'} of type {type(value).__name__}; "
        "use arrays, numbers, strings, lists and dicts"
    )


def _unflatten(node, arrays, restore_tensor):
    if isinstance(node, dict):
        if _ARRAY in node:
            return arrays[node[_ARRAY]]
        if _TENSOR in node:
            arr = arrays[node[_TENSOR]]
            return arr if restore_tensor is None else restore_tensor(arr, node["requires_grad"])
        if _SCALAR in node:
            return arrays[node[_SCALAR]][()]
        if _ITEMS in node:
            return {k: _unflatten(v, arrays, restore_tensor) for k, v in node[_ITEMS]}
        if _TUPLE in node:
            return tuple(_unflatten(v, arrays, restore_tensor) for v in node[_TUPLE])
        return {k: _unflatten(v, arrays, restore_tensor) for k, v in node.items()}
    if isinstance(node, list):
        return [_unflatten(v, arrays, restore_tensor) for v in node]
    return node


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Windows cannot open a directory; there the rename is
    # already durable once MoveFileEx returns, so skipping is correct.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(binary_file)`` on a temporary file, then atomically move it to ``path``.

    The temporary file's name starts with ``.`` and ends in ``.tmp``, so nothing looking for
    ``path`` (or globbing ``*.npz``) ever picks up a half-written one.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Save a nested dict of arrays and plain values to one ``.npz`` file, atomically.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> save_checkpoint(p, {"model": {"w": np.ones(2)}, "epoch": 3, "opt": {"state": {0: {}}}})
    >>> load_checkpoint(p)["model"]["w"], load_checkpoint(p)["opt"]["state"]
    (array([1., 1.]), {0: {}})
    """
    if not isinstance(state, dict):
        raise TypeError(f"save_checkpoint: state must be a dict, got {type(state).__name__}")
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "state": _flatten(state, "", arrays)}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(f):
        # Stored, not deflated: parameters barely compress and saving stays I/O-bound.
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, arr in [(_META, blob), *arrays.items()]:
                with z.open(f"{name}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asarray(arr), allow_pickle=False)

    atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike, restore_tensor=None) -> dict:
    """Load what ``save_checkpoint`` wrote; arrays come back as NumPy arrays.

    ``restore_tensor(array, requires_grad)``, when given, builds the value of each entry that
    was saved from a Tensor (``gg.load`` makes Tensors again); by default they are arrays too.
    """
    path = Path(path)
    try:
        # Open the file ourselves: np.load leaks its handle when the zip directory is corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            entries = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e})") from None
    if _META not in entries:
        raise ValueError(f"{path}: not a gpugrad checkpoint (no {_META} entry)")
    try:
        meta = json.loads(entries.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    try:
        return _unflatten(meta["state"], entries, restore_tensor)
    except KeyError as e:
        raise ValueError(f"{path}: corrupt checkpoint: entry {e} is missing") from None
