"""Helpers for tfhash's tests (shipped with the package, as keras-hub ships its harness)."""

from tfhash.evaluation import mean_average_precision


def random_code_map(data, bits, seed=0):
    """mAP@all of uniformly random {0, 1} codes on `data` (query against database, label ground truth):
    the floor a trained model must clear by a clear margin."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return mean_average_precision(
        rng.integers(0, 2, (len(data.query), bits)),
        rng.integers(0, 2, (len(data.database), bits)),
        data.query.labels,
        data.database.labels,
    )


def query_map(model, data, k=None):
    """mAP@k (None: @all) of `model`'s codes, `data.query` against `data.database`, label ground truth."""
    return mean_average_precision(
        model.encode(data.query.features),
        model.encode(data.database.features),
        data.query.labels,
        data.database.labels,
        k=k,
    )


def assert_export_round_trip(model, features, folder):
    """Exports `model` to `folder`, loads the SavedModel with TensorFlow alone and asserts that its
    `serving_default` signature gives the same uint8 codes as `model.encode(features)`."""
    import numpy as np
    import tensorflow as tf

    from tfhash.export import export_encoder

    loaded = tf.saved_model.load(str(export_encoder(model, folder)))
    codes = loaded.signatures["serving_default"](features=tf.constant(features, tf.float32))["codes"].numpy()
    expected = model.encode(features)
    assert codes.dtype == np.uint8 and np.array_equal(codes, expected), (codes, expected)
    return codes


def write_legacy_torch_file(path, state, layout="contiguous", views=None):
    """Writes `state` (name -> NumPy array, or any picklable object) as torch.save's legacy format does,
    without torch: the five pickles, then each storage's element count and bytes.

    `layout="channels_last"` stores 4-D arrays in (N, H, W, C) order with the matching strides,
    as some real files do, so that a reader must honour the strides. Other objects are pickled as
    they are (a test of a reader's refusal can put a dangerous one in). `views` maps a name to
    the (size, stride) its array's flat storage is declared with instead (a test of a reader's
    bounds checks can declare an impossible one).
    """
    import collections
    import pickle
    import struct
    import sys
    import types

    import numpy as np

    storage_names = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in storage_names.values():
        setattr(fake_torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))

    def _rebuild_tensor_v2(*args):  # never called: only its name goes into the pickle
        raise NotImplementedError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    fake_torch._utils = fake_utils

    storages = []  # (key, bytes, numel)

    class StorageRef:
        def __init__(self, key, kind, numel):
            self.key, self.kind, self.numel = key, kind, numel

    class Tensor:
        def __init__(self, name, array):
            array = np.asarray(array)
            perm = (0, 2, 3, 1) if layout == "channels_last" and array.ndim == 4 else tuple(range(array.ndim))
            buffer = np.ascontiguousarray(array.transpose(perm))
            stride = [0] * array.ndim
            for j, axis in enumerate(perm):
                stride[axis] = int(np.prod(buffer.shape[j + 1 :], dtype=np.int64))
            key = str(1000 + len(storages))
            storages.append((key, buffer.astype(buffer.dtype.newbyteorder("<")).tobytes(), buffer.size))
            kind = getattr(fake_torch, storage_names[array.dtype])
            shape, stride = (views or {}).get(name, (array.shape, tuple(stride)))
            self.args = (StorageRef(key, kind, buffer.size), 0, tuple(shape), tuple(stride), False)

        def __reduce__(self):
            return _rebuild_tensor_v2, (*self.args, collections.OrderedDict())

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                return ("storage", obj.kind, obj.key, "cpu", obj.numel, None)
            return None

    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        objects = collections.OrderedDict(
            (name, Tensor(name, value) if isinstance(value, np.ndarray) else value)
            for name, value in state.items()
        )
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, f, protocol=2)
            Writer(f, protocol=2).dump(objects)
            pickle.dump([key for key, _, _ in storages], f, protocol=2)
            for _, raw, numel in storages:
                f.write(struct.pack("<q", numel))
                f.write(raw)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path


def claiming_npz(path, shapes):
    """Writes an npz whose .npy headers claim `shapes` (float32) while holding a few bytes each: what
    a zip of zeros looks like to a reader that trusts the headers. Returns `path`."""
    import io
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w") as archive:
        for name, shape in shapes.items():
            member = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": shape}
            )
            archive.writestr(f"{name}.npy", member.getvalue() + b"\0" * 64)
    return path


class DoublingEncoder:
    """An encoder for pipeline tests (`tfhash.beam`): rows * 2, except that a batch whose first
    row equals `fail_at` (ones in column 0 mark row numbers) raises a ValueError, as a broken
    worker would."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at

    def encode(self, rows):
        import numpy as np

        if self.fail_at is not None and len(rows) and rows[0, 0] == self.fail_at:
            raise ValueError(f"planted failure at row {self.fail_at}")
        return np.asarray(rows) * 2


def rows_shard(start, stop, out, ids):
    """The arrays of one shard of a `DoublingEncoder` job: its outputs and ids."""
    return {"out": out, "ids": ids}
