"""Encode a collection, index it, search it, evaluate codes: the library side of
`tfhash encode / index / search / eval`.
"""

import csv
import io
import json
import os
import sys
import time

import numpy as np

from tfhash.encoder import encode_features, load_codes, load_encoder, save_codes
from tfhash.evaluation import label_relevance, pack_codes, retrieval_metrics
from tfhash.files import write_text
from tfhash.identity import check_same_source
from tfhash.index import HammingIndex

SOURCE_KEYS = ("model", "data", "split_seed", "protocol", "split")

SPLITS = ("database", "query", "train")


def codes_source(encoder, data, split):
    """What a codes file of `split` of `data` encoded by `encoder` records (`save_codes`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; received {split!r}")
    return {
        "model": getattr(encoder, "identity", None),
        "data": data.name,
        "split_seed": data.split_seed,
        "protocol": data.protocol,
        "validation": data.validation,
        "split": split,
        "class_ids": None if data.class_ids is None else list(data.class_ids),
    }


def encode_source(model_path, data, out, split="database", progress=True, batch_size=8192):
    """Encodes one split of `data` with the encoder at `model_path`; writes a codes file.

    Returns:
        dict with `path`, `items`, `bits`, `items_per_second`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; received {split!r}")
    encoder = load_encoder(model_path)
    part = getattr(data, split)
    start = time.perf_counter()
    codes = encode_features(encoder, part, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - start
    save_codes(out, codes, part.ids, part.labels, codes_source(encoder, data, split))
    return {"path": out, "items": len(codes), "bits": encoder.bits, "items_per_second": len(codes) / seconds}


def codes_parts(codes_path):
    """Yields (meta, bits, packed codes, ids) of a codes file, or of each shard of a shard folder
    in turn: an index is built holding one piece at a time beside itself."""
    from tfhash.encoder import CODES_FORMAT, check_codes_file
    from tfhash.files import read_npz
    from tfhash.shards import iter_shards

    if os.path.isdir(codes_path):
        pieces = iter_shards(codes_path, CODES_FORMAT)
    else:
        pieces = [read_npz(codes_path, CODES_FORMAT, "write one with `tfhash encode`")]
    for meta, arrays in pieces:
        bits, packed, ids, _ = check_codes_file(codes_path, meta, arrays)
        yield meta, bits, packed, ids


def build_index(codes_path, out, backend="auto", radius_hashes=None, structure="auto"):
    """Builds a `HammingIndex` from a codes file (or shard folder, one shard at a time) and saves it
    to `out`; returns the index. `structure` ("auto", "flat", "multihash") and `radius_hashes`:
    `tfhash.index.choose_structure`, decided once the number of codes is known."""
    from tfhash.index import STRUCTURES, choose_structure

    if structure not in STRUCTURES:  # before the codes are read
        raise ValueError(f"structure must be one of {STRUCTURES}; received {structure!r}")
    index = None
    for meta, bits, packed, ids in codes_parts(os.fspath(codes_path)):
        if index is None:
            index = HammingIndex(bits, backend)
            index.source = {k: meta.get(k) for k in SOURCE_KEYS if meta.get(k) is not None}
        index.add(packed, ids)
    tables = choose_structure(structure, len(index), index.bits, radius_hashes, index.backend)
    if tables:
        index.set_tables(tables)
    index.save(out)
    return index


def load_images(paths, input_dim, image_shape=None):
    """Reads image files as features: resized to `image_shape`, scaled to [0, 1], flattened.

    Without `image_shape`, a square grey image of input_dim pixels (or a
    square colour one of input_dim / 3) is assumed.
    """
    import keras

    if image_shape is None:
        side = int(round(np.sqrt(input_dim)))
        colour_side = int(round(np.sqrt(input_dim / 3)))
        image_shape = (side, side) if side * side == input_dim else (colour_side, colour_side, 3)
    if int(np.prod(image_shape)) != input_dim:
        raise ValueError(f"images of shape {image_shape} do not give the encoder's {input_dim} features")
    mode = "rgb" if len(image_shape) == 3 else "grayscale"
    rows = []
    for path in paths:
        if not os.path.isfile(path):
            what = "a folder" if os.path.isdir(path) else "missing"
            raise ValueError(f"--images: {path} is {what}; give image files (PNG, JPEG), e.g. folder/*.png")
        try:
            image = keras.utils.load_img(path, color_mode=mode, target_size=tuple(image_shape[:2]))
        except Exception as err:  # PIL raises several types for a file that is not an image
            raise ValueError(
                f"--images: {path} is not an image PIL can read ({type(err).__name__})"
            ) from None
        rows.append(keras.utils.img_to_array(image).reshape(-1) / 255.0)
    return np.stack(rows).astype(np.float32)


def search(encoder, index, features, k=10, radius=None, batch_size=1024, progress=True):
    """Encodes query features and searches the index.

    Returns:
        top-k: (distances (q, k), ids (q, k)); with `radius`: a list of
        (distances, ids) arrays per query, ordered by distance then id.
    """
    import keras

    if encoder.bits != index.bits:  # before encoding: a mismatch must not cost a pass over the queries
        raise ValueError(
            f"the encoder makes {encoder.bits}-bit codes but the index holds {index.bits}-bit codes"
        )
    codes = encode_features(encoder, features, progress=progress)
    packed = pack_codes(codes)
    bar = (
        keras.utils.Progbar(len(packed), unit_name="query") if progress and len(packed) > batch_size else None
    )
    distances, ids, matches = [], [], []
    for start in range(0, len(packed), batch_size):
        chunk = packed[start : start + batch_size]
        if radius is None:
            d, i = index.search(chunk, k)
            distances.append(d)
            ids.append(i)
        else:
            lims, d, i = index.range_search(chunk, radius)
            matches += [(d[a:b], i[a:b]) for a, b in zip(lims[:-1], lims[1:], strict=True)]
        if bar:
            bar.update(min(start + batch_size, len(packed)))
    return matches if radius is not None else (np.concatenate(distances), np.concatenate(ids))


def write_search_results(path, query_ids, results):
    """Writes search results as CSV (query_id, rank, id, distance) or JSON, by the file extension;
    with `path` None, the CSV goes to standard output (nothing is written to disk)."""
    if isinstance(results, tuple):
        results = list(zip(*results, strict=True))
    rows = [
        (int(q), rank, int(i), int(d))
        for q, (dists, ids) in zip(query_ids, results, strict=True)
        for rank, (d, i) in enumerate(zip(dists, ids, strict=True), 1)
    ]
    if str(path).endswith(".json"):
        grouped = {}
        for q, rank, i, d in rows:
            grouped.setdefault(q, []).append({"rank": rank, "id": i, "distance": d})
        queries = [{"query_id": int(q), "results": grouped.get(int(q), [])} for q in query_ids]
        write_text(path, json.dumps(queries, indent=1))
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["query_id", "rank", "id", "distance"])
        writer.writerows(rows)
        if path is None:
            sys.stdout.write(text.getvalue())
        else:
            write_text(path, text.getvalue())


