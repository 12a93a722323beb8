"""`tfhash serve` (issue 32): a real server in a subprocess on a free localhost port, talked to over HTTP."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the test extra installs httpx (pip install -e '.[test]')")
pytest.importorskip("fastapi", reason='tfhash serve needs FastAPI: pip install "tfhash[serve]"')
pytest.importorskip("uvicorn", reason='tfhash serve needs uvicorn: pip install "tfhash[serve]"')

from tfhash import cli  # noqa: E402
from tfhash.data import load_data  # noqa: E402
from tfhash.encoder import encode_features, load_encoder  # noqa: E402
from tfhash.index import HammingIndex  # noqa: E402
from tfhash.serve import search  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A TBH run on digits (a SavedModel export), its database index, and a server on both."""
    folder = tmp_path_factory.mktemp("serve")
    run, codes, index = folder / "tbh-digits", folder / "db.npz", folder / "index.npz"
    cli.run(["train", "tbh", "--bits", "16", "--steps", "20", "--out", str(run)])
    cli.run(["encode", str(run), "--out", str(codes)])
    cli.run(["index", str(codes), "--out", str(index), "--backend", "numpy"])
    port = free_port()
    log = open(folder / "server.log", "w+")
    command = [sys.executable, "-m", "tfhash", "serve", str(run), str(index), "--port", str(port), "--data",
               "digits", "--backend", "numpy", "--max-body-mb", "0.5", "--max-rows", "500"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.time() > deadline:
            log.seek(0)
            pytest.fail(f"the server did not start: {log.read()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "run": run, "index": index, "process": process, "log": log}
    if process.poll() is None:
        process.kill()
        process.wait()


def queries(n=5):
    return load_data("digits").query.features[:n]


def test_predict_speaks_tf_servings_rest_and_equals_encode(service):
    x = queries()
    expected = encode_features(load_encoder(service["run"]), x, progress=False)
    url = f"{service['url']}/v1/models/tbh-digits:predict"
    columnar = httpx.post(url, json={"inputs": {"features": x.tolist()}}).json()
    assert np.array_equal(np.array(columnar["outputs"]["codes"]), expected)
    assert np.array_equal(np.array(columnar["outputs"]["packed_codes"]), np.packbits(expected, axis=1))
    rows = httpx.post(url, json={"instances": [{"features": row} for row in x.tolist()]}).json()
    assert np.array_equal(np.array([p["codes"] for p in rows["predictions"]]), expected)
    wrong = httpx.post(f"{service['url']}/v1/models/other:predict", json={"inputs": {"features": x.tolist()}})
    assert wrong.status_code == 404 and "'tbh-digits'" in wrong.json()["error"]


def test_concurrent_requests_share_encoder_calls_and_get_their_own_codes(service):
    """16 clients at once: each gets the codes of its own rows, and the server encodes them in fewer
    calls than requests (EncodeBatcher)."""
    import concurrent.futures

    x = load_data("digits").query.features[:16]
    expected = encode_features(load_encoder(service["run"]), x, progress=False)
    url = f"{service['url']}/v1/models/tbh-digits:predict"
    before = httpx.get(f"{service['url']}/info").json()

    def one(n):
        with httpx.Client(timeout=60) as client:
            return client.post(url, json={"inputs": {"features": [x[n].tolist()] * (1 + n % 3)}}).json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    for n, answer in enumerate(answers):
        assert np.array_equal(
            np.array(answer["outputs"]["codes"]), np.repeat(expected[n : n + 1], 1 + n % 3, 0)
        )
    after = httpx.get(f"{service['url']}/info").json()
    assert after["encoded_rows"] - before["encoded_rows"] == sum(1 + n % 3 for n in range(16))
    assert after["encoder_calls"] - before["encoder_calls"] < 16


def test_the_batcher_splits_large_batches_and_passes_errors_to_every_request():
    from tfhash.server import EncodeBatcher

    calls = []

    def encode(x):
        calls.append(len(x))
        if np.any(x < 0):
            raise ValueError("negative")
        return (x > 0.5).astype(np.uint8)

    batcher = EncodeBatcher(encode, wait=0)
    batcher.MAX_BATCH_ROWS = 4
    batch = [{"features": np.full((3, 2), v), "done": batcher._event()} for v in (0.9, 0.1, 0.7)]
    batcher._run(batch)
    assert calls == [3, 3, 3] and [item["codes"][0, 0] for item in batch] == [1, 0, 1]
    bad = [{"features": np.full((1, 2), v), "done": batcher._event()} for v in (0.9, -1.0)]
    batcher._run(bad)
    assert all(isinstance(item["error"], ValueError) and item["done"].is_set() for item in bad)


def test_search_equals_tfhash_search(service):
    x = queries()
    encoder, index = load_encoder(service["run"]), HammingIndex.load(service["index"], backend="numpy")
    distances, ids = search(encoder, index, x, k=7, progress=False)
    got = httpx.post(f"{service['url']}/search", json={"features": x.tolist(), "k": 7}).json()
    assert got["model"] == "tbh-digits" and len(got["results"]) == len(x)
    assert got["identity"] == encoder.identity and got["identity"]["method"] == "tbh"
    assert [r["ids"] for r in got["results"]] == ids.tolist()
    assert [r["distances"] for r in got["results"]] == distances.tolist()
    within = search(encoder, index, x, radius=2, progress=False)
    got = httpx.post(f"{service['url']}/search", json={"features": x.tolist(), "radius": 2}).json()
    assert [r["ids"] for r in got["results"]] == [i.tolist() for _, i in within]
    info = httpx.get(f"{service['url']}/info").json()
    assert (info["bits"], info["input_dim"], info["index_items"]) == (16, 64, len(index))


def test_with_data_results_carry_labels_and_items_are_drawn(service):
    from PIL import Image

    data = load_data("digits")
    got = httpx.post(f"{service['url']}/search", json={"features": queries(2).tolist(), "k": 4}).json()
    rows = {int(i): n for n, i in enumerate(data.database.ids)}
    for result in got["results"]:
        assert result["labels"] == [[int(data.database.labels[rows[i]].argmax())] for i in result["ids"]]
    listed = httpx.get(f"{service['url']}/queries", params={"count": 3}).json()
    assert listed["total"] == len(data.query) and [q["index"] for q in listed["queries"]] == [0, 1, 2]
    first = httpx.get(f"{service['url']}/queries/0").json()
    assert first["id"] == int(data.query.ids[0]) and np.allclose(first["features"], data.query.features[0])
    png = httpx.get(f"{service['url']}/images/database/{got['results'][0]['ids'][0]}.png")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (8, 8)
    for path, status in (("/images/database/999999.png", 404), ("/queries/100000", 404), ("/queries/x", 400),
                         ("/images/train/0.png", 404)):  # fmt: skip
        response = httpx.get(f"{service['url']}{path}")
        assert response.status_code == status and response.json()["error"], path
    page = httpx.get(f"{service['url']}/")
    assert page.status_code == 200 and "<title>tfhash search</title>" in page.text


def test_the_page_in_a_real_browser(service, tmp_path):
    """Chromium (Debian's chromium and chromium-driver) driven by selenium: load /, choose a query,
    search, see k results in the grid; a screenshot lands in the test's folder."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            pytest.skip(f"needs {program} (apt-get install chromium chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=options)
    try:
        browser.get(f"{service['url']}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#query option")) > 5)
        Select(browser.find_element(By.ID, "query")).select_by_index(3)
        k = browser.find_element(By.ID, "k")
        k.clear()
        k.send_keys("6")
        browser.find_element(By.ID, "search").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#grid .result")) == 6)
        wait.until(lambda b: all(img.get_attribute("naturalWidth") not in (None, "0")
                                 for img in b.find_elements(By.CSS_SELECTOR, "#grid img")))  # fmt: skip
        cells = browser.find_elements(By.CSS_SELECTOR, "#grid .result")
        assert all("match" in c.get_attribute("class") or "miss" in c.get_attribute("class") for c in cells)
        assert browser.find_element(By.ID, "error").text == ""
        assert browser.find_element(By.ID, "status").text == "6 results"
        browser.save_screenshot(str(tmp_path / "page.png"))
    finally:
        browser.quit()
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"


def test_an_uploaded_image_is_searched_as_the_command_reads_it(service, tmp_path):
    from PIL import Image

    from tfhash.serve import load_images

    image = (queries(1)[0].reshape(8, 8) * 255).astype(np.uint8)
    path = tmp_path / "q.png"
    Image.fromarray(image).save(path)
    encoder, index = load_encoder(service["run"]), HammingIndex.load(service["index"], backend="numpy")
    distances, ids = search(encoder, index, load_images([str(path)], 64, (8, 8)), k=5, progress=False)
    files = {"images": ("q.png", path.read_bytes(), "image/png")}
    got = httpx.post(f"{service['url']}/search", files=files, data={"k": "5"})
    assert got.status_code == 200, got.text
    assert got.json()["results"][0]["ids"] == ids[0].tolist()
    bad = httpx.post(f"{service['url']}/search", files={"images": ("x.png", b"not an image", "image/png")})
    assert bad.status_code == 400 and "upload 0 is not an image" in bad.json()["error"]


def bomb(side=10_000):
    """A small PNG whose header claims side x side pixels (a decompression bomb's shape): the header
    of a 1 x 1 PNG with its size fields rewritten, so the test never builds the image."""
    import struct
    import zlib

    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the IHDR chunk's CRC
    return bytes(data)


@pytest.mark.parametrize(
    "request_, status, message",
    [
        ({"features": [[0.0] * 63]}, 400, "row 0 has 63 values; the model encodes rows of 64"),
        ({"features": [["a"] * 64]}, 400, "row 0 holds something other than numbers"),
        ({"features": [[float("nan")] * 64]}, 400, "row 0 holds NaN or infinity"),
        ({"features": []}, 400, "must be a non-empty list"),
        ({"features": [[0.0] * 64], "k": 0}, 400, "k must be an integer from 1 to"),
        ({"features": [[0.0] * 64], "k": 10**9}, 400, "(the index size)"),
        ({"features": [[0.0] * 64], "radius": 17}, 400, "radius must be an integer from 0 to 16"),
        ({"features": [[0.0] * 64], "k": 3, "radius": 1}, 400, "give k or radius, not both"),
        ({"features": [[0.0] * 64], "top": 3}, 400, "unknown fields ['top']"),
        ({"features": [[0.0] * 64] * 501}, 413, "send at most 500 per request"),
        ("not json", 400, "the body is not JSON"),
        ("too large", 413, "over the limit of 524,288"),
        ("bomb", 413, "claims 10000 x 10000 pixels"),
        ("huge bomb", 413, "claims more pixels than PIL will open"),
        ("unknown route", 404, "no route POST /nowhere"),
    ],
)
def test_every_bad_request_gets_its_4xx_and_the_next_good_one_succeeds(service, request_, status, message):
    url = f"{service['url']}/search"
    if request_ == "not json":
        response = httpx.post(url, content=b"{features: ", headers={"content-type": "application/json"})
    elif request_ == "too large":
        response = httpx.post(url, content=b"[" + b"0," * 400_000 + b"0]")
    elif request_ == "bomb":
        response = httpx.post(url, files={"images": ("b.png", bomb(), "image/png")})
    elif request_ == "huge bomb":
        response = httpx.post(url, files={"images": ("b.png", bomb(20_000), "image/png")})
    elif request_ == "unknown route":
        response = httpx.post(f"{service['url']}/nowhere", json={})
    else:
        body = json.dumps(request_).replace("NaN", "NaN")  # Python's json writes NaN as the token NaN
        response = httpx.post(url, content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    good = httpx.post(url, json={"features": queries(1).tolist(), "k": 3})
    assert good.status_code == 200 and len(good.json()["results"][0]["ids"]) == 3


def test_one_log_line_per_request_and_a_clean_exit_on_sigterm(service):
    httpx.get(f"{service['url']}/health")
    process, log = service["process"], service["log"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log.seek(0)
    lines = log.read().splitlines()
    assert any(line.startswith("serving tbh-digits (16 bits, ") for line in lines)
    assert any(line.startswith("GET /health 200 ") and line.endswith(" ms") for line in lines)
    assert any(line.startswith("POST /search 400 ") for line in lines)
    assert "stopped: the requests in flight were answered" in lines


def test_a_missing_extra_or_a_mismatched_index_is_one_clear_error(tmp_path, monkeypatch):
    from tfhash.server import SearchService

    with pytest.raises(ValueError, match="no encoder at"):
        SearchService(tmp_path / "nothing", tmp_path / "index.npz")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    with pytest.raises(SystemExit, match=r'pip install "tfhash\[serve\]"'):
        cli.main(["serve", str(tmp_path), str(tmp_path / "index.npz")])
    assert not os.path.exists(tmp_path / "index.npz")
