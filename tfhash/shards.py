"""Shard folders: one features or codes file written as `part-00000-of-0000N.npz` pieces.

`tfhash features` and `tfhash encode` with `--engine beam` write their output
as a folder of shards, each an ordinary features or codes npz of a run of
consecutive rows, written atomically by the worker that computed it. A shard's
meta is the job's meta (the same for every shard: what a single file would
carry) plus `shard`: its index, the count, and its rows of the whole. A
re-run of the same job keeps the shards already written and computes the
rest; a folder holding shards of another job is refused, never mixed.

Every reader of a features or codes file (`--data`, `index`, `eval`, `info`,
`search`) also reads a complete shard folder (`read_shards`, or
`iter_shards` one shard at a time). NumPy only: no TensorFlow.
"""

import dataclasses
import functools
import json
import os
import re

import numpy as np

from tfhash.checks import check_finite_rows, check_real_numbers, check_row_index
from tfhash.files import open_npz, remove_stale_temporaries, write_npz

SHARD_PATTERN = re.compile(r"part-(\d{5})-of-(\d{5})\.npz")
MAX_SHARDS = 99999


def shard_name(index, count):
    return f"part-{index:05d}-of-{count:05d}.npz"


def shard_bounds(rows, shards, align=1):
    """[(start, stop), ...] of `shards` runs of consecutive rows covering 0..rows, as equal as
    `align` allows: every boundary but the last is a multiple of `align` (a batch size, so that
    the batches of a shard are those of one pass over all rows). Fewer shards when there are not
    enough aligned blocks for each to get one; one empty shard for no rows."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"the shard count must be 1..{MAX_SHARDS}; received {shards}")
    blocks = -(-rows // align)
    shards = max(1, min(shards, blocks))
    cuts = [min(rows, (blocks * i // shards) * align) for i in range(shards + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def shard_files(folder):
    """{index: (count, path)} of the shard files in `folder` (names alone; nothing is read)."""
    found = {}
    for name in os.listdir(folder):
        match = SHARD_PATTERN.fullmatch(name)
        if match:
            found.setdefault(int(match[1]), []).append((int(match[2]), os.path.join(folder, name)))
    return found


def is_shard_folder(path):
    """True for a folder holding at least one `part-NNNNN-of-NNNNN.npz`."""
    return os.path.isdir(path) and bool(shard_files(path))


def complete_shards(folder, what="the shard folder"):
    """The paths of a complete shard folder in order; a ValueError names what is missing or mixed."""
    found = shard_files(folder)
    counts = {count for entries in found.values() for count, _ in entries}
    if not counts:
        raise ValueError(f"{what} {folder} holds no part-NNNNN-of-NNNNN.npz shards")
    if len(counts) > 1:
        raise ValueError(
            f"{what} {folder} mixes shards of {len(counts)} jobs (counts {sorted(counts)}); "
            "remove it and run the job again"
        )
    count = counts.pop()
    missing = [i for i in range(count) if i not in found]
    if missing or max(found) >= count:
        shown = ", ".join(shard_name(i, count) for i in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise ValueError(
            f"{what} {folder} is incomplete: {len(missing)} of {count} shards missing ({shown}); "
            "the job that writes it has not finished: run the same command again to complete it"
        )
    return [found[i][0][1] for i in range(count)]


def read_shard(path, file_format=None, unread=()):
    """(meta, arrays) of one shard; a ValueError names a shard that is not one of `file_format`.
    The keys in `unread` that hold 2-D float arrays are not read: they come as `ShardRows`."""
    with open_npz(path, "the shard") as f:
        meta = _shard_meta(f, path, file_format)
        arrays = {}
        for key in f.files:
            if key != "meta":
                header = _npy_header(f, key) if key in unread else None
                floats = header and len(header[0]) == 2 and header[1].kind == "f"
                arrays[key] = ShardRows.whole(path, key, *header) if floats else f[key]
        return meta, arrays


def _shard_meta(npz, path, file_format):
    try:
        meta = json.loads(str(npz["meta"])) if "meta" in npz.files else {}
    except ValueError:
        meta = {}
    if not isinstance(meta.get("shard"), dict) or (file_format and meta.get("format") != file_format):
        what = file_format or "tfhash"
        raise ValueError(f"{path} is not a shard of a {what} file; remove it and run the job again")
    return meta


def _npy_header(npz, key):
    """(shape, dtype) of one array of an open npz, from its header alone."""
    with npz.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        npy = np.lib.format
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(member)
    return shape, dtype


@dataclasses.dataclass(frozen=True, eq=False)
class ShardRows:
    """Rows of a 2-D float array that a shard folder holds in pieces, not read: what a worker of
    `tfhash encode --engine beam` reads its batches of, so that the launching process holds no
    feature. Picklable; indexing (a slice or an index array) gives a view; `decode()` reads it.

    Attributes:
        pieces: ((path, key, rows), ...): the whole is the pieces one after another.
        width: the row width.
        index: the rows of the whole that this view holds, in its order.
    """

    pieces: tuple
    width: int
    index: np.ndarray = dataclasses.field(repr=False)
    dtype = np.dtype(np.float32)
    ndim = 2

    @classmethod
    def whole(cls, path, key, shape, dtype):
        return cls(((os.path.abspath(path), key, int(shape[0])),), int(shape[1]), np.arange(shape[0]))

    @property
    def shape(self):
        return (len(self.index), self.width)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, index):
        return ShardRows(self.pieces, self.width, self.index[check_row_index(index, "ShardRows")])

    def concat(self, other):
        """The rows of both wholes, this one's first (views of part of a whole are refused)."""
        for rows in (self, other):
            if not np.array_equal(rows.index, np.arange(sum(p[2] for p in rows.pieces))):
                raise ValueError("only whole ShardRows are concatenated")
        if self.width != other.width:
            raise ValueError(f"rows of width {self.width} and {other.width} cannot be concatenated")
        pieces = tuple(piece for piece in self.pieces + other.pieces if piece[2])  # empty ones: none
        return ShardRows(pieces, self.width, np.arange(len(self) + len(other)))

    def decode(self):
        """The rows, float32 (n, width), read piece by piece; a piece with NaN or inf rows is named
        with its file and rows (the check `--data` makes of a whole file)."""
        out = np.empty(self.shape, np.float32)
        ends = np.cumsum([rows for _, _, rows in self.pieces])
        piece = np.searchsorted(ends, self.index, side="right")
        for p in np.unique(piece):
            chosen = piece == p
            path, key, rows = self.pieces[p]
            out[chosen] = _piece(path, key)[self.index[chosen] - (ends[p] - rows)]
        return out


