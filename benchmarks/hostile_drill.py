"""The hostile-input drill (issue 34): malformed and hostile inputs through the CLI, classified.

    python benchmarks/hostile_drill.py [--out docs/hostile-inputs.md]

Every case builds its input in a scratch folder and runs `tfhash ...` in this process
(`tfhash.cli.main`), then classifies the outcome:

- clear: refused (exit 1 or 2) with one `error:` line that names what the case names
  (the file, key, flag or value) and no "--debug" fallback;
- unclear: refused, but the line falls back to an exception's type or misses the name;
- silent: exit 0 where the input is wrong (a wrong answer, or nothing said);
- crash: an exception escaped the CLI (a traceback);
- harm: a payload ran (its marker file appeared) or a user's file was lost or replaced;
- left behind: refused, but the output path it was given now exists, or files appeared.

Cases that must succeed (a hostile-looking but valid input) count as "ok" when they do.
The table is printed and written as Markdown with the date and the machine.
"""

import argparse
import contextlib
import io
import json
import os
import pickle
import platform
import shutil
import socket
import sys
import tempfile
import time

import numpy as np

from tfhash.testing import claiming_npz

HERE = os.path.dirname(os.path.abspath(__file__))


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def npz(path, x, y=None, **extra):
    y = np.arange(len(x)) % 3 if y is None else y
    cut = int(len(x) * 0.8)
    np.savez(path, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:], **extra)
    return path


def cifar_folder(folder, first):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = (
            first
            if i == 0
            else {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 0, 1]}
        )
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f)
    return folder


def image_folder(root, classes, size=(8, 8)):
    from PIL import Image

    for name, count in classes.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full(size, (37 * i) % 256, np.uint8)).save(
                os.path.join(root, name, f"{i}.png")
            )
    return root


def codes_file(path, bits=16, n=40, change=None):
    from tfhash.encoder import CODES_FORMAT
    from tfhash.files import write_npz

    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, (n, 2), dtype=np.uint8)
    labels = np.eye(4, dtype=np.float32)[np.arange(n) % 4]
    arrays = {"packed_codes": packed, "ids": np.arange(n), "labels": labels}
    meta = {"format": CODES_FORMAT, "bits": bits}
    for key, value in (change or {}).items():
        (meta if key == "bits" else arrays)[key] = value
    write_npz(path, meta, **arrays)
    return path


def nobits_index(source, path):
    from tfhash.files import write_npz

    with np.load(source) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in f.files if k != "meta"}
    meta.pop("bits")
    write_npz(path, meta, **arrays)


def shard_folder(folder, second_width=5, skip=()):
    """A features shard folder of two shards (rows 0..30 train, 30..60: 20 train, 10 test)."""
    from tfhash.shards import write_shard

    os.makedirs(folder)
    job = {"format": "tfhash-features-1"}
    rng = np.random.default_rng(0)
    for index, (start, stop, train, width) in enumerate(((0, 30, 30, 5), (30, 60, 20, second_width))):
        if index in skip:
            continue
        x = rng.random((stop - start, width)).astype(np.float32)
        y = np.arange(start, stop) % 2
        arrays = {"x_train": x[:train], "y_train": y[:train], "x_test": x[train:], "y_test": y[train:]}
        write_shard(folder, index, 2, start, stop, job, arrays)


