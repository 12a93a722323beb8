"""Where codes come from: the identity of a model, recorded in every codes file and index.

A model's identity is {"method", "bits", "fingerprint"}: the fingerprint is
a SHA-256 (first 16 hex digits) of its weights, so two trainings of one
method differ, and one model has the same fingerprint in memory, in its
export (`export/tfhash.json`, written by `tfhash.export.export_encoder`)
and as a baseline `model.npz`. `tfhash encode` writes it into the codes
file with the data source, split seed and split; `tfhash index` copies it
into the index. `tfhash eval` and `tfhash search` refuse files whose
identities disagree (`check_same_source`), unless told `--allow-mismatch`.
NumPy only.
"""

import hashlib
import json
import os

import numpy as np

EXPORT_INFO = "tfhash.json"


def fingerprint_arrays(arrays):
    """SHA-256 (16 hex digits) of a sequence of arrays: dtype, shape and bytes of each, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(np.asarray(array))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def model_identity(model, method=None):
    """{"method", "bits", "fingerprint"} of an in-memory model (a `HashingModel` or a `Baseline`)."""
    if hasattr(model, "state"):  # a fitted Baseline: its arrays
        arrays = [model.state[k] for k in sorted(model.state)]
        name = method or model.name
    else:
        arrays = [np.asarray(v) for v in model.weights]
        name = method or type(model).__name__
    return {"method": name, "bits": int(model.bits), "fingerprint": fingerprint_arrays(arrays)}


def read_export_info(path):
    """The identity stored beside an export's saved_model.pb, or None for an export without one."""
    info = os.path.join(path, EXPORT_INFO)
    if not os.path.isfile(info):
        return None
    with open(info) as f:
        return json.load(f)


def describe(identity):
    if not identity:
        return "an unknown model"
    return f"{identity.get('method')} {identity.get('bits')} bits (fingerprint {identity.get('fingerprint')})"


def check_same_source(first, second, names, allow_mismatch=False, what=("model", "data", "split_seed")):
    """Raises a ValueError when two files' records disagree on the model (or data, split seed).

    Args:
        first, second: the meta dicts of two codes / index files (or an
            encoder's {"model": identity}).
        names: the two files' names, for the message.
        allow_mismatch: return the disagreements instead of raising.
        what: the keys compared; a key missing from either side is skipped
            (files written before identities were recorded).

    Returns:
        A list of the disagreements (empty when they agree).
    """
    problems = []
    for key in what:
        a, b = first.get(key), second.get(key)
        if a is None or b is None:
            continue
        if key == "model":
            if a.get("fingerprint") != b.get("fingerprint"):
                problems.append(f"model: {describe(a)} vs {describe(b)}")
        elif a != b:
            problems.append(f"{key}: {a!r} vs {b!r}")
    if problems and not allow_mismatch:
        raise ValueError(
            f"{names[0]} and {names[1]} come from different sources ({'; '.join(problems)}); encode both "
            "with the same model on the same split, or pass --allow-mismatch to mix them on purpose"
        )
    return problems


def run_split(model_path):
    """How the run holding `model_path` (a run folder, its export/ or model.npz) split its data:
    {data, split_seed, protocol, queries_per_class, image_shape, validation} from its metrics.json,
    or {}."""
    path = os.path.abspath(model_path)
    for folder in (path, os.path.dirname(path)):
        record = os.path.join(folder, "metrics.json")
        if os.path.isfile(record):
            with open(record) as f:
                info = json.load(f)
            keys = ("data", "split_seed", "protocol", "queries_per_class", "image_shape", "validation")
            return {key: info.get(key) for key in keys}
    return {}
