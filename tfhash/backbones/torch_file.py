"""Reads a PyTorch state dict saved in the legacy (non-zip) format, with NumPy only.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, and
everything torch wrote before 1.6) is five pickles in a row, then raw bytes:

1. the magic number 0x1950a86a20f9469cfc6c;
2. the protocol version, 1001;
3. a dict of system information (byte order, type sizes);
4. the object itself; every tensor in it is a call of
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose
   storage is a persistent id ``("storage", torch.FloatStorage, key, location,
   numel, view)``;
5. the list of storage keys, in the order their bytes follow;

then, for each key of that list, an 8-byte little-endian element count and that
many little-endian elements.

A pickle can call any importable function, so this reader never uses the
standard unpickler's class lookup: it accepts exactly the names the format
needs (an OrderedDict, the tensor rebuild function, the storage types) as
inert stand-ins, and refuses every other name with a `ValueError` before
anything is built.
"""

import collections
import io
import operator
import pickle
import typing

import numpy as np

from tfhash.pickle_bounds import check_pickle

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

# The storage classes of the format and the little-endian NumPy type of their elements.
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class RefusedFile(ValueError):
    """The file names something outside the format, or a storage this reader does not handle."""


class StorageType(typing.NamedTuple):
    """Stands in for torch.<X>Storage: only its name (its element type) matters. Immutable, so a
    pickle's BUILD cannot change it after the checks."""

    name: str


class TensorRecord(typing.NamedTuple):
    """What ``_rebuild_tensor_v2`` was called with, checked; made an array once the storages are read."""

    storage: str
    offset: int
    size: tuple
    stride: tuple


def _index(value, what):
    """An int >= 0 from a pickled value (ints only, never floats or strings)."""
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"negative {what} {value}")
    return value


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles the object pickle of a legacy torch file; any name but the format's is refused."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages  # key -> (dtype, numel), filled as persistent ids are met

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor  # a bound method: BUILD cannot set attributes on it
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise RefusedFile(
            f"the file asks for {module}.{name}, which a PyTorch state dict of tensors does not need; "
            "refusing to load it (a pickle can run any code it names). Only state dicts of plain tensors "
            "saved in the legacy format are read."
        )

    @staticmethod
    def rebuild_tensor(storage, offset, size, stride, *unused):
        if not isinstance(storage, str) or not isinstance(size, tuple) or not isinstance(stride, tuple):
            raise ValueError(
                f"a tensor record of unexpected types: {type(storage).__name__}, {size!r}, {stride!r}"
            )
        size = tuple(_index(n, "size") for n in size)
        stride = tuple(_index(s, "stride") for s in stride)
        if len(size) != len(stride):
            raise ValueError(f"size {size} and stride {stride} differ in length")
        return TensorRecord(storage, _index(offset, "offset"), size, stride)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise RefusedFile(f"unexpected persistent id {pid!r}; only tensor storages are read")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, StorageType) or view is not None:
            raise RefusedFile(f"unsupported storage {pid!r} (the oldest format's storage views are not read)")
        key, found = str(key), (np.dtype(STORAGE_DTYPES[storage_type.name]), _index(numel, "element count"))
        if self.storages.setdefault(key, found) != found:
            raise RefusedFile(
                f"storage {key!r} is named with two types or sizes: {self.storages[key]} and {found}"
            )
        return key


def read_torch_state_dict(path):
    """The state dict of a legacy-format PyTorch file as an OrderedDict of name -> NumPy array.

    Args:
        path: a file written by ``torch.save`` in the legacy (non-zip) format.

    Returns:
        OrderedDict mapping each entry's name to a C-contiguous NumPy array of the
        tensor's shape and element type (float32 for FloatStorage, int64 for LongStorage).

    Raises:
        ValueError: for a zip-format file, a file that is not a legacy torch file, a
            truncated file, or one that names anything but the format's classes.
    """
    with open(path, "rb") as file:
        data = file.read()
    if data[:4] == b"PK\x03\x04":
        raise ValueError(
            f"{path} is a zip-format PyTorch file; this reader reads the legacy format only "
            "(re-save it with torch.save(..., _use_new_zipfile_serialization=False))"
        )
    try:
        return _read(path, io.BytesIO(data))
    except RefusedFile as error:
        raise RefusedFile(f"{path}: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as error:
        raise ValueError(f"{path} is not a legacy-format PyTorch file: {error}") from error
    except ValueError as error:
        raise ValueError(f"{path} is not a legacy-format PyTorch file: {error}") from None


def _load(stream, storages):
    """The next pickle of the stream, after `check_pickle` has bounded its depth, memo and size."""
    check_pickle(stream.getbuffer(), stream.tell())
    return RestrictedUnpickler(stream, storages).load()


def _read(path, stream):
    storages = {}
    header = [_load(stream, storages) for _ in range(3)]
    if header[0] != MAGIC or header[1] != PROTOCOL:
        raise ValueError(f"magic {header[0]!r} / protocol {header[1]!r}")
    if isinstance(header[2], dict) and header[2].get("little_endian") is False:
        raise ValueError("the file was written on a big-endian machine")
    state = _load(stream, storages)
    keys = _load(stream, storages)
    if not isinstance(keys, list) or not isinstance(state, dict):
        raise ValueError(
            f"found a {type(state).__name__} and a {type(keys).__name__}, not a state dict and its keys"
        )
    buffers = {}
    for key in keys:
        key = str(key)
        if key not in storages:
            raise ValueError(f"storage {key!r} is listed but no tensor uses it")
        dtype, numel = storages[key]
        count = np.frombuffer(stream.read(8), "<i8") if len(stream.getbuffer()) - stream.tell() >= 8 else []
        if len(count) != 1 or int(count[0]) != numel:
            raise ValueError(
                f"storage {key!r} should hold {numel} elements; the file is truncated or damaged"
            )
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise ValueError(f"the file is truncated (storage {key!r} is incomplete)")
        buffers[key] = np.frombuffer(raw, dtype)
    out, budget = collections.OrderedDict(), 2 * sum(b.nbytes for b in buffers.values()) + (1 << 20)
    for name, record in state.items():
        if not isinstance(record, TensorRecord):
            raise ValueError(f"entry {name!r} is not a tensor")
        if record.storage not in buffers:
            raise ValueError(f"the bytes of entry {name!r} are missing")
        out[name] = tensor_array(buffers[record.storage], record, name)
        budget -= out[name].nbytes
        if budget < 0:  # views that repeat a storage many times over: refuse before memory runs out
            raise RefusedFile(f"the tensors add up to more than twice the file's storage bytes (at {name!r})")
    return out


def tensor_array(buffer, record, name):
    """The tensor a record describes as a contiguous array (strides in elements, as torch keeps them).

    A tensor may not hold more elements than its storage (zero or overlapping strides that
    would blow a small storage up into a huge array are refused)."""
    count = int(np.prod(record.size, dtype=object))
    if count == 0:
        return np.zeros(record.size, buffer.dtype.newbyteorder("="))
    need = record.offset + 1 + sum((n - 1) * s for n, s in zip(record.size, record.stride, strict=True))
    if count > buffer.size or need > buffer.size:
        raise ValueError(f"entry {name!r}: size {record.size} / stride {record.stride} run past its storage")
    view = np.lib.stride_tricks.as_strided(
        buffer[record.offset :],
        shape=record.size,
        strides=[s * buffer.itemsize for s in record.stride],
        writeable=False,
    )
    # a copy in native order (np.ascontiguousarray would make a 0-d tensor 1-d)
    return np.array(view, dtype=buffer.dtype.newbyteorder("="), order="C")
