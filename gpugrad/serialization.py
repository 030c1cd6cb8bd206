"""``gg.save`` and ``gg.load``: tensors, state dicts and optimizer state on disk, without pickle.

Two formats, chosen by the file name when saving and recognised by their first bytes when
loading:

- ``.safetensors``: a flat mapping of names to arrays (a model's ``state_dict()``) or one
  tensor. gpugrad's parameter names are PyTorch's (``0.weight``, ``0.bias``, ... for a
  ``Sequential``/``MLP``, weights stored (out_features, in_features)), so the file loads into
  ``torch.nn.Sequential`` with ``safetensors.torch.load_file`` and back. Optional string
  ``metadata`` goes into the header.
- any other name: gpugrad's ``.npz`` container (the format of training checkpoints, see
  ``gpugrad/checkpoint.py``) for nested dicts, lists, tuples, numbers, strings, arrays and
  tensors, such as ``optimizer.state_dict()``.

What was saved comes back: a Tensor as a Tensor (on ``device``, with its ``requires_grad``), a
NumPy array as a NumPy array. Loading reads arrays and JSON only, never pickles, so a file from
someone else cannot run code; a truncated or foreign file is an error naming it.

>>> import os, tempfile
>>> import gpugrad as gg
>>> from gpugrad import nn, optim
>>> folder = tempfile.mkdtemp()
>>> model = nn.MLP([4, 8, 3])
>>> gg.save(model.state_dict(), os.path.join(folder, "model.safetensors"))
>>> model.load_state_dict(gg.load(os.path.join(folder, "model.safetensors")))
LoadResult(missing_keys=[], unexpected_keys=[])
>>> opt = optim.Adam(model.parameters())
>>> gg.save(opt.state_dict(), os.path.join(folder, "adam.npz"))
>>> opt.load_state_dict(gg.load(os.path.join(folder, "adam.npz")))
>>> gg.load(os.path.join(folder, "adam.npz"))["param_groups"][0]["lr"]
0.001
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .tensor import Tensor

SAFETENSORS_SUFFIX = ".safetensors"
# Marks a container (or a .safetensors file) that holds one value rather than a mapping.
_WRAPPED = "gpugrad.save"
_TENSOR_KEY = "tensor"  # the entry name of a single tensor saved to .safetensors


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:  # a dependency of gpugrad: only a broken install lacks it
        raise ImportError(
            f"gpugrad: .safetensors files need the safetensors package ({e}); "
            "pip install safetensors (a dependency of gpugrad: reinstall gpugrad)"
        ) from e
    return safetensors.numpy


def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        return value.get()  # a CuPy array
    raise TypeError(
        f"gg.save: a .safetensors file holds arrays only, but {name!r} is a "
        f"{type(value).__name__}; save nested state (an optimizer's state_dict) to a .npz path"
    )


def _save_safetensors(obj, path: Path, metadata: dict | None) -> None:
    header = {str(k): str(v) for k, v in (metadata or {}).items()}
    if isinstance(obj, Tensor):
        arrays = {_TENSOR_KEY: obj.numpy()}
        header[_WRAPPED] = json.dumps({"type": "tensor", "requires_grad": obj.requires_grad})
    elif isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise TypeError(f"gg.save: .safetensors names must be strings, got {bad[0]!r}")
        arrays = {k: _as_array(v, k) for k, v in obj.items()}
    else:
        raise TypeError(
            f"gg.save: a .safetensors file holds a tensor or a dict of arrays (a state_dict), "
            f"not a {type(obj).__name__}; use a .npz path for other values"
        )
    for name, arr in arrays.items():
        if arr.dtype.hasobject or arr.dtype.kind in "USV":
            raise TypeError(f"gg.save: {name!r} has dtype {arr.dtype}; safetensors stores numbers")
    # ascontiguousarray makes a 0-d array 1-d (BatchNorm's num_batches_tracked): reshape back.
    arrays = {k: np.ascontiguousarray(v).reshape(v.shape) for k, v in arrays.items()}
    blob = _safetensors_numpy().save(arrays, metadata=header or None)
    atomic_write(path, lambda f: f.write(blob))


def save(obj, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``obj`` to ``path`` atomically (a crash leaves the old file or the new one).

    ``path`` ending in ``.safetensors``: ``obj`` is a tensor or a dict of arrays/tensors (a
    ``state_dict()``), and ``metadata`` (str -> str) is stored in the header. Any other path:
    gpugrad's ``.npz`` container, for any nesting of dicts, lists, tuples, numbers, strings,
    arrays and tensors (``metadata`` is refused there: put it in ``obj``).
    """
    path = Path(path)
    if path.name.endswith(SAFETENSORS_SUFFIX):
        _save_safetensors(obj, path, metadata)
        return
    if metadata is not None:
        raise TypeError(
            f"gg.save: metadata is stored in .safetensors headers only; {path.name} is a .npz "
            "container, which holds any values: put them in the object you save"
        )
    save_checkpoint(path, {_WRAPPED: obj})


