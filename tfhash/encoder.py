"""Trained encoders and codes files: what `tfhash encode / index / search / eval` pass around.

An encoder is anything with `bits`, `input_dim` and `encode(features) ->
{0, 1} uint8 codes`: a `HashingModel`, a fitted `Baseline`, or a
`SavedModelEncoder` (an exported SavedModel, loaded with TensorFlow alone).
A codes file is one `.npz` with the packed codes (`np.packbits` layout), the
code length, int64 ids and, when known, the items' labels.
"""

import os

import numpy as np

from tfhash.checks import check_class_labels, check_features
from tfhash.evaluation import pack_codes, unpack_codes
from tfhash.files import read_npz, write_npz
from tfhash.identity import model_identity, read_export_info

CODES_FORMAT = "tfhash-codes-1"


class SavedModelEncoder:
    """An encoder SavedModel written by `tfhash.export.export_encoder`.

    Args:
        path: the SavedModel folder (a run's `export/`).
    """

    def __init__(self, path):
        import tensorflow as tf

        self.path = str(path)
        self._signature = tf.saved_model.load(self.path).signatures["serving_default"]
        spec = self._signature.structured_input_signature[1]["features"]
        self.input_dim = int(spec.shape[-1])
        self.bits = int(self._signature.structured_outputs["codes"].shape[-1])
        self.identity = read_export_info(self.path)  # None for an export made before identities

    def encode(self, features):
        features = check_features(features, self.input_dim, f"the SavedModel at {self.path}")
        return self._signature(features=np.asarray(features, np.float32))["codes"].numpy()


def load_encoder(path):
    """Loads an encoder from a SavedModel folder, a baseline `.npz`, or a run folder holding either."""
    from tfhash import baselines

    path = os.fspath(path)
    for candidate in (path, os.path.join(path, "export"), os.path.join(path, "model.npz")):
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return SavedModelEncoder(candidate)
        if os.path.isfile(candidate) and candidate.endswith(".npz"):
            model = baselines.load(candidate)
            model.identity = model_identity(model)
            return model
    raise ValueError(
        f"no encoder at {path!r}: pass a SavedModel folder (a run's export/), a baseline model.npz, "
        "or the run folder that holds one (e.g. saved_models/tbh-digits-32bit)"
    )


def encode_batch(encoder, rows):
    """One batch of rows through an encoder (anything with `encode`): the call that both engines
    make, the local loops and each Beam worker (`tfhash.beam`)."""
    return encoder.encode(rows)


def check_split_width(encoder, split):
    """A ValueError when a split's items are not as wide as the encoder's input."""
    if split.feature_dim != encoder.input_dim:
        raise ValueError(
            f"the encoder expects {encoder.input_dim} features per item; this data gives "
            f"{split.feature_dim}. Use the data (and --image-size) it was trained on."
        )


def encode_features(encoder, features, batch_size=8192, progress=True):
    """Encodes features in batches, with a progress bar for large inputs; {0, 1} uint8 (n, bits).

    `features` may also be a `tfhash.data.Split`: an encoder with its own
    `encode_split` (an in-memory `HashingModel`) takes it whole; otherwise an
    image split's flat float view is made one batch at a time, never for the
    whole split.
    """
    import keras

    if hasattr(features, "subset"):  # a Split
        split = features
        if hasattr(encoder, "encode_split"):
            return encoder.encode_split(split)
        check_split_width(encoder, split)
        count, chunk = len(split), lambda rows: split.subset(rows).features
    else:
        features = check_features(features, encoder.input_dim, "encoder")
        count, chunk = len(features), lambda rows: features[rows]
    codes = np.zeros((count, encoder.bits), np.uint8)
    bar = keras.utils.Progbar(count, unit_name="item") if progress and count > batch_size else None
    for start in range(0, count, batch_size):
        rows = slice(start, start + batch_size)
        codes[rows] = encode_batch(encoder, chunk(rows))
        if bar:
            bar.update(min(start + batch_size, count))
    return codes


def save_codes(path, codes, ids, labels=None, source=None):
    """Writes {0, 1} codes (n, bits), their ids and optional labels to one .npz, atomically.

    `source` (JSON-able) goes into the file's meta: `encode_source` records
    `model` (`tfhash.identity`), `data`, `split_seed`, `protocol`, `split` and
    `class_ids` (the source's own class id of each label column, or None).
    """
    arrays, meta = codes_arrays(codes, ids, labels, source)
    return write_npz(path, meta, **arrays)


def codes_arrays(codes, ids, labels=None, source=None):
    """(arrays, meta) of a codes file (or of one shard of one: `tfhash.shards`)."""
    codes = np.asarray(codes)
    ids = np.asarray(ids, np.int64)
    if ids.shape != (len(codes),):
        raise ValueError(f"need one id per code: {len(codes)} codes, ids of shape {ids.shape}")
    arrays = {"packed_codes": pack_codes(codes), "ids": ids}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.float32)
    return arrays, {**(source or {}), "format": CODES_FORMAT, "bits": int(codes.shape[1])}


def load_codes(path):
    """Reads a codes file (or a shard folder of one): dict with `bits`, `packed_codes`, `codes`
    ({0, 1}), `ids`, `labels` (or None) and `meta` (where the codes come from: see `save_codes`)."""
    if os.path.isdir(path):  # a shard folder (`tfhash encode --engine beam`)
        from tfhash.shards import read_shards

        meta, arrays = read_shards(path, CODES_FORMAT)
    else:
        meta, arrays = read_npz(path, CODES_FORMAT, "write one with `tfhash encode`")
    bits, packed, ids, labels = check_codes_file(path, meta, arrays)
    return {
        "bits": bits,
        "packed_codes": packed,
        "codes": unpack_codes(packed, bits),
        "ids": ids,
        "labels": labels,
        "meta": meta,
    }


def check_codes_file(path, meta, arrays):
    """(bits, packed codes, ids, labels or None) of a codes file after the checks every reader
    needs: `bits` a positive int, packed codes uint8 (n, ceil(bits / 8)) with zero padding bits,
    n integer ids, labels (if any) n finite 0/1 rows. A ValueError names the file and the fix."""
    fix = "write it again with `tfhash encode`"
    bits = meta.get("bits")
    if type(bits) is not int or bits < 1:
        raise ValueError(f"{path}: its meta gives bits={bits!r}, not a positive integer; {fix}")
    missing = [k for k in ("packed_codes", "ids") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: no {' or '.join(missing)} array; {fix}")
    packed, ids = arrays["packed_codes"], arrays["ids"]
    width = -(-bits // 8)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != width:
        raise ValueError(
            f"{path}: packed_codes must be uint8 of shape (n, {width}) for {bits} bits; it is "
            f"{packed.dtype} {packed.shape}; {fix}"
        )
    pad = width * 8 - bits
    if pad and len(packed) and np.any(packed[:, -1] & ((1 << pad) - 1)):
        raise ValueError(f"{path}: the {pad} padding bits after bit {bits} are not 0; {fix}")
    if ids.ndim != 1 or len(ids) != len(packed) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{path}: ids must be {len(packed)} integers, one per code; they are {ids.dtype} "
            f"{ids.shape}; {fix}"
        )
    labels = arrays.get("labels")
    if labels is not None:
        if labels.ndim != 2 or len(labels) != len(packed):
            raise ValueError(f"{path}: labels must be {len(packed)} rows; they are {labels.shape}; {fix}")
        check_class_labels(labels if labels.shape[1] > 1 else labels[:, 0], f"{path}: labels")
    return bits, packed, ids, labels