def cases(root):
    """[(name, argv, names, expect_ok, setup)]: `names` are the words a clear message must hold."""
    r = lambda *p: os.path.join(root, *p)  # noqa: E731
    x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
    out = r("out")
    marker = r("ran")
    found = []

    def case(name, argv, names, expect_ok=False, setup=None):
        found.append((name, argv, names, expect_ok, setup))

    train = lambda data, *more: ["train", "itq", "--bits", "8", "--data", data, *more, "--out", out]  # noqa: E731
    # code execution
    case(
        "CIFAR-10 folder, crafted data_batch_1 (payload)",
        train(r("cifar")),
        ["data_batch_1", "refusing"],
        setup=lambda: cifar_folder(r("cifar"), Payload(marker)),
    )
    case(
        "CIFAR-10 folder holding only a crafted data_batch_1",
        train(r("lone")),
        ["data_batch_2", "missing"],
        setup=lambda: (
            os.makedirs(r("lone")),
            open(r("lone", "data_batch_1"), "wb").write(pickle.dumps(Payload(marker))),
        ),
    )
    case(
        "CIFAR-10 batch with an object array",
        train(r("objcifar")),
        ["data_batch_1", "'O8'"],
        setup=lambda: cifar_folder(r("objcifar"), {b"data": np.zeros((2, 3072), object), b"labels": [0, 1]}),
    )
    # memory
    case(
        "npz claiming 372 GiB (zip of zeros)",
        train(r("bomb.npz")),
        ["bomb.npz", "GiB"],
        setup=lambda: claiming_npz(
            r("bomb.npz"),
            {"x_train": (10**6, 10**5), "y_train": (10**6,), "x_test": (10, 10**5), "y_test": (10,)},
        ),
    )
    case("tfhash info on the 372 GiB npz (headers only)", ["info", r("bomb.npz")], [], expect_ok=True)
    case(
        "index of a codes file claiming 372 GiB",
        ["index", r("bombcodes.npz"), "--out", r("i.npz")],
        ["bombcodes.npz", "GiB"],
        setup=lambda: claiming_npz(r("bombcodes.npz"), {"packed_codes": (10**6, 10**5), "ids": (10**6,)}),
    )
    case(
        "image folder whose first file is 3000 x 3000",
        train(r("bigfirst"), "--queries-per-class", "2"),
        [],
        expect_ok=True,
        setup=lambda: (
            image_folder(r("bigfirst"), {"a": 10, "b": 10}),
            image_folder(r("bigfirst"), {"a": 1}, (3000, 3000)),
        ),
    )
    # malformed data
    for label, arrays, names in [
        ("npz with 1-D x_train", {"x": np.arange(60.0)}, ["x_train", "shape (48,)"]),
        ("npz with complex x_train", {"x": x.astype(np.complex64)}, ["x_train", "complex64"]),
        ("npz with boolean x_train", {"x": x > 0.5}, ["x_train", "bool"]),
        ("npz with NaN rows", {"x": np.where(np.arange(60)[:, None] == 3, np.nan, x)}, ["x_train", "row 3"]),
        (
            "npz with a -1 label",
            {"x": x, "y": np.where(np.arange(60) == 7, -1, np.arange(60) % 3)},
            ["y_train", "row 7"],
        ),
        ("npz with fractional labels", {"x": x, "y": np.arange(60) % 3 + 0.5}, ["y_train", "row 0"]),
        ("npz with one class", {"x": x, "y": np.zeros(60, int)}, ["same label", "two classes"]),
    ]:
        path = r(label.replace(" ", "_").replace("/", "") + ".npz")
        case(
            label,
            train(path),
            [os.path.basename(path), *names],
            setup=lambda path=path, arrays=arrays: npz(path, arrays["x"], arrays.get("y")),
        )
    case(
        "npz with an object array (pickled)",
        train(r("obj.npz")),
        ["obj.npz", "x_train", "Python objects"],
        setup=lambda: np.savez(
            r("obj.npz"),
            x_train=np.array([{"a": 1}] * 4, object),
            y_train=np.arange(4),
            x_test=np.zeros((1, 2)),
            y_test=np.arange(1),
        ),
    )
    case(
        "text file named .npz",
        train(r("text.npz")),
        ["text.npz", "not an npz"],
        setup=lambda: open(r("text.npz"), "w").write("a,b\n1,2\n"),
    )
    case(
        "truncated npz",
        train(r("trunc.npz")),
        ["trunc.npz", "damaged"],
        setup=lambda: (
            npz(r("full.npz"), x),
            open(r("trunc.npz"), "wb").write(open(r("full.npz"), "rb").read()[:300]),
        ),
    )
    case(
        ".mat with a -1 label",
        train(r("neg.mat")),
        ["neg.mat", "train_label", "row 4"],
        setup=lambda: mat(r("neg.mat"), -1),
    )
    case(
        ".mat with fractional labels",
        train(r("frac.mat")),
        ["frac.mat", "train_label"],
        setup=lambda: mat(r("frac.mat"), 0.5),
    )
    case(
        "image folder with an empty class",
        train(r("emptyclass")),
        ["emptyclass/c", "holds no image files"],
        setup=lambda: (image_folder(r("emptyclass"), {"a": 3, "b": 3}), os.makedirs(r("emptyclass", "c"))),
    )
    case(
        "image folder, train/ and test/ classes differ",
        train(r("mismatch")),
        ["only in train/: ['b']"],
        setup=lambda: (
            image_folder(r("mismatch", "train"), {"a": 3, "b": 3}),
            image_folder(r("mismatch", "test"), {"a": 2, "c": 2}),
        ),
    )
    case(
        "image folder with a text file named .png",
        train(r("badpng")),
        ["x.png"],
        setup=lambda: (
            image_folder(r("badpng"), {"a": 3, "b": 3}),
            open(r("badpng", "a", "x.png"), "w").write("no"),
        ),
    )
    case("unknown data source", train("nowhere.npz"), ["nowhere.npz"])
    # output paths
    case(
        "encode --out a FIFO",
        ["encode", r("itq"), "--data", "digits", "--out", r("fifo")],
        ["fifo", "regular file"],
        setup=lambda: os.mkfifo(r("fifo")),
    )
    case(
        "encode --out a symbolic link",
        ["encode", r("itq"), "--data", "digits", "--out", r("link")],
        ["link", "symbolic link"],
        setup=lambda: (open(r("target"), "w").write("user's"), os.symlink(r("target"), r("link"))),
    )
    case(
        "eval --out a socket",
        ["eval", r("codes.npz"), r("codes.npz"), "--out", r("sock")],
        ["sock", "regular file"],
        setup=lambda: socket.socket(socket.AF_UNIX).bind(r("sock")),
    )
    case(
        "encode --out /dev/null", ["encode", r("itq"), "--data", "digits", "--out", os.devnull], ["/dev/null"]
    )
    case(
        "train --out an existing file",
        ["train", "itq", "--out", r("afile")],
        ["afile"],
        setup=lambda: open(r("afile"), "w").write("x"),
    )
    case(
        "train --out a/../b/../c",
        ["train", "itq", "--bits", "8", "--out", r("a", "..", "b", "..", "c")],
        [],
        expect_ok=True,
    )
    case(
        "train into another method's run folder",
        ["train", "pcah", "--bits", "8", "--out", r("itq")],
        ["itq run"],
    )
    case(
        "train into a folder of hidden user files",
        ["train", "itq", "--bits", "8", "--out", r("hidden")],
        [],
        expect_ok=True,
        setup=lambda: plant(r("hidden")),
    )
    case(
        "features --format tfrecord --out an existing file",
        [
            "features",
            "digits",
            "--backbone",
            "mobilenetv3small",
            "--weights",
            "none",
            "--format",
            "tfrecord",
            "--out",
            r("mine.txt"),
        ],
        ["mine.txt"],
        setup=lambda: open(r("mine.txt"), "w").write("keep"),
    )
    # codes, index, search, bench
    for label, change, names in [
        ("codes file: width does not match bits", {"bits": 8}, ["packed_codes", "8 bits"]),
        ("codes file: int16 codes", {"packed_codes": np.zeros((40, 2), np.int16)}, ["uint8"]),
        ("codes file: fewer ids than codes", {"ids": np.arange(5)}, ["ids"]),
        ("codes file: NaN labels", {"labels": np.full((40, 4), np.nan, np.float32)}, ["labels", "row 0"]),
    ]:
        path = r(label.split(": ")[1].replace(" ", "_") + ".npz")
        case(
            "eval, " + label,
            ["eval", path, r("codes.npz")],
            [os.path.basename(path), *names],
            setup=lambda path=path, change=change: codes_file(path, change=change),
        )
    case(
        "search with an index file missing its bits",
        ["search", r("itq"), r("nobits.npz"), "--data", "digits", "--out", r("hits3.csv")],
        ["nobits.npz", "damaged index"],
        setup=lambda: nobits_index(r("index0.npz"), r("nobits.npz")),
    )
    case(
        "search an index of another split",
        ["search", r("itq"), r("index1.npz"), "--data", "digits", "--out", r("hits.csv")],
        ["database split"],
    )
    case(
        "bench --seeds 0 0 1",
        ["bench", "--methods", "itq", "--bits", "8", "--seeds", "0", "0", "1", "--out", r("bench")],
        ["seeds", "0"],
    )
    case(
        "shard folder with a shard of another width",
        train(r("wideshard")),
        ["part-00001-of-00002.npz", "x_test"],
        setup=lambda: shard_folder(r("wideshard"), second_width=6),
    )
    case(
        "shard folder missing a shard",
        ["info", r("lostshard")],
        ["lostshard", "part-00001-of-00002.npz"],
        setup=lambda: shard_folder(r("lostshard"), skip=(1,)),
    )
    # command line
    case("unknown method", ["train", "tbhh"], ["tbhh"])
    case("--bits 0", ["train", "itq", "--bits", "0"], ["--bits"])
    case("--steps ten", ["train", "tbh", "--steps", "ten"], ["--steps"])
    case("--learning-rate nan", ["train", "tbh", "--learning-rate", "nan"], ["--learning-rate"])
    case(
        "search --features of the wrong width",
        ["search", r("itq"), r("index0.npz"), "--features", r("wide.npy"), "--out", r("hits2.csv")],
        ["wide.npy", "(2, 7)"],
        setup=lambda: np.save(r("wide.npy"), np.zeros((2, 7), np.float32)),
    )
    case(
        "encode a folder that is no model",
        ["encode", r("notamodel"), "--data", "digits", "--out", r("c2.npz")],
        ["notamodel"],
        setup=lambda: os.makedirs(r("notamodel")),
    )
    return found, marker