def _read_header(data: bytes, path: Path) -> dict:
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError(
            f"{path}: truncated .safetensors file (its header claims {size} bytes, the file has "
            f"{len(data)})"
        )
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt .safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt .safetensors header (not a JSON object)")
    return header


def _load_safetensors(data: bytes, path: Path, device: str):
    header = _read_header(data, path)
    module = _safetensors_numpy()
    try:
        arrays = module.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError for every defect
        raise ValueError(f"{path}: corrupt or truncated .safetensors file ({e})") from None
    # safetensors hands out read-only views of the file's bytes; give the caller its own arrays.
    arrays = {k: np.array(v) for k, v in arrays.items()}
    wrapped = (header.get("__metadata__") or {}).get(_WRAPPED)
    if wrapped is not None and json.loads(wrapped).get("type") == "tensor":
        info = json.loads(wrapped)
        return Tensor(arrays[_TENSOR_KEY], device=device, requires_grad=info["requires_grad"])
    return arrays


def _kind(head: bytes) -> str | None:
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return None


def load(path: str | os.PathLike, device: str = "cpu"):
    """Read what ``save`` wrote (or any ``.safetensors`` file); tensors are made on ``device``.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that is
    truncated, corrupt or of another format (PyTorch's ``torch.save`` pickles are refused:
    save a state dict with ``safetensors.torch.save_file`` instead).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: is a folder; give the file to load") from None
    kind = _kind(data[:9])
    if kind == "safetensors":
        return _load_safetensors(data, path, device)
    if kind is None:
        raise ValueError(
            f"{path}: not a file gg.save writes (neither .safetensors nor gpugrad's .npz "
            "container); gpugrad never unpickles files, so PyTorch's torch.save files cannot "
            "be loaded: save the state dict with safetensors instead"
        )
    try:
        state = load_checkpoint(
            path, restore_tensor=lambda arr, grad: Tensor(arr, device=device, requires_grad=grad)
        )
    except ValueError as e:
        if "not a gpugrad checkpoint" in str(e):
            raise ValueError(
                f"{path}: a zip archive without gpugrad's __meta__ entry, so not a file gg.save "
                "wrote (PyTorch's torch.save files are zipped pickles, which gpugrad never "
                "loads: save the state dict with safetensors instead)"
            ) from None
        raise
    # Training checkpoints are containers too: they load as the dict they are.
    return state[_WRAPPED] if set(state) == {_WRAPPED} else state


def load_metadata(path: str | os.PathLike) -> dict:
    """The string metadata in a ``.safetensors`` file's header ({} when it has none)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or _kind(head + f.read(1)) != "safetensors":
                raise ValueError(f"{path}: not a .safetensors file")
            f.seek(0)
            size = int.from_bytes(head, "little")
            data = f.read(8 + size)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    metadata = _read_header(data, path).get("__metadata__") or {}
    return {k: v for k, v in metadata.items() if k != _WRAPPED}