def evaluate_codes(
    query_codes_path,
    database_codes_path,
    top_k=1000,
    radius=2,
    empty_queries="zero",
    ties="expected",
    allow_mismatch=False,
):
    """The metric table of two codes files with labels (label ground truth).

    Files made by different models (or on different data or split seeds)
    are refused unless `allow_mismatch` (`tfhash.identity.check_same_source`).
    """
    query, database = load_codes(query_codes_path), load_codes(database_codes_path)
    check_same_source(
        query["meta"],
        database["meta"],
        (query_codes_path, database_codes_path),
        allow_mismatch,
        ("model", "data", "split_seed", "protocol", "validation"),
    )
    for name, codes in (("query", query), ("database", database)):
        if codes["labels"] is None:
            raise ValueError(
                f"the {name} codes file has no labels; evaluation needs labelled codes "
                "(encode a labelled data source with `tfhash encode`)"
            )
    ks = (None, top_k) if len(database["ids"]) > top_k else (None,)
    return retrieval_metrics(
        query["codes"],
        database["codes"],
        label_relevance(query["labels"], database["labels"]),
        top_k=ks,
        radius=radius,
        precision_at=[n for n in (100,) if n <= len(database["ids"])],
        empty_queries=empty_queries,
        ties=ties,
    )


def id_rows(split_ids, ids, order=None):
    """(rows, missing): the rows of `split_ids` holding `ids` (any shape), and where an id is not
    there. `order` is `np.argsort(split_ids, kind="stable")` when the caller keeps it (a service
    looks ids up per request)."""
    order = np.argsort(split_ids, kind="stable") if order is None else order
    ids = np.asarray(ids, np.int64)
    rows = order[np.minimum(np.searchsorted(split_ids[order], ids), len(split_ids) - 1)]
    return rows, split_ids[rows] != ids


def database_rows(data, ids):
    """Rows of `data.database` holding these ids (any shape); a clear error for unknown ids."""
    rows, missing = id_rows(data.database.ids, ids)
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} ids (e.g. {np.asarray(ids)[missing][:3].tolist()}) are not in "
            f"{data.name}'s database split; build the index from the same --data source (and split seed)"
        )
    return rows


def write_grid(path, data, query_images, query_labels, distances, ids):
    """The retrieval grid PNG for top-k results over `data`'s database; returns the label matches."""
    from tfhash.visualize import retrieval_grid

    if data.image_shape is None:
        raise ValueError(f"--grid needs image data (digits, mnist, CIFAR-10); {data.name} has no image shape")
    rows = database_rows(data, ids)
    images = data.database.features[rows].reshape(*rows.shape, *data.image_shape)
    labels = None if data.database.labels is None else data.database.labels[rows]
    title = f"{data.name}: top {ids.shape[1]} by Hamming distance (green: same label, red: different)"
    return retrieval_grid(path, query_images, images, distances, query_labels, labels, title=title)
