import csv
import json

import keras
import numpy as np
import pytest

from tfhash import cli, serve
from tfhash.data import load_data
from tfhash.encoder import encode_features, load_codes, load_encoder, save_codes
from tfhash.evaluation import pack_codes
from tfhash.export import export_encoder
from tfhash.index import HammingIndex
from tfhash.models import TBH


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def itq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("itq")
    record = cli.run(["train", "itq", "--bits", "16", "--out", str(out / "run")])
    return out, record


def test_encode_index_eval_search_end_to_end(itq_run, digits, capsys):
    out, record = itq_run
    run = str(out / "run")
    cli.run(["encode", run, "--out", str(out / "db.npz")])
    cli.run(["encode", run, "--split", "query", "--out", str(out / "q.npz")])
    codes = load_codes(out / "db.npz")
    assert codes["bits"] == 16 and codes["packed_codes"].shape == (1497, 2)
    np.testing.assert_array_equal(codes["ids"], digits.database.ids)
    index = cli.run(["index", str(out / "db.npz"), "--out", str(out / "index.npz")])
    assert len(index) == 1497

    metrics = cli.run(["eval", str(out / "q.npz"), str(out / "db.npz"), "--out", str(out / "m.json")])
    assert metrics["map_at_all"] == pytest.approx(record["map_at_all"], abs=1e-12)  # same codes, same metric
    assert json.loads((out / "m.json").read_text())["map_at_all"] == metrics["map_at_all"]

    args = [run, str(out / "index.npz"), "--data", "digits", "--k", "5", "--out", str(out / "r.csv")]
    distances, ids = cli.run(["search", *args, "--grid", str(out / "grid.png"), "--grid-queries", "4"])
    rows = list(csv.DictReader(open(out / "r.csv")))
    assert len(rows) == 300 * 5 and rows[0]["query_id"] == str(digits.query.ids[0]) and rows[0]["rank"] == "1"
    assert [int(r["id"]) for r in rows[:5]] == ids[0].tolist()
    query_codes = load_codes(out / "q.npz")["packed_codes"]
    np.testing.assert_array_equal(ids, index.search(query_codes, 5)[1])  # same answer as the index itself
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "share the query's label" in capsys.readouterr().out

    matches = cli.run(
        [*["search", *args[:2]], "--data", "digits", "--radius", "1", "--out", str(out / "r.json")]
    )
    saved = json.loads((out / "r.json").read_text())
    assert len(saved) == 300 and len(saved[0]["results"]) == len(matches[0][1])
    assert all(r["distance"] <= 1 for q in saved for r in q["results"])


def test_saved_model_encoder_matches_the_model(tmp_path, digits):
    model = TBH(input_dim=64, bits=16, continuous_dim=32, hidden_dim=64, seed=0)
    model(digits.query.features[:2])
    export_encoder(model, tmp_path / "run" / "export")
    encoder = load_encoder(tmp_path / "run")  # a run folder resolves to its export/
    assert (encoder.bits, encoder.input_dim) == (16, 64)
    np.testing.assert_array_equal(
        encode_features(encoder, digits.database.features, batch_size=500),
        model.encode(digits.database.features),
    )
    with pytest.raises(ValueError, match=r"shape \(n, 64\)"):
        encoder.encode(np.zeros((2, 10)))


def test_image_files_as_queries(itq_run, digits, tmp_path):
    out, _ = itq_run
    paths = []
    for i in range(3):
        path = tmp_path / f"q{i}.png"
        keras.utils.save_img(path, digits.query.features[i].reshape(8, 8, 1) * 255.0, scale=False)
        paths.append(str(path))
    features = serve.load_images(paths, 64, digits.image_shape)
    np.testing.assert_allclose(features, digits.query.features[:3], atol=1 / 255 + 1e-6)
    encoder = load_encoder(out / "run")
    index = HammingIndex(16)
    index.add(pack_codes(encoder.encode(digits.database.features)), digits.database.ids)
    by_image = serve.search(encoder, index, features, k=3, progress=False)
    by_features = serve.search(encoder, index, digits.query.features[:3], k=3, progress=False)
    np.testing.assert_array_equal(by_image[0], by_features[0])


