"""`tfhash serve`: one HTTP service that encodes and searches.

A trained model (a run folder, its `export/` or a baseline `model.npz`) and a Hamming index
(`tfhash index`) are loaded once; the routes:

- `POST /v1/models/<name>:predict`: TF Serving's REST request and response shapes, so that a
  client written for TF Serving works unchanged: `{"inputs": {"features": [[...], ...]}}` (columnar)
  gives `{"outputs": {"codes": [[0, 1, ...]], "packed_codes": [[...]]}}`, and `{"instances":
  [{"features": [...]}, ...]}` (rows) gives `{"predictions": [{"codes": [...], "packed_codes":
  [...]}, ...]}`;
- `POST /search`: `{"features": [[...], ...], "k": 10}` or `"radius": 2` instead of `k`, or a
  multipart upload of image files (field `images`, with `k` or `radius` as form fields) for a model
  trained on images; gives `{"results": [{"ids": [...], "distances": [...]}, ...], "model": ...}`,
  one entry per query row, nearest first (ties by id), as `tfhash search` orders them;
- `GET /health` and `GET /info` (the model's identity, bits, input width, index size).

Bad requests get a 4xx JSON `{"error": "..."}` that names the problem: a body over the size
limit (413, read no further than the limit), JSON that does not parse, a wrong feature width,
non-numbers, NaN or infinity, an empty batch or one over `max_rows`, `k` or `radius` out of range,
an image that is not one or whose header claims more pixels than `MAX_IMAGE_PIXELS` (refused
before decoding), an unknown route or model name. Encoding and searching run on worker threads,
never on the event loop. One log line per request: method, path, status, milliseconds.
"""

import io
import json
import logging
import os
import tempfile
import time

import numpy as np

from tfhash.evaluation import pack_codes
from tfhash.identity import run_split

MAX_BODY_BYTES = 16 << 20  # 16 MiB: about 3,000 rows of 1,280 float features as JSON
MAX_ROWS = 4096
MAX_IMAGE_PIXELS = 40_000_000  # a header claiming more is refused before decoding

log = logging.getLogger("tfhash.serve")