@functools.lru_cache(maxsize=2)  # a worker's batches mostly fall in the shard of the one before
def _piece(path, key):
    with open_npz(path, "the shard") as f:
        rows = f[key]
    check_real_numbers(rows, f"{path}: {key}")
    check_finite_rows({key: rows}, path)
    return rows.astype(np.float32, copy=False)


def job_meta(meta):
    """A shard's meta without its own part: what every shard of one job shares."""
    return {k: v for k, v in meta.items() if k != "shard"}


def iter_shards(folder, file_format=None, unread=()):
    """Yields (job meta, arrays) of each shard of a complete folder in row order, checking that
    every shard belongs to one job, that their rows follow each other and that each holds the
    arrays and rows its meta says (`unread`: as `read_shard` takes it)."""

    def read(path):
        meta, arrays = read_shard(path, file_format, unread)
        return meta, arrays, {key: (tuple(value.shape), value.dtype) for key, value in arrays.items()}

    return _checked_shards(folder, read)


def shard_headers(folder, file_format=None):
    """(job meta, {key: (shape, dtype)}) of a whole shard folder from the shards' meta and .npy
    headers alone (no array is read), checked as `iter_shards` checks them: what `tfhash info`
    shows."""

    def read(path):
        with open_npz(path, "the shard", check_size=False) as f:  # one opening: meta and headers
            headers = {key: _npy_header(f, key) for key in f.files if key != "meta"}
            return _shard_meta(f, path, file_format), headers, headers

    job, shapes = None, {}
    for job, headers in _checked_shards(folder, read):  # noqa: B007 (the last job is the answer)
        for key, (shape, dtype) in headers.items():
            rows = shapes.get(key, ((0,), None))[0][0]
            shapes[key] = ((rows + shape[0], *shape[1:]), dtype)
    return job, shapes


