"""`--engine beam`: features and codes as shard folders, bit-identical to the local path, resumable,
and read by every command that reads a features or codes file."""

import importlib.util
import json
import os

import numpy as np
import pytest

from tfhash import cli, shards
from tfhash.encoder import load_codes


class ShardBoundsTest:
    def test_shards_cover_the_rows_at_batch_boundaries(self):
        bounds = shards.shard_bounds(1497, 3, 256)
        assert bounds == [(0, 512), (512, 1024), (1024, 1497)]
        for rows, count, align in [(10, 3, 1), (1000, 7, 64), (5, 9, 2), (0, 4, 16), (64, 2, 64)]:
            bounds = shards.shard_bounds(rows, count, align)
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert all(start % align == 0 for start, _ in bounds)
            assert len(bounds) == max(1, min(count, -(-rows // align)))
        with pytest.raises(ValueError, match="shard count must be 1..99999"):
            shards.shard_bounds(10, 0)

    def test_an_incomplete_or_mixed_folder_is_refused_by_name(self, tmp_path):
        job = {"format": "tfhash-codes-1", "bits": 8}
        for index in (0, 2):
            shards.write_shard(tmp_path, index, 4, index * 2, index * 2 + 2, job, {"ids": np.arange(2)})
        with pytest.raises(ValueError, match="incomplete: 2 of 4 shards missing .part-00001-of-00004.npz"):
            shards.complete_shards(tmp_path)
        shards.write_shard(tmp_path, 1, 3, 2, 4, job, {"ids": np.arange(2)})
        with pytest.raises(ValueError, match="mixes shards of 2 jobs"):
            shards.complete_shards(tmp_path)
        # a re-run of another job (another shard count) is refused before anything is computed
        with pytest.raises(ValueError, match="holds shards of another job"):
            shards.prepare_folder(tmp_path, job, 5)
        (tmp_path / "x").write_text("")
        with pytest.raises(ValueError, match="is not a folder"):
            shards.prepare_folder(tmp_path / "x", job, 2)

    def test_unread_feature_rows_split_and_read_as_the_loaded_folder(self, tmp_path):
        from tfhash.data import load_data

        rng = np.random.default_rng(0)
        x, y, cut = rng.normal(size=(100, 5)).astype(np.float32), np.arange(100) % 4, 70
        images = rng.integers(0, 256, (100, 4, 4), dtype=np.uint8)
        for rows, folder in ((x, tmp_path / "feats"), (images, tmp_path / "images")):
            folder.mkdir()
            for i, (a, b) in enumerate([(0, 40), (40, 80), (80, 100)]):
                t, q = slice(a, min(b, cut)), slice(max(a, cut), b)
                arrays = {"x_train": rows[t], "y_train": y[t], "x_test": rows[q], "y_test": y[q]}
                shards.write_shard(folder, i, 3, a, b, {"format": "tfhash-features-1"}, arrays)
        read, unread = load_data(tmp_path / "feats", 5), load_data(tmp_path / "feats", 5, read_rows=False)
        for a, b in ((read, unread), (read.validation_data(), unread.validation_data())):
            for part in ("query", "database"):
                rows = getattr(b, part).features
                assert isinstance(rows, shards.ShardRows) and rows.shape == getattr(a, part).features.shape
                np.testing.assert_array_equal(rows.decode(), getattr(a, part).features)
                np.testing.assert_array_equal(getattr(b, part).ids, getattr(a, part).ids)
        assert unread.test_start == cut and len(unread.database.features.pieces) == 4  # 3 train, 1 test
        np.testing.assert_array_equal(unread.database.features[5:9].decode(), read.database.features[5:9])
        # images are not float features: read as usual
        assert isinstance(load_data(tmp_path / "images", 5, read_rows=False).query.images, np.ndarray)

    def test_shards_that_do_not_follow_each_other_are_refused(self, tmp_path):
        job = {"format": "tfhash-codes-1"}
        shards.write_shard(tmp_path, 0, 2, 0, 2, job, {"ids": np.arange(2)})
        shards.write_shard(tmp_path, 1, 2, 3, 5, job, {"ids": np.arange(2)})
        with pytest.raises(ValueError, match="starts at row 3, not 2"):
            shards.read_shards(tmp_path)
        shards.write_shard(tmp_path, 1, 2, 2, 4, {"format": "other"}, {"ids": np.arange(2)})
        with pytest.raises(ValueError, match="belongs to another job"):
            shards.read_shards(tmp_path)

    @pytest.mark.parametrize(
        "second, message",
        [
            ({"x_train": (6, 8), "y_train": (6,), "x_test": (4, 9), "y_test": (4,)},
             r"x_test is float32 of shape \(4, 9\) where the first shard's is float32 of shape \(0, 8\)"),
            ({"x_train": (6, 8), "y_train": (6,), "x_test": (4, 8)},
             r"holds \['x_test', 'x_train', 'y_train'\] where the first shard holds"),
            ({"x_train": (6, 8), "y_train": (5,), "x_test": (4, 8), "y_test": (4,)},
             r"different numbers of rows \(x_train 6, y_train 5\)"),
            ({"x_train": (7, 8), "y_train": (7,), "x_test": (4, 8), "y_test": (4,)},
             r"holds 11 rows where its meta names rows 10\.\.20"),
        ],
    )  # fmt: skip
    def test_a_damaged_shard_is_named_by_every_reader(self, tmp_path, second, message):
        # A shard of the right job whose arrays do not fit the others (hand-edited, or written by a
        # broken worker) would concatenate into misaligned rows or a NumPy broadcasting error.
        job = {"format": "tfhash-features-1"}

        def arrays(shapes):
            return {k: np.zeros(s, np.float32 if k[0] == "x" else np.int64) for k, s in shapes.items()}

        first = {"x_train": (10, 8), "y_train": (10,), "x_test": (0, 8), "y_test": (0,)}
        shards.write_shard(tmp_path, 0, 2, 0, 10, job, arrays(first))
        shards.write_shard(tmp_path, 1, 2, 10, 20, job, arrays(second))
        for read in (
            lambda: shards.read_shards(tmp_path),
            lambda: shards.read_shards(tmp_path, unread=("x_train", "x_test")),
            lambda: shards.shard_headers(tmp_path),
        ):
            with pytest.raises(ValueError, match=f"part-00001-of-00002.npz.*{message}.*remove it and run"):
                read()
        with pytest.raises(SystemExit, match=message):
            cli.main(["info", str(tmp_path)])
        good = {"x_train": (6, 8), "y_train": (6,), "x_test": (4, 8), "y_test": (4,)}
        shards.write_shard(tmp_path, 1, 2, 10, 20, job, arrays(good))
        meta, shapes = shards.shard_headers(tmp_path)
        assert meta == job and {k: s for k, (s, _) in shapes.items()} == {
            "x_train": (16, 8), "y_train": (16,), "x_test": (4, 8), "y_test": (4,)
        }  # fmt: skip


def test_engine_errors_name_the_fix(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_beam(name, *args, **kwargs):
        if name.startswith("apache_beam") or (name == "tfhash" and args[2] and "beam" in args[2]):
            raise ImportError("No module named 'apache_beam'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_beam)
    monkeypatch.delitem(__import__("sys").modules, "tfhash.beam", raising=False)
    with pytest.raises(SystemExit, match=r'--engine beam needs Apache Beam.*pip install "tfhash\[beam\]"'):
        cli.main(["encode", "x", "--data", "digits", "--engine", "beam", "--out", str(tmp_path / "c")])
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="after -- .*are Apache Beam pipeline options"):
        cli.main(["encode", "x", "--out", str(tmp_path / "c.npz"), "--", "--runner=DataflowRunner"])
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match="is a file; --engine beam writes a folder of shards"):
        cli.main(["encode", "x", "--engine", "beam", "--out", str(tmp_path / "file")])


needs_beam = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None, reason='the Beam engine needs pip install "tfhash[beam]"'
)

BEAM = ["--engine", "beam", "--workers", "2", "--shards", "3"]


def assert_same_codes(local, sharded):
    """The codes, ids, labels and meta (model identity, data, split) of two codes files are equal;
    returns the first."""
    a, b = load_codes(local), load_codes(sharded)
    for key in ("packed_codes", "ids", "labels"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["meta"] == b["meta"]
    return a


def forbid_in_this_process(monkeypatch, module, name):
    """Makes `module.name` (a reader of pixels or features) fail in the test's process: the local
    runner's workers are other processes, so a Beam job passes only if its workers do the reading."""

    def forbidden(*args):
        raise AssertionError(f"the launching process called {module.__name__}.{name}")

    monkeypatch.setattr(module, name, forbidden)


@pytest.fixture(scope="module")
def itq_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("itq")
    cli.run(["train", "itq", "--data", "digits", "--bits", "16", "--out", str(folder / "run")])
    return folder / "run"


@needs_beam
@pytest.mark.large
class EncodeTest:
    def test_codes_are_bit_identical_and_a_lost_shard_is_recomputed(self, itq_run, tmp_path, capfd):
        local, folder = tmp_path / "local.npz", tmp_path / "beam"
        flags = ["--data", "digits", "--batch-size", "256"]
        cli.run(["encode", str(itq_run), *flags, "--out", str(local)])
        cli.run(["encode", str(itq_run), *flags, *BEAM, "--out", str(folder)])
        assert sorted(os.listdir(folder)) == [f"part-0000{i}-of-00003.npz" for i in range(3)]
        a = assert_same_codes(local, folder)
        with np.load(folder / "part-00001-of-00003.npz") as f:
            assert json.loads(str(f["meta"]))["shard"] == {"index": 1, "count": 3, "start": 512, "stop": 1024}
        # a worker killed before writing its shard: the re-run computes that shard alone
        kept = {
            n: os.stat(folder / n).st_mtime_ns for n in ("part-00000-of-00003.npz", "part-00002-of-00003.npz")
        }
        os.remove(folder / "part-00001-of-00003.npz")
        capfd.readouterr()
        with pytest.raises(ValueError, match="incomplete: 1 of 3 shards missing"):
            load_codes(folder)
        result = cli.run(["encode", str(itq_run), *flags, *BEAM, "--out", str(folder)])
        out = capfd.readouterr().out  # a worker process prints the shards it writes
        assert "2 of 3 shards already written" in out and result["computed"] == 1
        assert "wrote part-00001-of-00003.npz (rows 512..1,024)" in out
        assert {n: os.stat(folder / n).st_mtime_ns for n in kept} == kept
        np.testing.assert_array_equal(load_codes(folder)["packed_codes"], a["packed_codes"])
        # another model's codes are not mixed into the folder
        with pytest.raises(SystemExit, match="holds shards of another job"):
            cli.main(["encode", str(itq_run), *flags, "--split", "query", *BEAM, "--out", str(folder)])

    def test_shard_folders_are_read_by_index_eval_info_and_search(self, itq_run, tmp_path):
        database, queries = tmp_path / "db", tmp_path / "q.npz"
        cli.run(
            ["encode", str(itq_run), "--data", "digits", "--batch-size", "512", *BEAM, "--out", str(database)]
        )
        cli.run(["encode", str(itq_run), "--data", "digits", "--split", "query", "--out", str(queries)])
        cli.run(["encode", str(itq_run), "--data", "digits", "--out", str(tmp_path / "db.npz")])
        sharded = cli.run(["eval", str(queries), str(database)])
        assert sharded == cli.run(["eval", str(queries), str(tmp_path / "db.npz")])
        index = cli.run(["index", str(database), "--out", str(tmp_path / "index.npz")])
        single = cli.run(["index", str(tmp_path / "db.npz"), "--out", str(tmp_path / "index1.npz")])
        assert index.source == single.source and len(index) == 1497
        np.testing.assert_array_equal(index.ids, single.ids)
        np.testing.assert_array_equal(index.codes(), single.codes())
        info = cli.run(["info", str(database)])
        assert info["kind"] == "codes file, in 3 shards" and info["items"] == 1497 and "shard" not in info
        distances, ids = cli.run(
            ["search", str(itq_run), str(tmp_path / "index.npz"), "--data", "digits", "--queries", "5",
             "--out", str(tmp_path / "r.json")]
        )  # fmt: skip
        assert ids.shape == (5, 10) and np.all(np.diff(distances, axis=1) >= 0)

    def test_an_image_model_export_encodes_an_image_folder_alike(self, tmp_path, monkeypatch):
        from PIL import Image

        from tfhash.data import images as image_files

        rng = np.random.default_rng(0)
        for c in range(3):
            (tmp_path / "images" / f"c{c}").mkdir(parents=True)
            for i in range(12):
                pixels = np.clip(rng.normal(60 + 60 * c, 30, (12, 12)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "images" / f"c{c}" / f"{i}.png")
        data = ["--data", str(tmp_path / "images"), "--queries-per-class", "2"]
        cli.run(
            ["train", "greedyhash", *data, "--backbone", "conv", "--bits", "8", "--steps", "2",
             "--batch-size", "8", "--out", str(tmp_path / "run")]
        )  # fmt: skip
        flags = [*data, "--batch-size", "8"]
        cli.run(["encode", str(tmp_path / "run"), *flags, "--out", str(tmp_path / "local.npz")])

        forbid_in_this_process(monkeypatch, image_files, "_decode")
        cli.run(["encode", str(tmp_path / "run"), *flags, *BEAM, "--out", str(tmp_path / "beam")])
        assert_same_codes(tmp_path / "local.npz", tmp_path / "beam")
        assert len(os.listdir(tmp_path / "beam")) == 3


@needs_beam
@pytest.mark.large
def test_features_are_bit_identical_and_train_from_the_folder(tmp_path, capsys):
    from tfhash.backbones import ApplicationBackbone
    from tfhash.data import load_data

    rng = np.random.default_rng(0)
    images = tmp_path / "images.npz"
    np.savez(
        images,
        x_train=rng.integers(0, 256, (70, 16, 16, 3), dtype=np.uint8),
        y_train=np.arange(70) % 4,
        x_test=rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8),
        y_test=np.arange(30) % 4,
    )
    weights = str(tmp_path / "mobilenet.weights.h5")
    ApplicationBackbone("mobilenetv3small", (16, 16, 3), input_size=32).feature_model.save_weights(weights)
    flags = [str(images), "--backbone", "mobilenetv3small", "--weights", weights, "--input-size", "32"]
    flags += ["--batch-size", "16", "--quiet"]
    cli.run(["features", *flags, "--out", str(tmp_path / "local.npz")])
    cli.run(["features", *flags, *BEAM, "--out", str(tmp_path / "beam")])
    # rows 0..32, 32..64, 64..100 (batches of 16): the last shard holds the last 6 training rows
    # and the 30 test rows
    with np.load(tmp_path / "beam" / "part-00002-of-00003.npz") as f:
        assert f["x_train"].shape == (6, 576) and f["x_test"].shape == (30, 576)
    merged = shards.read_shards(tmp_path / "beam", "tfhash-features-1")[1]
    with np.load(tmp_path / "local.npz") as f:
        for key in ("x_train", "x_test", "y_train", "y_test", "ids_train", "ids_test"):
            np.testing.assert_array_equal(merged[key], f[key])
    one, sharded = load_data(tmp_path / "local.npz", 5), load_data(tmp_path / "beam", 5)
    np.testing.assert_array_equal(one.database.features, sharded.database.features)
    np.testing.assert_array_equal(one.query.ids, sharded.query.ids)
    record = cli.run(
        ["train", "itq", "--data", str(tmp_path / "beam"), "--queries-per-class", "5", "--bits", "8",
         "--out", str(tmp_path / "run")]
    )  # fmt: skip
    assert record["num_database"] == 80
    info = cli.run(["info", str(tmp_path / "beam")])
    assert info["kind"] == "data (Keras layout), in 3 shards" and info["x_train"] == [70, 576]
    with pytest.raises(SystemExit, match="needs fixed weights"):
        cli.main(["features", *flags[:3], "--weights", "none", *BEAM, "--out", str(tmp_path / "r")])


@needs_beam
@pytest.mark.large
def test_a_failed_worker_is_one_line_and_a_re_run_completes_the_folder(tmp_path):
    import functools

    from tfhash import beam
    from tfhash.testing import DoublingEncoder, rows_shard

    rows = np.arange(96, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # row i holds i

    def job(loader):
        return beam.run_job(
            tmp_path / "out", {"format": "test"}, len(rows), 3, 16,
            lambda a, b: rows[a:b], lambda a, b: {"ids": np.arange(a, b)},
            loader, rows_shard, 2, (),
        )  # fmt: skip

    with pytest.raises(RuntimeError) as failed:
        job(functools.partial(DoublingEncoder, fail_at=32))  # the second shard's first batch
    message = str(failed.value)
    assert "\n" not in message
    assert "the Beam pipeline failed: ValueError: planted failure at row 32" in message
    log = message.split("the workers' log: ")[1].split(";")[0]
    assert os.path.isfile(log)  # kept for the failure, named in the message
    os.remove(log)
    assert "part-00001-of-00003.npz" not in os.listdir(tmp_path / "out")
    computed, count, items, _ = job(DoublingEncoder)
    assert count == 3 and 1 <= computed <= 3 and items >= 32
    meta, arrays = shards.read_shards(tmp_path / "out", "test")
    np.testing.assert_array_equal(arrays["out"], rows * 2)
    np.testing.assert_array_equal(arrays["ids"], np.arange(96))


@needs_beam
@pytest.mark.large
def test_workers_decode_an_image_folder_themselves(tmp_path, monkeypatch):
    from PIL import Image

    from tfhash.backbones import ApplicationBackbone
    from tfhash.data import images as image_files

    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for split, count in (("train", 9), ("test", 4)):
        for c in range(3):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(count):
                size = (20, 18) if (split, c, i) == ("train", 1, 2) else (16, 16)  # one file is resized
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                image = Image.fromarray(pixels[..., 0] if i == 3 else pixels)  # grey files among colour
                image.save(root / split / f"c{c}" / f"{i}.png")
    weights = str(tmp_path / "mobilenet.weights.h5")
    ApplicationBackbone("mobilenetv3small", (16, 16, 3), input_size=32).feature_model.save_weights(weights)
    flags = [str(root), "--backbone", "mobilenetv3small", "--weights", weights, "--input-size", "32"]
    flags += ["--batch-size", "8", "--quiet"]
    cli.run(["features", *flags, "--out", str(tmp_path / "local.npz")])

    forbid_in_this_process(monkeypatch, image_files, "_decode")
    cli.run(["features", *flags, *BEAM, "--out", str(tmp_path / "beam")])
    meta, merged = shards.read_shards(tmp_path / "beam", "tfhash-features-1")
    with np.load(tmp_path / "local.npz") as f:
        assert f["x_train"].shape == (27, 576) and f["x_test"].shape == (12, 576)
        for key in ("x_train", "x_test", "y_train", "y_test", "ids_train", "ids_test"):
            np.testing.assert_array_equal(merged[key], f[key])
        local_meta = json.loads(str(f["meta"]))
    assert {k: meta[k] for k in ("source", "backbone", "weights")} == {
        k: local_meta[k] for k in ("source", "backbone", "weights")
    }
    # a file whose header reads but whose pixels do not: the worker's error, in one line
    monkeypatch.undo()
    broken = root / "test" / "c2" / "0.png"
    broken.write_bytes(broken.read_bytes()[:-300])
    with pytest.raises(SystemExit) as failed:
        cli.main(["features", *flags, *BEAM, "--out", str(tmp_path / "broken")])
    message = str(failed.value)
    assert "\n" not in message and "test/c2/0.png cannot be decoded" in message
    assert "Replace or delete it" in message
    os.remove(message.split("the workers' log: ")[1].split(";")[0])


@needs_beam
@pytest.mark.large
def test_workers_read_a_feature_shard_folder_themselves(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(120, 6)) + np.repeat(np.eye(4, 6) * 3, 30, axis=0)).astype(np.float32)
    y = np.repeat(np.arange(4), 30)
    order = rng.permutation(120)
    x, y = x[order], y[order]
    folder, cut = tmp_path / "feats", 90

    def write(rows):
        folder.mkdir(exist_ok=True)
        for i, (a, b) in enumerate([(0, 48), (48, 96), (96, 120)]):
            t = slice(a, min(b, cut))
            q = slice(max(a, cut), b)
            arrays = {"x_train": rows[t], "y_train": y[t], "x_test": rows[q], "y_test": y[q]}
            shards.write_shard(folder, i, 3, a, b, {"format": "tfhash-features-1"}, arrays)

    write(x)
    flags = ["--data", str(folder), "--queries-per-class", "5", "--batch-size", "16"]
    cli.run(["train", "itq", *flags[:4], "--bits", "4", "--out", str(tmp_path / "run")])
    cli.run(["encode", str(tmp_path / "run"), *flags, "--out", str(tmp_path / "local.npz")])

    forbid_in_this_process(monkeypatch, shards, "_piece")
    cli.run(["encode", str(tmp_path / "run"), *flags, *BEAM, "--out", str(tmp_path / "beam")])
    assert len(assert_same_codes(tmp_path / "local.npz", tmp_path / "beam")["ids"]) == 100
    # NaN rows in one shard: the worker that reads it names the file and the rows, in one line
    monkeypatch.undo()
    poisoned = x.copy()
    poisoned[[50, 52]] = np.nan
    write(poisoned)
    with pytest.raises(SystemExit) as failed:
        cli.main(["encode", str(tmp_path / "run"), *flags, *BEAM, "--out", str(tmp_path / "nan")])
    message = str(failed.value)
    assert "\n" not in message and "part-00001-of-00003.npz" in message and "NaN" in message
    assert "NaN or infinite values in 2 rows of x_train (rows 2, 4)" in message
    os.remove(message.split("the workers' log: ")[1].split(";")[0])
