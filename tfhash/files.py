"""Atomic file writes: a file tfhash writes is either complete or absent, never half-written.

Temporaries are made with `tempfile` (private 0600 / 0700 while written) and
given the modes the user's umask asks for before they are renamed into place
(0644 / 0755 under umask 022), as a plain `open` would. Every temporary is
named `.tfhash-tmp-` + tempfile's 8 random characters (+ a known suffix), and
a temporary folder also holds the marker file `TEMPORARY_MARKER` until it is
renamed into place. A run folder is cleared of what a killed process left
(`remove_stale_temporaries`) by those two tests only: a user's own hidden
files (`.tmp-build/`, `.bashrc.tmp`, ...) are never touched.
"""

import contextlib
import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib

import numpy as np

TEMPORARY_PREFIX = ".tfhash-tmp-"
TEMPORARY_MARKER = ".tfhash-temporary"  # inside a temporary folder until it is renamed into place
# the suffixes tfhash's writers give (atomic_path's `suffix`)
TEMPORARY_SUFFIXES = ("", ".tmp", ".npz.tmp", ".tmp.png", ".npy", ".weights.h5")
_TEMPORARY_NAME = re.compile(
    re.escape(TEMPORARY_PREFIX) + r"[a-z0-9_]{8}(" + "|".join(re.escape(s) for s in TEMPORARY_SUFFIXES) + r")"
)


def is_temporary(path):
    """True for a temporary tfhash made: its exact name pattern, and for a folder the marker inside.
    Nothing else is ever removed as a temporary."""
    if not _TEMPORARY_NAME.fullmatch(os.path.basename(path)) or os.path.islink(path):
        return False
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, TEMPORARY_MARKER))
    return os.path.isfile(path)


def temporary_folder(parent):
    """A new marked temporary folder in `parent` (see `is_temporary`)."""
    path = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=parent)
    open(os.path.join(path, TEMPORARY_MARKER), "w").close()
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path):
    """Gives `path` (and, for a folder, everything under it) the modes a plain open / mkdir would:
    0666 / 0777 less the umask."""
    mask = _umask()
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
            for name in files:
                target = os.path.join(root, name)
                executable = os.stat(target).st_mode & 0o111
                os.chmod(target, (0o777 if executable else 0o666) & ~mask)


def _exchange(a, b):
    """Swaps two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_folder(new, path):
    """Moves folder `new` to `path`. An existing `path` is swapped out in one atomic step where the
    system allows (Linux), else moved aside first: a reader never finds `path` missing (on Linux)
    or half-written (anywhere). The old folder is removed afterwards."""
    if not os.path.exists(path):
        os.replace(new, path)
        return
    if _exchange(new, path):
        shutil.rmtree(new)
        return
    aside = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=os.path.dirname(path))
    os.rmdir(aside)
    os.replace(path, aside)
    os.replace(new, path)
    shutil.rmtree(aside)


def remove_stale_temporaries(folder):
    """Removes the temporaries that a killed tfhash process left directly in `folder` (only what
    `is_temporary` recognises)."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if is_temporary(path):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def _probe_writable(folder):
    """Makes and removes the kind of temporary that atomic writes need in `folder` (an OSError if it
    cannot be written)."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX)
    os.close(fd)
    os.remove(probe)


def writable_folder(path, what="the output folder"):
    """Creates folder `path` if needed and proves it writable; a ValueError names the problem.
    `path` is normalised first, so `a/../c` creates `c` alone."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path} is an existing file; give a folder path")
    try:
        os.makedirs(path, exist_ok=True)
        _probe_writable(path)
    except OSError as err:
        raise ValueError(
            f"cannot write to {what} {path} ({err.strerror or err}); choose a folder you can write to"
        ) from None
    return path


