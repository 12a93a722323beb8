"""Atomic file writes: a file tfhash writes is either complete or absent, never half-written."""

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path beside `path`; renames it onto `path` on success, removes it on error.

    `suffix` ends the temporary name (give ".tmp.png" to writers that pick a
    format from the extension).
    """
    path = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(path, prefix=".tmp-"):
    """Yields a temporary folder beside `path`; on success it replaces `path` (an old one is removed
    only then), on error it is removed. A reader never sees a half-written folder."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)
    return path


def write_json(obj, path):
    """Writes JSON (indented, keys sorted) atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def write_npz(path, meta, **arrays):
    """Writes arrays and a JSON `meta` dict to one .npz atomically (the name is kept as given)."""
    with atomic_path(path, suffix=".npz.tmp") as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return os.path.abspath(path)


def read_npz(path, file_format, hint):
    """(meta, arrays) of a file written by `write_npz` with meta["format"] == file_format.

    Raises:
        ValueError: naming the file and `hint` (how to make a right one) when it is another kind.
    """
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
        if meta.get("format") != file_format:
            raise ValueError(f"{path} is not a {file_format} file ({hint})")
        return meta, {k: f[k] for k in f.files if k != "meta"}
