"""The IDX file format of MNIST and Fashion-MNIST: read and write, plain or gzip-compressed.

Layout (all integers big-endian): two zero bytes, a dtype code, the number of dimensions n,
then n uint32 sizes, then the values in row-major (C) order. ``train-images-idx3-ubyte`` is
(60000, 28, 28) uint8; ``train-labels-idx1-ubyte`` is (60000,) uint8.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

# IDX dtype codes; the multi-byte types are big-endian on disk.
_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """An IDX file that cannot be read; the message names the file and what is wrong."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such IDX file") from None
    # Decide by content, not by name: a renamed .gz (or an already unpacked file still called
    # .gz, as some browsers leave them) must still read.
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise IDXError(f"{path}: corrupt gzip stream ({e})") from None


def parse_idx(raw: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the stored shape, in native byte order."""
    if len(raw) < 4:
        raise IDXError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise IDXError(
            f"{path}: bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes"
        )
    if code not in _CODES:
        known = ", ".join(f"0x{c:02X}" for c in _CODES)
        raise IDXError(f"{path}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, file has {len(raw)}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _CODES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header
    if payload != expected:
        shape = "x".join(str(d) for d in dims) or "scalar"
        what = "truncated" if payload < expected else "trailing data"
        raise IDXError(
            f"{path}: {what}: header says {shape} {dtype.name} = {expected} bytes, "
            f"file has {payload}"
        )
    out = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return out.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a NumPy array.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> write_idx(p, np.arange(3, dtype=np.uint8)); read_idx(p)
    array([0, 1, 2], dtype=uint8)
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as IDX; a path ending in ``.gz`` is gzip-compressed."""
    array = np.asarray(array)
    code = next(
        (c for c, d in _CODES.items() if d.newbyteorder("=") == array.dtype.newbyteorder("=")), None
    )
    if code is None:
        raise TypeError(f"write_idx: IDX cannot store dtype {array.dtype}")
    body = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    body += np.ascontiguousarray(array, dtype=_CODES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(body, mtime=0) if path.suffix == ".gz" else body)