def check_output_file(path, probe=True):
    """The absolute `path` of a file tfhash may write: absent, or a regular file (replaced whole).
    A folder, a symbolic link, a device node, a FIFO or a socket is refused with a ValueError (a
    link is not written through, and a node is never replaced by a file). With `probe`, a missing
    or unwritable folder too (commands check so before their work; `atomic_path` need not, its
    own temporary fails the same way)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.islink(path):
        raise ValueError(f"{path} is a symbolic link; give the path it points to, or a new file")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give the path of a file to write")
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(
            f"{path} is not a regular file (a device, FIFO or socket); give the path of a file to write"
        )
    parent = os.path.dirname(path)
    if not probe:
        return path
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: the folder {parent} does not exist; create it first")
    try:
        _probe_writable(parent)
    except OSError as err:
        raise ValueError(
            f"cannot write {path} ({err.strerror or err}); choose a folder you can write to"
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path beside `path`; renames it onto `path` on success, removes it on error.

    `suffix` ends the temporary name (give ".tmp.png" to writers that pick a
    format from the extension); it must be one of `TEMPORARY_SUFFIXES`.
    """
    if suffix not in TEMPORARY_SUFFIXES:
        raise ValueError(f"suffix {suffix!r} is not one of TEMPORARY_SUFFIXES")
    path = check_output_file(path, probe=False)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=TEMPORARY_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        public_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(path):
    """Yields a temporary folder beside `path`; on success it replaces `path` (`replace_folder`: an
    old one is swapped out, never deleted first), on error it is removed. A reader never sees a
    half-written folder. An existing `path` that is not a folder is refused before anything is
    written."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        raise ValueError(f"{path} exists and is not a folder; give a new path or an existing folder")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = temporary_folder(parent)
    try:
        yield tmp
        os.remove(os.path.join(tmp, TEMPORARY_MARKER))
        public_mode(tmp)
        replace_folder(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def array_fingerprint(array):
    """SHA-256 (hex) of an array's shape and C-order bytes: what a cache or a partial result was made from."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def file_sha256(path):
    """SHA-256 (hex) of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def open_npz(path, what="file", check_size=True):
    """`np.load` of an .npz archive (no pickles) after checking that it is one: a missing path, a
    text file or a truncated archive gets a ValueError naming the path, never NumPy's advice to
    allow pickles. With `check_size`, arrays that claim more memory than is available are refused
    before any is read (`check_npz_size`); without it, read only the arrays you know are small."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"{what} {path} does not exist" + (" (it is a folder)" if os.path.isdir(path) else "")
        )
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(
            f"{path} is not an npz archive (an .npz is a zip of .npy arrays, as np.savez writes); "
            "check the path"
        )
    if check_size:
        check_npz_size(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is a damaged npz archive ({err}); write it again") from None


def available_memory():
    """Bytes of memory available to a new allocation (Linux's MemAvailable; elsewhere free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def npz_headers(path):
    """{array name: (shape, dtype, stored bytes)} of an npz archive from the .npy headers alone
    (nothing decompressed past them): what `tfhash info` prints and `check_npz_size` checks."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                if not entry.filename.endswith(".npy"):
                    continue
                with archive.open(entry) as member:
                    version = np.lib.format.read_magic(member)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else (np.lib.format.read_array_header_2_0)
                    )
                    shape, _, dtype = read(member, max_header_size=10000)
                headers[entry.filename[:-4]] = (tuple(int(n) for n in shape), dtype, entry.compress_size)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path} is a damaged npz archive ({err}); write it again") from None
    return headers


def check_npz_size(path, limit=None):
    """Refuses an npz whose arrays claim more memory than is available (a small file can claim
    gigabytes: a zip of zeros), or that holds object arrays (pickles); a ValueError names the file,
    the array and both sizes."""
    headers = npz_headers(path)
    pickled = [name for name, (_, dtype, _) in headers.items() if dtype.hasobject]
    if pickled:
        raise ValueError(
            f"{path}: {', '.join(pickled)} holds Python objects (an object array, stored as a pickle), "
            "which tfhash never loads (a pickle can run code); save plain numbers (np.asarray(x, np.float32))"
        )
    limit = available_memory() if limit is None else limit
    if limit is None:
        return
    claims = {name: math.prod(shape) * dtype.itemsize for name, (shape, dtype, _) in headers.items()}
    total = sum(claims.values())
    if total > limit:
        name = max(claims, key=claims.get)
        shape, dtype, stored = headers[name]
        raise ValueError(
            f"{path}: its arrays claim {total / 2**30:.1f} GiB in all ({name}: {shape} {dtype}, "
            f"{claims[name] / 2**30:.1f} GiB from {stored / 2**20:.1f} MiB stored), more than the "
            f"{limit / 2**30:.1f} GiB of memory available; nothing was read"
        )


def open_npy(path, what="file"):
    """One array from an .npy file (no pickles); a ValueError names the path when it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path} is not a .npy array (np.save writes one); check the path")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is a damaged .npy file ({err}); write it again") from None


def read_npz(path, file_format, hint, skip=()):
    """(meta, arrays) of a file written by `write_npz` with meta["format"] == file_format; the
    arrays named in `skip` are not read (their reader reads them its own way).

    Raises:
        ValueError: naming the file and `hint` (how to make a right one) when it is another kind.
    """
    with open_npz(path, f"the {file_format} file") as f:
        try:
            meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
            if meta.get("format") != file_format:
                raise ValueError(f"{path} is not a {file_format} file ({hint})")
            return meta, {k: f[k] for k in f.files if k != "meta" and k not in skip}
        except (OSError, EOFError, json.JSONDecodeError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"{path} is a damaged {file_format} file ({err}); write it again") from None
