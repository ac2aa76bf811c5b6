"""Reader and writer for the IDX format used by (Fashion-)MNIST.

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions D
    4*D bytes   the dimensions, uint32 each
    rest        prod(dims) items, row-major

Files may be gzip-compressed; compression is detected from the content, not the name.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

#: IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"IDX file {path!r}: corrupt or truncated gzip stream ({e})") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (plain or gzipped) into a numpy array.

    Args:
      path: the file.

    Returns:
      A writable array with the file's dims and a native-endian dtype, e.g. ``uint8 [N, 28, 28]``
      for an images file or ``uint8 [N]`` for a labels file.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: wrong magic number, unknown dtype code, truncated or over-long data;
        the message names the file.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"IDX file {path!r}: only {len(data)} bytes, too short for the 4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"IDX file {path!r}: bad magic number 0x{data[:4].hex()} (first two bytes must be zero)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(
            f"IDX file {path!r}: unknown dtype code 0x{code:02x} in magic number 0x{data[:4].hex()}; "
            f"known codes: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"IDX file {path!r}: truncated header ({len(data)} bytes, need {header_len} for {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual < expected:
        raise ValueError(
            f"IDX file {path!r}: truncated data, dims {dims} need {expected} bytes but only {actual} present"
        )
    if actual > expected:
        raise ValueError(f"IDX file {path!r}: {actual - expected} unexpected trailing bytes after dims {dims}")
    # bytearray makes the result writable without an extra copy for uint8 data.
    body = bytearray(memoryview(data)[header_len:])
    arr = np.frombuffer(body, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file; gzipped (reproducibly, mtime 0) when ``path`` ends in ``.gz``.

    Args:
      path: output file.
      array: any array whose dtype is one of `IDX_DTYPES` (byte order is converted).
    """
    path = os.fspath(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"cannot write dtype {array.dtype} as IDX; supported: {sorted(map(str, codes))}")
    if array.ndim > 255:
        raise ValueError("IDX supports at most 255 dimensions")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)