HIDDEN = {".tmp-build/thesis.tex": "chapter", ".bashrc.tmp": "alias", ".project.tmpl": "t", ".x.tmp": "x"}


def plant(folder):
    for name, text in HIDDEN.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def planted_intact(folder):
    try:
        return all(open(os.path.join(folder, n)).read() == t for n, t in HIDDEN.items())
    except OSError:
        return False


def mat(path, bad):
    from scipy.io import savemat

    x = np.random.default_rng(0).random((40, 4))
    label = (np.arange(30) % 3).astype(float)
    label[4] = bad if bad < 0 else label[4] + bad
    savemat(
        path,
        {
            "train_data": x[:30],
            "train_label": label[None, :],
            "test_data": x[30:],
            "test_label": (np.arange(10) % 3)[None, :],
        },
    )


def run_case(argv):
    """(exit status, stderr's last line, escaped exception or None)."""
    from tfhash import cli

    err, status, escaped = io.StringIO(), 0, None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.main([str(a) for a in argv])
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
            if isinstance(stop.code, str):
                err.write(stop.code + "\n")
        except Exception as error:  # noqa: BLE001 - the drill counts these
            status, escaped = 1, error
    lines = [line for line in err.getvalue().strip().splitlines() if line.strip()]
    return status, (lines[-1] if lines else ""), escaped


