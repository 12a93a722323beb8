"""`--engine beam`: `tfhash features` and `tfhash encode` as Apache Beam pipelines.

The rows of the job are cut into shards (`tfhash.shards`) and each shard into
batches that start where the local loop's batches start, so that every batch
a worker computes is one the local path computes too: outputs are
bit-identical to `--engine local`. Each batch goes through
`apache_beam.ml.inference.RunInference` with `BatchHandler`, a small
`ModelHandler` that builds the model once per worker process (an export by
`tf.saved_model.load`, a baseline from its npz, or a pretrained backbone:
Beam's stock TensorFlow handlers load with `tf.keras.models.load_model`,
which Keras 3 refuses for plain SavedModels, apache/beam#30616) and calls
`tfhash.encoder.encode_batch`, the call the local loops make. The batches of a
shard meet again in one worker, which writes the shard atomically; a re-run
skips the shards already written.

Locally the pipeline runs on Beam's in-process runner with `workers`
processes (`--runner=FnApiRunner --direct_num_workers=N
--direct_running_mode=multi_processing`); any other pipeline options (a
`--runner` of a cluster: Dataflow, Flink, Spark) are passed through as given.
For an image folder the launching process reads only the files' headers and
hands the workers file names (`tfhash.features.folder_rows` for `tfhash
features`; for `tfhash encode`, splits holding `ImageFiles`); for a shard
folder of features it reads the labels and hands the workers (shard, rows)
pieces (`tfhash.shards.ShardRows`). Each worker reads its own batches, so
neither the reading nor the memory of the rows grows in one process. A single
npz file or a TFRecord folder is read by the launching process, which hands
the batches to the pipeline.
"""

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import time
import typing

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from tfhash import shards
from tfhash.data.dataset import Split
from tfhash.data.images import ImageFiles
from tfhash.encoder import codes_arrays, encode_batch


class BatchHandler(ModelHandler):
    """Runs batches of rows through a model built once per worker by `loader()` (a picklable
    callable returning anything with `encode(rows)`). An element is a dict whose "rows" are
    one batch: an array, or rows the launching process left unread, which the worker reads
    first (`_read`); the prediction is `encode_batch(model, rows)`."""

    def __init__(self, loader):
        super().__init__()
        self._loader = loader

    def load_model(self):
        return self._loader()

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(element, encode_batch(model, _read(element["rows"]))) for element in batch]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}  # an element is already a batch

    def get_metrics_namespace(self):
        return "tfhash"


class SplitRows(typing.NamedTuple):
    """Rows of an image split that a worker decodes into the split's flat float view (what
    `Split.features` gives the local path)."""

    files: ImageFiles
    pixel_max: float

    def decode(self):
        return Split(None, None, np.arange(len(self.files)), self.files.decode(), self.pixel_max).features


def _read(rows):
    """A batch's rows: read here, in the worker, when the launching process left them unread."""
    return rows.decode() if isinstance(rows, (ImageFiles, SplitRows, shards.ShardRows)) else rows


def pipeline_options(workers, pipeline_args=()):
    """Beam options: the in-process runner with `workers` processes, unless `pipeline_args` name
    a runner, in which case they are used as given."""
    args = list(pipeline_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args = [
            "--runner=FnApiRunner",
            f"--direct_num_workers={workers}",
            "--direct_running_mode=multi_processing",
            "--default_sdk_harness_log_level=WARNING",
            *args,
        ]
    return PipelineOptions(args)


def _batches(todo, bounds, batch_size, rows_of, extras_of):
    for index in todo:
        start, stop = bounds[index]
        for first in range(start, stop, batch_size):
            last = min(first + batch_size, stop)
            yield {"shard": index, "start": first, "rows": rows_of(first, last), **extras_of(first, last)}


def _keyed(result):
    element = result.example
    piece = {k: v for k, v in element.items() if k not in ("shard", "rows")}
    return element["shard"], {**piece, "out": result.inference}


def _write(shard, pieces, folder, bounds, job, build):
    pieces = sorted(pieces, key=lambda p: p["start"])
    joined = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0] if k != "start"}
    start, stop = bounds[shard]
    if len(joined["out"]) != stop - start:
        raise RuntimeError(f"shard {shard} received {len(joined['out'])} rows of {stop - start}")
    shards.write_shard(folder, shard, len(bounds), start, stop, job, build(start, stop, **joined))
    print(f"wrote {shards.shard_name(shard, len(bounds))} (rows {start:,}..{stop:,})", flush=True)
    return shard


