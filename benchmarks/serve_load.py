"""A bounded load on `tfhash serve` (issue 32): requests/s, latency and memory, on 127.0.0.1 only.

    python benchmarks/serve_load.py [--codes 1000000] [--requests 10000] [--clients 8] [--bits 32]

Builds an ITQ model on random 64-d features and an index of `--codes` random codes of its width
(served with --allow-mismatch: the codes are synthetic), starts `tfhash serve` on a free local port,
and sends `--requests` requests from `--clients` concurrent clients, alternating an encode
(TF Serving's predict route, one row) and a search (one row, k = 10); then stops the server with
SIGTERM. Prints requests/s, p50 / p99 latency per route, the errors (must be 0) and the server's
resident memory at start and at the end; `--json FILE` also writes them.
"""

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    import httpx

    from tfhash.baselines import ITQ
    from tfhash.index import HammingIndex

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        model_path, index_path = os.path.join(folder, "model.npz"), os.path.join(folder, "index.npz")
        ITQ(args.bits, seed=0).fit(rng.random((2000, 64), dtype=np.float32)).save(model_path)
        index = HammingIndex(args.bits, "auto")
        index.add(rng.integers(0, 256, (args.codes, (args.bits + 7) // 8), dtype=np.uint8))
        index.save(index_path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfhash",
                "serve",
                model_path,
                index_path,
                "--port",
                str(port),
                "--allow-mismatch",
                "--name",
                "itq",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            start_rss = rss_mib(server.pid)
            rows = rng.random((args.requests, 64), dtype=np.float32).tolist()

            def one(n, client):
                route = "encode" if n % 2 == 0 else "search"
                began = time.perf_counter()
                if route == "encode":
                    response = client.post(
                        f"{url}/v1/models/itq:predict", json={"inputs": {"features": [rows[n]]}}
                    )
                else:
                    response = client.post(f"{url}/search", json={"features": [rows[n]], "k": 10})
                return route, time.perf_counter() - began, response.status_code == 200

            clients = [httpx.Client(timeout=60) for _ in range(args.clients)]
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda n: one(n, clients[n % args.clients]), range(args.requests)))
            seconds = time.perf_counter() - began
            end_rss = rss_mib(server.pid)
            for client in clients:
                client.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    report = {"codes": args.codes, "bits": args.bits, "requests": args.requests, "clients": args.clients,
              "requests_per_second": round(args.requests / seconds, 1),
              "errors": sum(not ok for _, _, ok in results),
              "rss_mib_start": round(start_rss, 1), "rss_mib_end": round(end_rss, 1)}  # fmt: skip
    for route in ("encode", "search"):
        latencies = np.array([t for r, t, _ in results if r == route]) * 1000
        report[f"{route}_p50_ms"] = round(float(np.percentile(latencies, 50)), 2)
        report[f"{route}_p99_ms"] = round(float(np.percentile(latencies, 99)), 2)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
