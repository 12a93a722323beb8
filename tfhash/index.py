"""HammingIndex: packed binary codes with int64 ids, exact top-k and radius search.

Two backends give identical answers (same ids, same distances, ties broken
by id): faiss (`faiss-cpu`, `IndexBinaryFlat`, multi-threaded popcount
scans) when it is installed, and a pure NumPy fallback (popcount on uint64
words, one chunk of queries at a time). Both keep the codes sorted by id, so
"ties by position" is "ties by id".

Codes are the `np.packbits` layout (`tfhash.evaluation.pack_codes`, the
SavedModel's `packed_codes` output): ceil(bits / 8) bytes per item. A code
length that is not a multiple of 8 is stored zero padded to whole bytes:
the padding bits are 0 in every code, so distances are unchanged.
Memory: ceil(bits / 8) bytes per item plus 8 bytes of id.
"""

import numpy as np

from tfhash.checks import check_positive_int
from tfhash.evaluation import _as_words, _hamming_words, _word_columns, distance_histogram, nearest_positions
from tfhash.files import read_npz, write_npz

FORMAT = "tfhash-hamming-index-1"
BACKENDS = ("auto", "faiss", "numpy")
STRUCTURES = ("auto", "flat", "multihash")
# `structure="auto"` builds the multi-hash tables from this many codes (docs/scale.md: where they
# pay on 64-bit learned-like codes, measured by benchmarks/index_scale.py)
MULTIHASH_FROM_ITEMS = 10_000_000


