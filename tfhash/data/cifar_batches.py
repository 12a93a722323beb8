"""The CIFAR-10 python batches (`cifar-10-batches-py/data_batch_1` ...) read without running them.

Each batch is a pickle of a dict: `data` (an (n, 3072) uint8 NumPy array),
`labels` (a list of ints) and two entries we ignore (`batch_label`,
`filenames`). A pickle can call any importable function, so the standard
unpickler would run whatever a crafted file names. This reader's unpickler
knows only the names a NumPy array's pickle uses (and the latin-1 encoding of
Python 3's protocol-2 bytes) and never builds a
NumPy object from the pickle's instructions: it records what `_reconstruct`,
`dtype` and the array's state were given, and after the pickle has ended it
checks those records and makes the array from the raw bytes itself. Any
other name is refused before anything is called, with a ValueError naming
the file.
"""

import io
import pickle
import typing

import numpy as np

from tfhash.pickle_bounds import check_pickle

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
# element types an array in a batch may have (data is uint8; labels saved as arrays are integers)
_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "b1"}


class _NdarrayName(typing.NamedTuple):
    """Stands in for the class numpy.ndarray (the first argument of `_reconstruct`)."""


class _DtypeRecord:
    """What `numpy.dtype(spec, align, copy)` was called with and the BUILD state it was given."""

    __slots__ = ("spec", "state")

    def __init__(self, spec, *unused):
        if not isinstance(spec, str | bytes):
            raise ValueError(f"an array element type given as {type(spec).__name__}")
        self.spec = spec.decode("ascii") if isinstance(spec, bytes) else spec
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def dtype(self):
        if self.spec not in _DTYPES:
            raise ValueError(f"an array of element type {self.spec!r} (a batch holds integers)")
        order = "|"
        if isinstance(self.state, tuple) and len(self.state) > 1:
            order = self.state[1].decode("ascii") if isinstance(self.state[1], bytes) else self.state[1]
        if order not in ("<", ">", "|", "="):
            raise ValueError(f"an array with byte order {order!r}")
        return np.dtype(self.spec).newbyteorder(order if order != "|" else "=")


class _ArrayRecord:
    """An array's pickle, recorded: `_reconstruct` makes one, BUILD gives it its state
    (version, shape, dtype, fortran order, raw bytes); `array()` checks and builds it."""

    __slots__ = ("state",)

    def __init__(self):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def array(self):
        state = self.state
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("an array without its state")
        shape, dtype, fortran, raw = state[-4:]
        return _from_bytes(raw, dtype, shape, "F" if fortran else "C")


class _BufferRecord(typing.NamedTuple):
    """What numpy's protocol-5 `_frombuffer(buffer, dtype, shape, order)` was called with."""

    raw: object
    dtype: object
    shape: object
    order: object

    def array(self):
        return _from_bytes(self.raw, self.dtype, self.shape, self.order)


def _from_bytes(raw, dtype, shape, order):
    if not isinstance(dtype, _DtypeRecord):
        raise ValueError("an array whose element type is not a dtype")
    dtype = dtype.dtype()
    if not isinstance(raw, bytes | bytearray):
        raise ValueError(f"an array whose data is {type(raw).__name__}, not bytes")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"an array of shape {shape!r}")
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ValueError(f"an array of shape {shape} whose data holds {len(raw)} bytes")
    if order not in ("C", "F"):
        raise ValueError(f"an array of order {order!r}")
    return np.frombuffer(bytes(raw), dtype).reshape(shape, order=order).astype(dtype.newbyteorder("="))


def _encode(text, encoding):
    """`_codecs.encode`, which Python 3's protocol-2 pickles use for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"_codecs.encode of {type(text).__name__} as {encoding!r}")
    return text.encode("latin-1")


def _reconstruct(cls, shape, dtype_code, *unused):
    if not isinstance(cls, _NdarrayName):
        raise ValueError(f"_reconstruct of {type(cls).__name__}, not of numpy.ndarray")
    return _ArrayRecord()


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if (module, name) in _FROMBUFFER:
            return _BufferRecord
        if (module, name) == ("_codecs", "encode"):
            return _encode
        if (module, name) == ("numpy", "ndarray"):
            return _NdarrayName()
        if (module, name) == ("numpy", "dtype"):
            return _DtypeRecord
        raise ValueError(
            f"it names {module}.{name}, which a CIFAR-10 batch does not hold; refusing to load it "
            "(a pickle can run any code it names)"
        )

    def persistent_load(self, pid):
        raise ValueError("it refers to objects outside the file (persistent ids), which a batch does not")


def _arrays(value):
    """`value` with every recorded array made a NumPy array (dicts, lists and tuples walked)."""
    if isinstance(value, _ArrayRecord | _BufferRecord):
        return value.array()
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_arrays(item) for item in value]
    if isinstance(value, _DtypeRecord | _NdarrayName):
        raise ValueError("a bare NumPy type where a batch holds data")
    return value


def read_batch(path):
    """(images (n, 3072) uint8, labels (n,) int64) of one CIFAR-10 python batch file.

    Raises:
        ValueError: naming `path` when it is not a batch: a pickle naming anything but a
            NumPy array's own parts, a damaged or truncated pickle, or a dict without
            `data` (n x 3072 bytes) and `labels` (n class ids 0..9).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        check_pickle(raw)  # depth, memo and size bounded before anything is built
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        if not isinstance(batch, dict):
            raise ValueError(f"it holds a {type(batch).__name__}, not a dict")
        batch = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
        missing = [key for key in ("data", "labels") if key not in batch]
        if missing:
            raise ValueError(f"it has no {' or '.join(missing)} entry")
        images, labels = _arrays(batch["data"]), _arrays(batch["labels"])
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.ndim != 2
            or (images.shape[1] != 3072)
        ):
            raise ValueError("its data is not an (n, 3072) uint8 array")
        if isinstance(labels, list) and not all(type(v) is int for v in labels):
            raise ValueError("its labels are not all integers")
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or (len(labels) and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"it has {labels.size} labels for {len(images)} images")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"its labels run {labels.min()}..{labels.max()}, not 0..9")
    except ValueError as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, MemoryError, RecursionError, UnicodeDecodeError) as error:  # fmt: skip
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a damaged pickle: {error!r})") from None
    return np.ascontiguousarray(images), labels.astype(np.int64)