def run_job(
    folder, job, rows, shard_count, batch_size, rows_of, extras_of, loader, build, workers, pipeline_args
):
    """Computes the shards of `folder` that the same job has not written yet; returns (shards
    computed, shard count, rows computed, seconds)."""
    if shard_count is None:  # one per worker, at least one per 100,000 rows (a re-run's unit of work)
        shard_count = max(workers, -(-rows // 100_000))
    bounds = shards.shard_bounds(rows, shard_count, batch_size)
    done = shards.prepare_folder(folder, job, len(bounds))
    todo = [i for i in range(len(bounds)) if i not in done]
    if done:
        print(f"{len(done)} of {len(bounds)} shards already written in {folder}; computing {len(todo)}")
    if not todo:
        return 0, len(bounds), 0, 0.0
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # the workers' start-up warnings
    write = functools.partial(_write, folder=os.path.abspath(folder), bounds=bounds, job=job, build=build)
    begin = time.perf_counter()
    with workers_log() as log:
        try:
            with beam.Pipeline(options=pipeline_options(workers, pipeline_args)) as pipeline:
                (
                    pipeline
                    | "Batches" >> beam.Create(list(_batches(todo, bounds, batch_size, rows_of, extras_of)))
                    | "Encode" >> RunInference(BatchHandler(loader))
                    | "ByShard" >> beam.Map(_keyed)
                    | "Gather" >> beam.GroupByKey()
                    | "Write" >> beam.MapTuple(write)
                )
        except Exception as err:
            raise RuntimeError(
                f"the Beam pipeline failed: {root_cause(err)} (the workers' log: {log}; the shards "
                "written so far are kept, and a re-run computes the rest)"
            ) from err
    computed = sum(bounds[i][1] - bounds[i][0] for i in todo)
    return len(todo), len(bounds), computed, time.perf_counter() - begin


@contextlib.contextmanager
def workers_log():
    """Points this process's stderr, which the local runner's worker processes inherit, at a log
    file while the pipeline runs (their harness logs every start and stop at INFO); yields its
    path. The file is removed when the pipeline succeeds."""
    fd, path = tempfile.mkstemp(prefix="tfhash-beam-", suffix=".log")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    failed = True
    try:
        yield path
        failed = False
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        if not failed:
            os.remove(path)


def root_cause(err):
    """The last `SomeError: message` line of a Beam error (which wraps the worker's traceback), or
    its first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return (causes or lines or [type(err).__name__])[-1]


def _feature_shard(start, stop, out, labels, ids, cut):
    from tfhash.features import feature_arrays

    return feature_arrays(out, labels, ids, None if cut is None else cut - start)


def _codes_shard(start, stop, out, ids, labels=None):
    return codes_arrays(out, ids, labels)[0]


def features_job(
    rows,
    folder,
    backbone,
    weights,
    input_size,
    batch_size,
    policy,
    meta,
    workers,
    shard_count,
    pipeline_args=(),
):
    """`tfhash features --engine beam`: the features of the `rows` of an image source
    (`tfhash.features.JobRows`), written as a shard folder of feature npz files (each holds its
    rows' part of x_train / x_test)."""
    from tfhash.features import FORMAT, FeatureExtractor

    if weights is None:
        raise ValueError(
            "--engine beam needs fixed weights (imagenet or a weights file): with --weights none each "
            "worker would draw its own random network"
        )
    images, labels, ids = rows.images, rows.labels, rows.ids
    loader = functools.partial(
        FeatureExtractor, backbone, images.shape[1:], images.dtype, rows.pixel_max,
        os.fspath(weights), input_size, policy,
    )  # fmt: skip
    build = functools.partial(_feature_shard, cut=rows.cut)
    return run_job(
        folder, {"format": FORMAT, **meta}, len(images), shard_count, batch_size,
        lambda a, b: images[a:b], lambda a, b: {"labels": labels[a:b], "ids": ids[a:b]},
        loader, build, workers, pipeline_args,
    )  # fmt: skip


def encode_job(model_path, data, folder, split, workers, shard_count, batch_size, pipeline_args=()):
    """`tfhash encode --engine beam`: one split's codes, written as a shard folder of codes files."""
    from tfhash.encoder import CODES_FORMAT, check_split_width, load_encoder
    from tfhash.serve import codes_source

    encoder = load_encoder(model_path)  # here too: a wrong path or width fails before any worker starts
    source = codes_source(encoder, data, split)
    part = getattr(data, split)
    check_split_width(encoder, part)
    job = {**source, "format": CODES_FORMAT, "bits": int(encoder.bits)}

    def rows_of(a, b):
        piece = part.subset(slice(a, b))
        if isinstance(piece.images, ImageFiles):
            return SplitRows(piece.images, piece.pixel_max)
        if isinstance(piece.features, shards.ShardRows):
            return piece.features  # read by the worker
        return np.asarray(piece.features, np.float32)

    def extras(a, b):
        rows = {"ids": part.ids[a:b]}
        if part.labels is not None:
            rows["labels"] = part.labels[a:b]
        return rows

    return run_job(
        folder, job, len(part), shard_count, batch_size,
        rows_of, extras,
        functools.partial(load_encoder, os.path.abspath(os.fspath(model_path))),
        _codes_shard, workers, pipeline_args,
    )  # fmt: skip
