"""MNIST-format IDX files (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a big-endian header `0x00 0x00 <type> <ndim>`, then `ndim`
uint32 sizes, then the data. A directory holds the four files of MNIST /
Fashion-MNIST (Xiao et al. 2017), each raw or gzipped:
`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`. Debian's `dataset-fashion-mnist` package installs
them to `/usr/share/datasets/fashion-mnist/`.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from epsd_tf.data.arrays import ArraySplits

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of one IDX file into an array of the stored dtype.

    Raises:
        ValueError: bad magic number, unknown type, or size not matching the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{name} is not an IDX file: magic number starts {data[:4].hex()!r}, "
            "expected 0000<type><ndim>")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{name} has unknown IDX type 0x{type_code:02x}; valid: "
            f"{[hex(code) for code in _IDX_DTYPES]}")
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise ValueError(f"{name} has a truncated IDX header (ndim={ndim})")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header_size + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{name} holds {len(data)} bytes but its header (dims {dims}, "
            f"{dtype}) needs {expected}")
    return np.frombuffer(data, dtype, offset=header_size).reshape(dims).astype(
        dtype.newbyteorder("="))


def _find(directory: str, stem: str) -> str:
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"IDX file {stem}[.gz] not found in {directory!r}; the directory needs "
        f"{sorted(FILES.values())} (raw or .gz). For Fashion-MNIST: "
        "`apt-get install dataset-fashion-mnist` (installs to "
        "/usr/share/datasets/fashion-mnist/)")


def read_idx_file(path: str) -> np.ndarray:
    """Reads one IDX file, gunzipping when it starts with the gzip magic."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return parse_idx(data, path)


def load_idx(directory: str) -> ArraySplits:
    """Reads the four IDX files of `directory` into uint8 `ArraySplits`.

    Raises:
        FileNotFoundError: `directory` or one of its files is missing, with how
            to get the data.
        ValueError: malformed files, images not rank 3 `[N, H, W]` uint8, labels
            not rank 1.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"IDX directory {directory!r} not found; it must hold "
            f"{sorted(FILES.values())} (raw or .gz). For Fashion-MNIST: "
            "`apt-get install dataset-fashion-mnist` (installs to "
            "/usr/share/datasets/fashion-mnist/)")
    arrays = {key: read_idx_file(_find(directory, stem)) for key, stem in FILES.items()}
    for key in ("x_train", "x_test"):
        if arrays[key].ndim != 3 or arrays[key].dtype != np.uint8:
            raise ValueError(
                f"{FILES[key]} must hold uint8 images [N, H, W], got "
                f"{arrays[key].dtype} shape {arrays[key].shape}")
    for key in ("y_train", "y_test"):
        if arrays[key].ndim != 1:
            raise ValueError(
                f"{FILES[key]} must hold labels [N], got shape {arrays[key].shape}")
    return ArraySplits(arrays["x_train"], arrays["y_train"],
                       arrays["x_test"], arrays["y_test"])