def multihash_tables(items, bits):
    """Tables for `items` codes of `bits` bits: substrings of about log2(items) bits (Norouzi et
    al.'s choice), at least 2, at most 64 bits each."""
    code_bits = -(-bits // 8) * 8
    tables = max(2, round(code_bits / max(1.0, np.log2(max(items, 2)))))
    return int(min(max(tables, -(-code_bits // 64)), code_bits))


def choose_structure(structure, items, bits, radius_hashes=None, backend="auto"):
    """The `radius_hashes` of an index of `items` codes: None for the flat scan, or the number of
    multi-hash tables. "auto" builds tables (faiss only) from `MULTIHASH_FROM_ITEMS` codes;
    `radius_hashes` sets their number ("auto" or "multihash")."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}; received {structure!r}")
    if structure == "flat":
        if radius_hashes:
            raise ValueError("radius_hashes sets multi-hash tables; a flat index has none (structure='flat')")
        return None
    has_faiss = resolve_backend(backend) == "faiss"
    if structure == "multihash" and not has_faiss:
        raise ValueError("the multi-hash structure needs faiss: pip install faiss-cpu (or --structure flat)")
    if structure == "auto" and not radius_hashes and not (has_faiss and items >= MULTIHASH_FROM_ITEMS):
        return None
    return radius_hashes or multihash_tables(items, bits)


def resolve_backend(backend):
    """The backend "auto" means here: faiss when it is installed, else NumPy."""
    return ("faiss" if faiss_available() else "numpy") if backend == "auto" else backend


def faiss_available():
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _rising(ids):
    return ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer) and bool(np.all(ids[1:] > ids[:-1]))


def _read_in_place(path, backend):
    """(codes, ids, flat) of a saved index, each array read once from the archive into its final
    memory (no second copy of 100M codes or ids): the codes into a new faiss `IndexBinaryFlat`'s
    buffer (`flat`; a view of it is returned) when faiss is used, else into an array (flat None).
    An array that is missing is None; one of an unexpected layout is read as `np.load` reads it
    (and refused by the checks after)."""
    import zipfile

    use_faiss = resolve_backend(backend) == "faiss"
    out, flat = {}, None
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for key in ("codes", "ids"):
            if f"{key}.npy" not in names:
                out[key] = None
                continue
            with archive.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                npy = np.lib.format
                read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, fortran, dtype = read_header(member, max_header_size=10000)
                if fortran or dtype.hasobject or len(shape) != (2 if key == "codes" else 1):
                    out[key] = None  # read below as np.load reads it
                    continue
                if key == "codes" and use_faiss and dtype == np.uint8:
                    import faiss

                    flat = faiss.IndexBinaryFlat(shape[1] * 8)
                    flat.xb.resize(shape[0] * shape[1])
                    size = shape[0] * shape[1]
                    array = faiss.rev_swig_ptr(flat.xb.data(), size) if size else np.zeros(0, np.uint8)
                    array = array.reshape(shape)
                else:
                    array = np.empty(shape, dtype)
                _fill(member, array, path)
                if flat is not None and key == "codes":
                    flat.ntotal = shape[0]
                out[key] = array
    if any(v is None for k, v in out.items() if f"{k}.npy" in names):
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] if v is None and k in f.files else v for k, v in out.items()}
    return out["codes"], out["ids"], flat


def _fill(member, array, path):
    """Reads an array's bytes from an open archive member into `array`."""
    buffer = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    filled = 0
    while filled < len(buffer):  # in pieces: a zip member's readinto reads through a bytes object
        got = member.readinto(buffer[filled : filled + (16 << 20)])
        if not got:
            raise ValueError(f"{path}: an array is truncated; build the index again")
        filled += got


class HammingIndex:
    """An exact Hamming-distance index over packed binary codes.

    Args:
        bits: code length (the codes take ceil(bits / 8) bytes).
        backend: "faiss", "numpy", or "auto" (faiss when installed).
        radius_hashes: faiss only: answer `range_search` with radius below
            this number through an `IndexBinaryMultiHash` of that many hash
            tables on disjoint substrings of (bits // radius_hashes) bits,
            built on first use. Still exact (a code within radius r < n of
            the query agrees with it on at least one of n disjoint
            substrings, by pigeonhole), much faster on long codes, and
            costs a second copy of the codes plus the tables. Top-k
            searches then grow a range search from radius 0 until k items
            are found (exact; the flat scan answers the queries with fewer
            than k items within radius_hashes - 1). Larger radii scan
            (`IndexBinaryFlat`). The NumPy backend always scans.

    Attribute `source` is a dict saved with the index: where its codes come
    from (`model`, `data`, `split_seed`, ... of the codes file; see
    `tfhash.identity`), empty when unknown.

    Example:
        index = HammingIndex(64)
        index.add(pack_codes(db_codes), ids=np.arange(len(db_codes)))
        distances, ids = index.search(pack_codes(query_codes), k=10)
    """

    def __init__(self, bits, backend="auto", radius_hashes=None):
        self.bits = check_positive_int("bits", bits)
        self.source = {}
        self.code_size = (self.bits + 7) // 8
        self._check_tables(radius_hashes)
        self.radius_hashes = radius_hashes
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; received {backend!r}")
        if backend == "faiss" and not faiss_available():
            raise ValueError(
                "backend='faiss' needs faiss-cpu: pip install faiss-cpu (or use backend='numpy')"
            )
        self.backend = resolve_backend(backend)
        self.ids = np.zeros(0, np.int64)
        self._codes = np.zeros((0, self.code_size), np.uint8)  # numpy backend storage
        self._faiss = self._new_faiss_index() if self.backend == "faiss" else None
        self._multihash = None

    def __len__(self):
        return len(self.ids)

    def set_tables(self, radius_hashes):
        """Sets the number of multi-hash tables (None: the flat scan alone); they are built on the
        next search that uses them."""
        self._check_tables(radius_hashes)
        self.radius_hashes = radius_hashes
        self._multihash = None

    def _check_tables(self, radius_hashes):
        if radius_hashes is None:
            return
        check_positive_int("radius_hashes", radius_hashes)
        if not 1 <= self.code_size * 8 // radius_hashes <= 64:
            raise ValueError(
                f"radius_hashes={radius_hashes} splits {self.bits}-bit codes into substrings outside 1..64 "
                f"bits; use between {-(-self.code_size * 8 // 64)} and {self.code_size * 8} hash tables"
            )

    @property
    def memory_bytes(self):
        """Bytes held for codes and ids."""
        return len(self) * (self.code_size + 8)

    def _new_faiss_index(self):
        import faiss

        return faiss.IndexBinaryFlat(self.code_size * 8)

    def codes(self):
        """All stored packed codes (n, code_size), in id order (a copy for faiss)."""
        if self._faiss is None:
            return self._codes
        return self._codes_view().copy()

    def _codes_view(self):
        """The stored codes without a copy: faiss' own buffer for faiss (valid until the index
        changes), the array for NumPy."""
        if self._faiss is None:
            return self._codes
        import faiss

        if not len(self):
            return np.zeros((0, self.code_size), np.uint8)
        flat = faiss.rev_swig_ptr(self._faiss.xb.data(), len(self) * self.code_size)
        return flat.reshape(len(self), self.code_size)

    def _check_codes(self, packed, name):
        packed = np.asarray(packed)
        if packed.ndim != 2 or packed.shape[1] != self.code_size:
            raise ValueError(
                f"{name} must be packed codes of shape (n, {self.code_size}) (ceil({self.bits} / 8) "
                f"bytes per item, np.packbits layout); received shape {packed.shape}. "
                "Pack {0,1} codes with tfhash.evaluation.pack_codes."
            )
        if packed.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 packed bytes; received dtype {packed.dtype}")
        pad = self.code_size * 8 - self.bits
        if pad and np.any(packed[:, -1] & ((1 << pad) - 1)):
            raise ValueError(f"{name}: the {pad} padding bits after bit {self.bits} must be 0")
        return np.ascontiguousarray(packed)

    def add(self, packed_codes, ids=None):
        """Adds codes with int ids (default: the next consecutive ids); returns the ids."""
        packed_codes = self._check_codes(packed_codes, "packed_codes")
        start = int(self.ids.max()) + 1 if len(self) else 0
        ids = np.arange(start, start + len(packed_codes)) if ids is None else np.asarray(ids)
        if ids.shape != (len(packed_codes),) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be {len(packed_codes)} integers; received {ids.dtype} {ids.shape}")
        ids = ids.astype(np.int64, copy=False)
        # ids that rise past the last one (a codes file; shard after shard) need no search of the index
        rising = _rising(ids) and not (len(self) and len(ids) and ids[0] <= self.ids[-1])
        if not rising and (len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids).any()):
            raise ValueError("ids must be unique and not already in the index (remove them first)")
        if not rising:
            order = np.argsort(np.concatenate([self.ids, ids]), kind="stable")
            self._replace(
                np.concatenate([self.codes(), packed_codes])[order], np.concatenate([self.ids, ids])[order]
            )
        elif self._faiss is not None:
            self._faiss.add(packed_codes)
            self._multihash = None
            self.ids = np.concatenate([self.ids, ids]) if len(self.ids) else ids
        else:
            self._codes = np.concatenate([self._codes, packed_codes]) if len(self._codes) else packed_codes
            self.ids = np.concatenate([self.ids, ids]) if len(self.ids) else ids
        return ids

    def _replace(self, codes, ids):
        self.ids = ids
        self._multihash = None
        if self._faiss is None:
            self._codes = codes
        else:
            self._faiss = self._new_faiss_index()
            self._faiss.add(codes)

    def remove(self, ids):
        """Removes the items with these ids; returns how many were present."""
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        removed = int(len(self) - keep.sum())
        if removed:
            self._replace(self.codes()[keep], self.ids[keep])
        return removed

    def search(self, packed_queries, k):
        """The k nearest items per query: (distances int32 (q, k), ids int64 (q, k)).

        Ordered by distance, ties by id.
        """
        queries = self._check_codes(packed_queries, "packed_queries")
        k = check_positive_int("k", k)
        if k > len(self):
            raise ValueError(
                f"k={k} is larger than the index ({len(self)} items); ask for at most {len(self)}"
            )
        if self._faiss is not None and self.radius_hashes:
            distances, positions = self._multihash_knn(queries, k)
        elif self._faiss is not None:
            distances, positions = self._faiss.search(queries, k)
        else:
            distances, positions = self._numpy_knn(queries, k)
        return distances.astype(np.int32), self.ids[positions]

    def _multihash_knn(self, queries, k):
        """Exact top-k through the multi-hash tables: range searches of growing radius 0, 1, ...
        below `radius_hashes`; a query is answered at the first radius r with k results or more
        (every item within r is then among them, so its k nearest, ties by id, are exact); the
        queries still short at the last radius the tables answer fall back to the flat scan."""
        distances = np.zeros((len(queries), k), np.int32)
        positions = np.zeros((len(queries), k), np.int64)
        pending = np.arange(len(queries))
        for radius in range(self.radius_hashes):
            if not len(pending):
                break
            lims, d, p = self._faiss_index_for(radius).range_search(queries[pending], radius + 1)  # d < r + 1
            lims, counts = lims.astype(np.int64), np.diff(lims).astype(np.int64)
            order = np.lexsort((p, d, np.repeat(np.arange(len(pending)), counts)))
            d, p = d[order], p[order]
            done = np.flatnonzero(counts >= k)
            take = lims[done][:, None] + np.arange(k)
            distances[pending[done]], positions[pending[done]] = d[take], p[take]
            pending = pending[counts < k]
        if len(pending):
            distances[pending], positions[pending] = self._faiss.search(queries[pending], k)
        return distances, positions

    def range_search(self, packed_queries, radius):
        """Items within Hamming distance <= radius of each query.

        Returns:
            (lims, distances, ids): the results of query i are
            `distances[lims[i]:lims[i + 1]]` and `ids[lims[i]:lims[i + 1]]`,
            ordered by distance, ties by id (the faiss layout).
        """
        queries = self._check_codes(packed_queries, "packed_queries")
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ValueError(f"radius must be a non-negative int; received radius={radius!r}")
        if self._faiss is not None:
            lims, distances, positions = self._faiss_index_for(radius).range_search(
                queries, int(radius) + 1
            )  # d < r
            lims = lims.astype(np.int64)
            order = np.lexsort((positions, distances, np.repeat(np.arange(len(queries)), np.diff(lims))))
            distances, positions = distances[order], positions[order]
        else:
            lims, distances, positions = self._numpy_range(queries, int(radius))
        return lims.astype(np.int64), distances.astype(np.int32), self.ids[positions]

    def _faiss_index_for(self, radius):
        """The multi-hash index when it answers this radius exactly, else the flat one."""
        if self.radius_hashes is None or radius >= self.radius_hashes or len(self) == 0:
            return self._faiss
        if self._multihash is None:
            import faiss

            hashes = self.radius_hashes
            self._multihash = faiss.IndexBinaryMultiHash(
                self.code_size * 8, hashes, self.code_size * 8 // hashes
            )
            self._multihash.add(self._codes_view())
        return self._multihash

    def _chunks(self, queries):
        db_columns = _word_columns(_as_words(self._codes))
        rows = max(1, min(4096, (64 << 20) // max(1, len(self) * 4)))
        q_words = _as_words(queries)
        for start in range(0, len(queries), rows):
            yield start, _hamming_words(q_words[start : start + rows], db_columns)

    def _numpy_knn(self, queries, k):
        distances = np.zeros((len(queries), k), np.int32)
        positions = np.zeros((len(queries), k), np.int64)
        for start, dist in self._chunks(queries):
            cols = nearest_positions(dist, k, distance_histogram(dist, self.code_size * 8))
            distances[start : start + len(dist)] = np.take_along_axis(dist, cols, axis=1)
            positions[start : start + len(dist)] = cols
        return distances, positions

    def _numpy_range(self, queries, radius):
        counts, all_d, all_p = np.zeros(len(queries), np.int64), [], []
        for start, dist in self._chunks(queries):
            rows, cols = np.nonzero(dist <= radius)  # row-major: rows ascending, positions ascending
            d = dist[rows, cols]
            order = np.lexsort((cols, d, rows))
            all_d.append(d[order])
            all_p.append(cols[order])
            counts[start : start + len(dist)] = np.bincount(rows, minlength=len(dist))
        lims = np.concatenate([[0], np.cumsum(counts)])
        empty = np.zeros(0, np.int64)
        return lims, np.concatenate(all_d or [empty]), np.concatenate(all_p or [empty]).astype(np.int64)

    def save(self, path):
        """Writes bits, codes and ids to one .npz file, atomically."""
        meta = {
            **self.source,
            "format": FORMAT,
            "bits": self.bits,
            "radius_hashes": self.radius_hashes,
        }
        return write_npz(path, meta, codes=self._codes_view(), ids=self.ids)  # no copy of the codes

    @classmethod
    def load(cls, path, backend="auto"):
        """Reads an index written by `save` (with its `radius_hashes` setting)."""
        meta, arrays = read_npz(
            path, FORMAT, "build one with `tfhash index` or HammingIndex.save", skip=("codes", "ids")
        )
        codes, ids, flat = _read_in_place(path, backend)
        arrays.update({k: v for k, v in (("codes", codes), ("ids", ids)) if v is not None})
        missing = [k for k in ("codes", "ids") if k not in arrays] + ["bits"] * ("bits" not in meta)
        if missing or type(meta.get("bits")) is not int:
            problem = "no " + ", ".join(missing) if missing else "bits is not an int"
            raise ValueError(f"{path}: a damaged index ({problem}); build it again with `tfhash index`")
        index = cls(meta["bits"], backend, meta.get("radius_hashes"))
        index.source = {k: v for k, v in meta.items() if k not in ("format", "bits", "radius_hashes")}
        codes, ids = arrays.pop("codes"), arrays.pop("ids")
        if flat is not None and flat.d == index.code_size * 8 and _rising(ids):
            index._check_codes(codes, "codes")  # widths and padding, read in place
            index._faiss, index.ids = flat, ids.astype(np.int64, copy=False)  # the codes stay where read
        else:
            index.add(codes, ids)  # validates widths and ids, sorts by id
        return index