class RequestError(Exception):
    """A bad request: its HTTP status and a message that names the problem and the fix."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class SearchService:
    """The encoder and the index of one service, and what each route computes (no HTTP here).

    Args:
        model_path: a run folder, a SavedModel folder or a baseline `model.npz`.
        index_path: an index written by `tfhash index` of codes from the same model.
        name: the model name of the predict route (default: the run folder's name).
        backend: the index backend ("auto", "faiss" or "numpy").
        allow_mismatch: serve an index whose codes another model made (refused otherwise).
        max_rows: most query rows in one request.
        data: the `RetrievalData` the index was built from (optional): results then carry their
            labels, the page can pick queries from its query split, and items are drawn as images.
        batch_wait: seconds a request waits for concurrent ones to share its encoder call (0: none).
    """

    def __init__(
        self,
        model_path,
        index_path,
        name=None,
        backend="auto",
        allow_mismatch=False,
        max_rows=MAX_ROWS,
        data=None,
        batch_wait=0.002,
    ):
        from tfhash.encoder import load_encoder
        from tfhash.identity import check_same_source
        from tfhash.index import HammingIndex

        self.encoder = load_encoder(model_path)
        self.index = HammingIndex.load(index_path, backend=backend)
        if self.encoder.bits != self.index.bits:
            raise ValueError(
                f"{model_path} makes {self.encoder.bits}-bit codes but {index_path} holds "
                f"{self.index.bits}-bit codes: build the index from this model's codes (`tfhash encode`, "
                "then `tfhash index`)"
            )
        check_same_source(
            {"model": getattr(self.encoder, "identity", None)},
            self.index.source,
            (model_path, index_path),
            allow_mismatch,
            ("model",),
        )
        run = os.path.abspath(model_path)
        while os.path.basename(run) in ("export", "model.npz"):
            run = os.path.dirname(run)
        self.name = name or os.path.basename(run.rstrip(os.sep)) or "model"
        self.max_rows = int(max_rows)
        self.input_dim = int(self.encoder.input_dim)
        shape = run_split(model_path).get("image_shape")
        self.image_shape = tuple(shape) if shape else None
        self.batcher = EncodeBatcher(self._encode_now, batch_wait)
        self.data = data
        self._orders = {}  # split name -> its ids' sorting order, for `rows`
        if data is not None:
            from tfhash.serve import database_rows

            database_rows(data, self.index.ids)  # every id the index can return is in the data's database
            if data.feature_dim != self.input_dim:
                raise ValueError(
                    f"--data {data.name} has {data.feature_dim} features per item; the model encodes "
                    f"{self.input_dim}"
                )
            self.image_shape = data.image_shape or self.image_shape

    @property
    def identity(self):
        """The model's identity (`tfhash.identity`: what made it), as its export records it."""
        return getattr(self.encoder, "identity", None) or {}

    def info(self):
        return {
            "name": self.name,
            "model": self.identity,
            "bits": int(self.encoder.bits),
            "input_dim": self.input_dim,
            "index_items": len(self.index),
            "index_source": {k: v for k, v in self.index.source.items() if isinstance(v, (str, int, float))},
            "max_rows": self.max_rows,
            "data": None if self.data is None else self.data.name,
            "queries": 0 if self.data is None else len(self.data.query),
            "images": self.data is not None and self.data.image_shape is not None,
            "encoder_calls": self.batcher.calls,
            "encoded_rows": self.batcher.rows,
        }

    # === Requests ===

    def features(self, rows, what="features"):
        """A (n, input_dim) float32 array of a request's rows, or a RequestError naming the problem."""
        if not isinstance(rows, list) or not rows:
            raise RequestError(400, f"{what} must be a non-empty list of rows, each {self.input_dim} numbers")
        if len(rows) > self.max_rows:
            raise RequestError(
                413, f"{len(rows)} rows in one request; send at most {self.max_rows} per request"
            )
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != self.input_dim:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise RequestError(
                    400, f"{what} row {i} has {got}; the model encodes rows of {self.input_dim} numbers"
                )
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
                raise RequestError(400, f"{what} row {i} holds something other than numbers")
        array = np.asarray(rows, np.float64)
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
            raise RequestError(400, f"{what} row {bad} holds NaN or infinity; send finite numbers")
        return array.astype(np.float32)

    def encode(self, features):
        """{0, 1} codes of `features`, encoded together with the rows of concurrent requests."""
        return self.batcher.encode(features)

    def _encode_now(self, features):
        return np.asarray(self.encoder.encode(features), np.uint8)

    def predict(self, body):
        """TF Serving's predict: columnar ("inputs") or row ("instances") requests."""
        if not isinstance(body, dict) or ("inputs" in body) == ("instances" in body):
            raise RequestError(
                400,
                'send {"inputs": {"features": [[...], ...]}} or {"instances": [{"features": [...]}, ...]}',
            )
        if "inputs" in body:
            inputs = body["inputs"]
            rows = inputs.get("features") if isinstance(inputs, dict) else inputs
            codes = self.encode(self.features(rows, "inputs.features"))
            return {"outputs": {"codes": codes.tolist(), "packed_codes": pack_codes(codes).tolist()}}
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RequestError(400, "instances must be a list")
        rows = [item.get("features") if isinstance(item, dict) else item for item in instances]
        codes = self.encode(self.features(rows, "instances"))
        packed = pack_codes(codes)
        return {
            "predictions": [
                {"codes": c.tolist(), "packed_codes": p.tolist()} for c, p in zip(codes, packed, strict=True)
            ]
        }

    def search_rows(self, features, k=None, radius=None):
        """Top-k (or within `radius`) of each row, as `tfhash search` returns them."""
        if k is not None and radius is not None:
            raise RequestError(400, "give k or radius, not both")
        if radius is None:
            k = 10 if k is None else k
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(self.index):
                raise RequestError(
                    400, f"k must be an integer from 1 to {len(self.index)} (the index size); received {k!r}"
                )
        elif not isinstance(radius, int) or isinstance(radius, bool) or not 0 <= radius <= self.encoder.bits:
            raise RequestError(
                400, f"radius must be an integer from 0 to {self.encoder.bits}; received {radius!r}"
            )
        packed = pack_codes(self.encode(features))
        if radius is None:
            distances, ids = self.index.search(packed, k)
            pairs = zip(distances, ids, strict=True)
        else:
            lims, d, i = self.index.range_search(packed, radius)
            pairs = ((d[a:b], i[a:b]) for a, b in zip(lims[:-1], lims[1:], strict=True))
        results = [{"ids": np.asarray(i).tolist(), "distances": np.asarray(d).tolist()} for d, i in pairs]
        if self.data is not None and self.data.database.labels is not None:
            for result in results:
                result["labels"] = self.labels("database", result["ids"])
        return {"results": results, "model": self.name, "identity": self.identity}

    # === The data (with --data) ===

    def split(self, name):
        if self.data is None:
            raise RequestError(404, "this service has no data: start it with --data SOURCE")
        if name not in ("query", "database"):
            raise RequestError(404, f"no split {name!r}; query or database")
        return getattr(self.data, name)

    def rows(self, name, ids):
        """Rows of split `name` holding `ids`, or a 404 naming an unknown id (each split's id order
        is sorted once, not per request)."""
        from tfhash.serve import id_rows

        split = self.split(name)
        if name not in self._orders:
            self._orders[name] = np.argsort(split.ids, kind="stable")
        rows, missing = id_rows(split.ids, ids, self._orders[name])
        if missing.any():
            raise RequestError(404, f"no item {np.asarray(ids)[missing][0]} in the {name} split")
        return rows

    def labels(self, name, ids):
        """The class indices of each item (a list per item: sources may be multi-label)."""
        split = self.split(name)
        if split.labels is None:
            return [[] for _ in ids]
        return [np.flatnonzero(row).tolist() for row in split.labels[self.rows(name, ids)]]

    def queries(self, start=0, count=50):
        split = self.split("query")
        stop = min(len(split), start + count)
        ids = split.ids[start:stop].tolist()
        labels = self.labels("query", ids) if ids else []
        items = [
            {"index": start + n, "id": i, "labels": lab}
            for n, (i, lab) in enumerate(zip(ids, labels, strict=True))
        ]
        return {"queries": items, "total": len(split)}

    def query(self, index):
        split = self.split("query")
        if not 0 <= index < len(split):
            raise RequestError(404, f"no query {index}; the query split holds {len(split)}")
        item = int(split.ids[index])
        return {"index": index, "id": item, "labels": self.labels("query", [item])[0],
                "features": split.features[index].tolist()}  # fmt: skip

    def image_png(self, name, item):
        """The item drawn as a PNG (its features at the data's image shape, in [0, 1])."""
        from PIL import Image

        split = self.split(name)
        if self.data.image_shape is None:
            raise RequestError(404, f"{self.data.name} holds features, not images")
        row = split.features[self.rows(name, [item])[0]].reshape(self.data.image_shape)
        pixels = np.clip(np.round(row * 255.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def search(self, body):
        if not isinstance(body, dict):
            raise RequestError(400, 'send {"features": [[...], ...], "k": 10} (or "radius": R instead of k)')
        unknown = sorted(set(body) - {"features", "k", "radius"})
        if unknown:
            raise RequestError(400, f"unknown fields {unknown}; a search takes features, and k or radius")
        return self.search_rows(self.features(body.get("features")), body.get("k"), body.get("radius"))

    def search_images(self, files, k=None, radius=None):
        """`files`: [(filename, bytes)] of uploaded images, decoded as `tfhash search --images` does."""
        from tfhash.serve import load_images

        if not files:
            raise RequestError(400, "upload one or more image files in the field 'images'")
        if len(files) > self.max_rows:
            raise RequestError(413, f"{len(files)} images in one request; send at most {self.max_rows}")
        with tempfile.TemporaryDirectory(prefix="tfhash-serve-") as folder:
            paths = []
            for n, (_, content) in enumerate(files):
                path = os.path.join(folder, f"{n}.img")
                with open(path, "wb") as f:
                    f.write(content)
                check_image_header(path, n)
                paths.append(path)
            try:
                features = load_images(paths, self.input_dim, self.image_shape)
            except ValueError as err:
                raise RequestError(
                    400, str(err).replace("--images: ", "").replace(folder + os.sep, "image ")
                ) from None
        return self.search_rows(features, k, radius)


class EncodeBatcher:
    """Encodes the rows of requests that arrive together in one encoder call.

    Requests run on worker threads. The first to arrive when none is waiting leads: it waits
    `wait` seconds for others to add their rows, then encodes every row gathered (in calls of at
    most `MAX_BATCH_ROWS`) and hands each request its own codes; the others wait for theirs.
    """

    MAX_BATCH_ROWS = 8192

    def __init__(self, encode, wait=0.002):
        import threading

        self._encode, self.wait = encode, float(wait)
        self._lock = threading.Lock()
        self._pending, self._leading = [], False
        self.calls = self.rows = 0
        self._event = threading.Event

    def encode(self, features):
        item = {"features": features, "done": self._event()}
        with self._lock:
            self._pending.append(item)
            lead, self._leading = not self._leading, True
        if lead:
            if self.wait > 0:
                time.sleep(self.wait)
            with self._lock:
                batch, self._pending, self._leading = self._pending, [], False
            self._run(batch)
        item["done"].wait()
        if "error" in item:
            raise item["error"]
        return item["codes"]

    def _run(self, batch):
        start = 0
        while start < len(batch):
            stop, rows = start, 0
            while stop < len(batch) and (
                stop == start or rows + len(batch[stop]["features"]) <= self.MAX_BATCH_ROWS
            ):
                rows += len(batch[stop]["features"])
                stop += 1
            group = batch[start:stop]
            try:
                codes = self._encode(np.concatenate([item["features"] for item in group]))
                with self._lock:
                    self.calls, self.rows = self.calls + 1, self.rows + rows
                offsets = np.cumsum([0] + [len(item["features"]) for item in group])
                for item, a, b in zip(group, offsets[:-1], offsets[1:], strict=True):
                    item["codes"] = codes[a:b]
            except Exception as err:  # every request of the call gets the error
                for item in group:
                    item["error"] = err
            for item in group:
                item["done"].set()
            start = stop


def check_image_header(path, n):
    """Refuses a file that is not an image, or whose header claims more than MAX_IMAGE_PIXELS pixels,
    before any pixel is decoded."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # PIL's own limit, above ours: refused before decoding too
        raise RequestError(413, f"upload {n} claims more pixels than PIL will open") from None
    except Exception:  # PIL raises several types for a file that is not an image
        raise RequestError(400, f"upload {n} is not an image PIL can read (PNG, JPEG, ...)") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise RequestError(
            413, f"upload {n} claims {width} x {height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
        )


def create_app(service, max_body_bytes=MAX_BODY_BYTES):
    """The ASGI application (FastAPI) of `service` (a `SearchService`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from tfhash.server_page import PAGE

    app = FastAPI(title="tfhash", docs_url=None, redoc_url=None, openapi_url=None)

    async def read_body(request):
        """The body, read no further than the limit (a Content-Length over it is refused unread)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise RequestError(
                413, f"the request body is {int(declared):,} bytes, over the limit of {max_body_bytes:,}"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(413, f"the request body is over the limit of {max_body_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(request):
        body = await read_body(request)
        try:
            return json.loads(body, parse_constant=lambda name: float("nan"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the body is not JSON ({err})") from None

    @app.exception_handler(RequestError)
    async def request_error(request, err):
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, err):
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in err.errors())
        return JSONResponse({"error": f"bad request ({where})"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request, err):
        message = {
            404: f"no route {request.method} {request.url.path}; see GET /info",
            405: "method not allowed",
        }
        return JSONResponse(
            {"error": message.get(err.status_code, str(err.detail))}, status_code=err.status_code
        )

    @app.middleware("http")
    async def log_requests(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        log.info("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - start))  # fmt: skip
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return service.info()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request):
        if name != service.name:
            raise RequestError(404, f"no model {name!r}; this service serves {service.name!r}")
        return await run_in_threadpool(service.predict, await read_json(request))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE

    @app.get("/queries")
    async def queries(start: int = 0, count: int = 50):
        if start < 0 or not 1 <= count <= 1000:
            raise RequestError(400, "start must be >= 0 and count from 1 to 1000")
        return service.queries(start, count)

    @app.get("/queries/{index}")
    async def query(index: int):
        return service.query(index)

    @app.get("/images/{split}/{item}.png")
    async def image(split: str, item: int):
        return Response(await run_in_threadpool(service.image_png, split, item), media_type="image/png")

    @app.post("/search")
    async def search(request: Request):
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            # the limit first; the form parser then reads the body kept on the request
            request._body = await read_body(request)
            form = await request.form()
            files = [(f.filename, await f.read()) for f in form.getlist("images") if hasattr(f, "read")]
            k, radius = (_form_int(form, key) for key in ("k", "radius"))
            return await run_in_threadpool(service.search_images, files, k, radius)
        return await run_in_threadpool(service.search, await read_json(request))

    return app


def _form_int(form, key):
    value = form.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise RequestError(400, f"{key} must be an integer; received {value!r}") from None


def serve(service, host="127.0.0.1", port=8500, max_body_bytes=MAX_BODY_BYTES):
    """Runs the service until SIGINT or SIGTERM (in-flight requests finish first)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = uvicorn.Config(create_app(service, max_body_bytes), host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=30)  # fmt: skip
    print(f"serving {service.name} ({service.encoder.bits} bits, {len(service.index):,} codes) on "
          f"http://{host}:{port}", flush=True)  # fmt: skip
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal once it has shut down gracefully
        pass
    print("stopped: the requests in flight were answered", flush=True)