def test_bad_input_gives_clear_errors(itq_run, tmp_path):
    out, _ = itq_run
    with pytest.raises(ValueError, match="no encoder at"):
        load_encoder(tmp_path / "nothing")
    save_codes(tmp_path / "unlabelled.npz", np.zeros((3, 16), np.uint8), np.arange(3))
    with pytest.raises(ValueError, match="has no labels"):
        serve.evaluate_codes(tmp_path / "unlabelled.npz", tmp_path / "unlabelled.npz")
    with pytest.raises(ValueError, match="not a tfhash-codes-1 file"):
        load_codes(out / "run" / "model.npz")
    with pytest.raises(ValueError, match="only 0 and 1"):
        save_codes(tmp_path / "x.npz", np.full((3, 16), 2, np.uint8), np.arange(3))  # non-binary codes
    with pytest.raises(ValueError, match="one id per code"):
        save_codes(tmp_path / "x.npz", np.zeros((3, 16), np.uint8), np.arange(4))
    index = HammingIndex(8)
    index.add(np.zeros((4, 1), np.uint8))
    with pytest.raises(ValueError, match="16-bit codes but the index holds 8-bit"):
        serve.search(load_encoder(out / "run"), index, np.zeros((1, 64)), k=1, progress=False)
    index.save(tmp_path / "i.npz")
    with pytest.raises(SystemExit, match="give queries"):
        cli.main(["search", str(out / "run"), str(tmp_path / "i.npz")])


def test_encode_without_data_takes_the_runs_data(tmp_path, capsys):
    """`tfhash encode RUN` encodes the data the run was trained on (never digits by default); a model
    file with no run record beside it asks for --data."""
    import shutil

    x = np.random.default_rng(0).random((90, 5)).astype(np.float32)
    path = tmp_path / "feats.npz"
    np.savez(path, x_train=x[:70], y_train=np.arange(70) % 3, x_test=x[70:], y_test=np.arange(20) % 3)
    run = tmp_path / "itq"
    assert cli.main(["train", "itq", "--bits", "4", "--data", str(path), "--queries-per-class", "3",
                     "--out", str(run)]) == 0  # fmt: skip
    info = cli.run(["encode", str(run), "--out", str(tmp_path / "db.npz")])
    assert info["items"] == 90 - 9 and f"note: encoding {path}" in capsys.readouterr().out
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run / "model.npz", lone / "model.npz")
    with pytest.raises(SystemExit, match="has no record of the data it was trained on .*; pass --data"):
        cli.main(["encode", str(lone / "model.npz"), "--out", str(tmp_path / "c.npz")])


def test_search_without_out_prints_csv_and_writes_nothing(tmp_path, monkeypatch, capsys):
    run = tmp_path / "itq"
    assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
    assert cli.main(["encode", str(run), "--out", str(tmp_path / "db.npz")]) == 0
    assert (
        cli.main(["index", str(tmp_path / "db.npz"), "--backend", "numpy", "--out", str(tmp_path / "i.npz")])
        == 0
    )
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert (
        cli.main(
            ["search", str(run), str(tmp_path / "i.npz"), "--data", "digits", "--queries", "2", "--k", "3"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-7] == "query_id,rank,id,distance" and len(lines[-6:]) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_exported_packed_codes_are_numpys_packbits(tmp_path):
    """The export's packed_codes is np.packbits of its codes (most significant bit first, the last
    byte zero padded), so codes packed in the graph and in NumPy index alike."""
    import tensorflow as tf

    model = TBH(input_dim=16, bits=12, continuous_dim=8, hidden_dim=16, seed=0)
    export_encoder(model, tmp_path / "e")
    serve_fn = tf.saved_model.load(str(tmp_path / "e")).signatures["serving_default"]
    out = serve_fn(features=tf.constant(np.random.default_rng(0).random((20, 16)), tf.float32))
    codes, packed = out["codes"].numpy(), out["packed_codes"].numpy()
    assert 0 < codes.mean() < 1 and packed.shape == (20, 2)
    np.testing.assert_array_equal(packed, np.packbits(codes, axis=1))
    np.testing.assert_array_equal(packed, pack_codes(codes))
