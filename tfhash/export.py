"""SavedModel export of an encoder: float features in, {0, 1} and packed codes out."""

import json
import os

import keras
import tensorflow as tf

from tfhash.files import atomic_folder
from tfhash.identity import EXPORT_INFO, model_identity


def pack_codes_tf(codes):
    """TF twin of `evaluation.pack_codes`: {0, 1} (B, bits) -> uint8 (B, ceil(bits / 8)).

    Same layout as `np.packbits(codes, axis=1)`: most significant bit first,
    the last byte zero padded.
    """
    codes = tf.cast(codes, tf.int32)
    bits = codes.shape[-1]
    pad = (-bits) % 8
    codes = tf.pad(codes, [[0, 0], [0, pad]])
    grouped = tf.reshape(codes, (-1, (bits + pad) // 8, 8))
    weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.int32)
    return tf.cast(tf.reduce_sum(grouped * weights, axis=-1), tf.uint8)


SERVING_CHUNK = 4096  # rows the exported graph encodes at once: a large request is cut into these


def chunked(function, inputs, width, chunk=None):
    """`function(inputs)` (uint8 (n, width)) computed `chunk` rows at a time when n is larger, so the
    activations held at once do not grow with the request (one call of a million rows keeps the
    memory of `chunk`); a request of at most `chunk` rows runs in one piece."""
    chunk = chunk or SERVING_CHUNK  # read when the graph is traced (a test sets a small one)
    n = tf.shape(inputs)[0]

    def pieces():
        padded = tf.concat([inputs, tf.zeros_like(inputs[: (-n) % chunk])], axis=0)
        grouped = tf.reshape(padded, tf.concat([[-1, chunk], tf.shape(inputs)[1:]], axis=0))
        spec = tf.TensorSpec((chunk, width), tf.uint8)
        out = tf.map_fn(function, grouped, fn_output_signature=spec, parallel_iterations=1)
        return tf.reshape(out, (-1, width))[:n]

    return tf.cond(n > chunk, pieces, lambda: function(inputs))


def export_encoder(model, path, pixel_max=255.0, method=None):
    """Writes `model`'s encoder as a SavedModel at `path`, atomically.

    The archive's endpoint `encode` (also `serving_default`) takes
    `features` float32 (None, input_dim) and returns `codes` uint8 (None,
    bits) in {0, 1} and `packed_codes` uint8 (None, ceil(bits / 8)). An
    image model (`input_kind == "images"`) reshapes the flat features
    inside, and has a second endpoint, `images`: uint8 (None, H, W, C)
    images, divided by `pixel_max` (255; 16 for digits), with the same
    outputs. It loads with `tf.saved_model.load` alone; tfhash need not be
    installed.

    Beside saved_model.pb, `tfhash.json` records the model's identity
    (`tfhash.identity`: `method` (the registry name when given, else the
    class name), `bits`, the weights' `fingerprint`) with `input_dim`,
    `input_kind`, `image_shape` and `pixel_max`; codes and indexes made with
    the export carry the same identity.

    A request of more than `SERVING_CHUNK` rows is encoded that many rows at
    a time inside the graph (`chunked`): its memory is the request, the
    codes and one chunk's activations, whatever its size.

    A `features` batch holding NaN or infinite values is refused: the call
    fails with `InvalidArgumentError` ("features hold NaN or infinite values
    in rows [...]", the first ten row numbers of the batch) instead of
    returning codes that look like any others.

    The SavedModel is written to a temporary sibling folder and renamed into
    place, so an interrupted export never leaves a half-written `path`.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def run(inputs):
        return tf.cast(tf.round(tf.cast(model(inputs, training=False), tf.float32)), tf.uint8)

    def outputs(inputs):
        codes = chunked(run, inputs, model.bits)
        return {"codes": codes, "packed_codes": pack_codes_tf(codes)}

    def encode(features):
        finite = tf.reduce_all(tf.math.is_finite(features), axis=1)
        rows = tf.where(tf.logical_not(finite))[:10, 0]
        check = tf.debugging.Assert(
            tf.reduce_all(finite), ["features hold NaN or infinite values in rows", rows], summarize=10
        )
        with tf.control_dependencies([check]):
            return outputs(model.model_input(features))

    spec = tf.TensorSpec((None, model.input_dim), tf.float32, name="features")
    archive.add_endpoint("encode", encode, input_signature=[spec])
    if model.input_kind == "images":

        def encode_images(images):
            return outputs(tf.cast(images, tf.float32) * (1.0 / pixel_max))

        image_spec = tf.TensorSpec((None, *model.image_shape), tf.uint8, name="images")
        archive.add_endpoint("images", encode_images, input_signature=[image_spec])
    info = {
        **model_identity(model, method),
        "input_dim": int(model.input_dim),
        "input_kind": model.input_kind,
        "image_shape": None if model.image_shape is None else list(model.image_shape),
        "pixel_max": float(pixel_max),
    }
    with atomic_folder(path) as tmp:
        archive.write_out(tmp, verbose=False)
        with open(os.path.join(tmp, EXPORT_INFO), "w") as f:
            json.dump(info, f, indent=1)
    return os.path.abspath(path)