def _checked_shards(folder, read):
    first, first_shapes, rows = None, None, 0
    for path in complete_shards(folder):
        meta, arrays, shapes = read(path)
        shared, part = job_meta(meta), meta["shard"]
        if first is None:
            first, first_shapes = shared, shapes
        elif shared != first:
            raise ValueError(f"{path} belongs to another job than the first shard; run the job again")
        if part.get("start") != rows:
            raise ValueError(f"{path} starts at row {part.get('start')}, not {rows}; run the job again")
        check_shard_shapes(path, part, shapes, first_shapes)
        rows = part.get("stop", rows)
        yield first, arrays


def check_shard_shapes(path, part, shapes, first):
    """A ValueError naming the shard `path` unless its arrays ({key: (shape, dtype)}) are the first
    shard's keys with the first shard's row shape and kind of number, the arrays of one split
    (`_train`, `_test`, or neither) hold equal rows, and the splits together hold the rows
    start..stop that its meta (`part`) names."""
    again = "the shard is damaged or was changed: remove it and run the job again"
    if set(shapes) != set(first):
        held, first_held = sorted(shapes), sorted(first)
        raise ValueError(f"{path} holds {held} where the first shard holds {first_held}; {again}")
    splits = {}
    for key, (shape, dtype) in sorted(shapes.items()):
        first_shape, first_dtype = first[key]
        if not shape or shape[1:] != first_shape[1:] or dtype.kind != first_dtype.kind:
            raise ValueError(
                f"{path}: {key} is {dtype} of shape {shape} where the first shard's is {first_dtype} "
                f"of shape {first_shape}; {again}"
            )
        split = key.rsplit("_", 1)[1] if key.endswith(("_train", "_test")) else ""
        splits.setdefault(split, {})[key] = shape[0]
    for counts in splits.values():
        if len(set(counts.values())) > 1:
            held = ", ".join(f"{key} {n}" for key, n in counts.items())
            raise ValueError(f"{path}: its arrays hold different numbers of rows ({held}); {again}")
    held = sum(next(iter(counts.values())) for counts in splits.values())
    start, stop = part.get("start"), part.get("stop")
    if not isinstance(start, int) or not isinstance(stop, int) or held != stop - start:
        raise ValueError(f"{path} holds {held} rows where its meta names rows {start}..{stop}; {again}")


def read_shards(folder, file_format=None, unread=()):
    """(meta, arrays) of a whole shard folder: each array is the shards' arrays one after another,
    as the single file would hold it. The keys in `unread` that hold 2-D float arrays are left
    unread, as `ShardRows` (when every shard's are)."""
    meta, parts = None, {}
    for shared, arrays in iter_shards(folder, file_format, unread):
        meta = shared
        for key, value in arrays.items():
            parts.setdefault(key, []).append(value)
    return meta, {key: _joined(values) for key, values in parts.items()}


def _joined(values):
    if all(isinstance(v, ShardRows) for v in values):
        return functools.reduce(ShardRows.concat, values)
    return np.concatenate([v.decode() if isinstance(v, ShardRows) else v for v in values])


def prepare_folder(folder, job, count):
    """Makes `folder` ready for a job of `count` shards; returns the indices already written by
    the same job (an unreadable shard is written again). A folder with shards of another job, or a
    path that is not a folder, is refused before anything is computed."""
    folder = os.path.abspath(os.fspath(folder))
    job = json.loads(json.dumps(job))  # as a shard's meta reads back (lists, not tuples)
    if os.path.lexists(folder) and (os.path.islink(folder) or not os.path.isdir(folder)):
        raise ValueError(f"{folder} exists and is not a folder; give a new folder for the shards")
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder)
    done = set()
    for index, entries in shard_files(folder).items():
        for shard_count, path in entries:
            try:
                meta, _ = read_shard(path)
            except ValueError:
                continue  # a damaged shard of this name is written again
            if shard_count != count or job_meta(meta) != job:
                raise ValueError(
                    f"{folder} holds shards of another job ({os.path.basename(path)}); remove them or "
                    "choose another --out"
                )
            done.add(index)
    return done


def write_shard(folder, index, count, start, stop, job, arrays):
    """Writes one shard atomically (whole or not at all)."""
    meta = {**job, "shard": {"index": index, "count": count, "start": int(start), "stop": int(stop)}}
    return write_npz(os.path.join(folder, shard_name(index, count)), meta, **arrays)