def classify(root, marker, name, argv, names, expect_ok, status, line, escaped, before):
    if os.path.exists(marker):
        return "harm", "the payload ran"
    if os.path.exists(os.path.join(root, "target")) and open(os.path.join(root, "target")).read() != "user's":
        return "harm", "a linked file was overwritten"
    if (
        os.path.exists(os.path.join(root, "mine.txt"))
        and open(os.path.join(root, "mine.txt")).read() != "keep"
    ):
        return "harm", "the user's file was replaced"
    if "hidden" in name and not planted_intact(os.path.join(root, "hidden")):
        return "harm", "a hidden user file was removed"
    if escaped is not None:
        return "crash", f"{type(escaped).__name__}: {escaped}"
    if expect_ok:
        if status != 0:
            return "unexpected error", line
        if "a/../b" in name and (
            os.path.exists(os.path.join(root, "a")) or os.path.exists(os.path.join(root, "b"))
        ):
            return "left behind", "stray a/ or b/"
        return "ok", ""
    if status == 0:
        return "silent", "exit 0"
    after = set(os.listdir(root))
    if after - before - {"ran"}:
        return "left behind", ", ".join(sorted(after - before))
    if not line.startswith("error:") and status != 2:
        return "unclear", line or "(nothing on stderr)"
    if "--debug" in line or any(n.lower() not in line.lower() for n in names):
        return "unclear", line
    return "clear", line


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def drill(out_md):
    from tfhash import cli

    begin = time.time()
    root = tempfile.mkdtemp(prefix="hostile-drill-")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli.main(["train", "itq", "--bits", "16", "--out", os.path.join(root, "itq")])
        cli.main(
            [
                "encode",
                os.path.join(root, "itq"),
                "--data",
                "digits",
                "--out",
                os.path.join(root, "codes.npz"),
            ]
        )
        cli.main(
            [
                "index",
                os.path.join(root, "codes.npz"),
                "--backend",
                "numpy",
                "--out",
                os.path.join(root, "index0.npz"),
            ]
        )
        cli.main(
            [
                "encode",
                os.path.join(root, "itq"),
                "--data",
                "digits",
                "--split-seed",
                "1",
                "--out",
                os.path.join(root, "codes1.npz"),
            ]
        )
        cli.main(
            [
                "index",
                os.path.join(root, "codes1.npz"),
                "--backend",
                "numpy",
                "--out",
                os.path.join(root, "index1.npz"),
            ]
        )
    rows = []
    found, marker = cases(root)
    for name, argv, names, expect_ok, setup in found:
        if setup:
            setup()
        out = os.path.join(root, "out")
        before = set(os.listdir(root)) - {"out"}
        status, line, escaped = run_case(argv)
        verdict, detail = classify(root, marker, name, argv, names, expect_ok, status, line, escaped, before)
        if os.path.isdir(out):
            shutil.rmtree(out)
        rows.append((name, status, verdict, detail))
        print(f"{verdict:>14} | {name} | {detail[:140]}", flush=True)
    counts = {}
    for _, _, verdict, _ in rows:
        counts[verdict] = counts.get(verdict, 0) + 1
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "# Hostile inputs: the drill",
        "",
        f"`python benchmarks/hostile_drill.py` on {time.strftime('%Y-%m-%d')} ({machine}; "
        f"{time.time() - begin:.0f} s in all): {len(rows)} inputs, "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + ".",
        "",
        "What each verdict means is in the script's docstring: *clear* is a refusal whose one `error:`",
        "line names the file, key or flag; *ok* is a hostile-looking input that is valid and worked.",
        "Issue 34 lists what the drill checks; `tests/test_hostile_inputs.py` holds the cases as tests.",
        "",
        "| input | exit | verdict | what the user sees |",
        "| --- | --- | --- | --- |",
    ]
    for name, status, verdict, detail in rows:
        shown = detail.replace(root, "DIR").replace("|", "\\|")
        lines.append(f"| {name} | {status} | {verdict} | {shown[:220]} |")
    if out_md:
        from tfhash.files import write_text

        write_text(out_md, "\n".join(lines) + "\n")
        print(out_md)
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join(HERE, "..", "docs", "hostile-inputs.md"))
    args = parser.parse_args()
    rows = drill(os.path.normpath(args.out))
    sys.exit(0 if all(v in ("clear", "ok") for _, _, v, _ in rows) else 1)


if __name__ == "__main__":
    main()
