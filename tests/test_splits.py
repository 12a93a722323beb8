"""Splits and the commands around them: the supervised subset, the train-test protocol, the split
seed, model options and image folders."""

import json

import numpy as np
import pytest

from tfhash import cli, registry
from tfhash.data import load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class SplitTest:
    def test_labelled_subset_is_seeded_disjoint_and_per_class(self, digits):
        subset = digits.labelled()
        assert len(subset) == 500 and np.all(subset.labels.sum(0) == 50)
        assert not set(subset.ids) & set(digits.query.ids)
        assert set(subset.ids) <= set(digits.database.ids)
        assert np.array_equal(load_data("digits").labelled().ids, subset.ids)
        other = load_data("digits", seed=1)
        assert not np.array_equal(other.labelled().ids, subset.ids)
        with pytest.raises(ValueError, match="lower --labelled-per-class"):
            digits.labelled(200)

    def test_labelled_subset_continues_the_query_generator(self, digits):
        from sklearn.datasets import load_digits

        rng = np.random.default_rng(0)  # the queries are drawn first, then the labelled subset

        target = load_digits().target
        for c in range(10):
            rng.choice(np.flatnonzero(target == c), 30, replace=False)
        db_class = digits.database.labels.argmax(1)
        first = np.sort(rng.choice(np.flatnonzero(db_class == 0), 50, replace=False))
        subset = digits.labelled()
        np.testing.assert_array_equal(subset.ids[subset.labels.argmax(1) == 0], digits.database.ids[first])

    def test_train_test_protocol(self, tmp_path):
        rng = np.random.default_rng(0)
        path = tmp_path / "small.npz"
        np.savez(
            path,
            x_train=rng.integers(0, 256, (80, 4, 4), dtype=np.uint8),
            y_train=np.arange(80) % 4,
            x_test=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8),
            y_test=np.arange(20) % 4,
        )
        data = load_data(path, protocol="train-test")
        assert (len(data.query), len(data.database), data.protocol) == (20, 80, "train-test")
        assert data.query.ids.tolist() == list(range(80, 100)) and data.train is data.database
        with pytest.raises(ValueError, match="digits has no test part"):
            load_data("digits", protocol="train-test")
        record = cli.run(
            [
                "train",
                "itq",
                "--data",
                str(path),
                "--protocol",
                "train-test",
                "--bits",
                "8",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        assert record["protocol"] == "train-test"
        assert {"euclidean_precision_radius_2", "euclidean_map_at_all"} <= set(record)


class SplitSeedTest:
    def test_eval_of_a_seeded_run_reproduces_its_metrics(self, tmp_path, capsys):
        out = tmp_path / "run"
        record = cli.run(
            ["train", "itq", "--bits", "16", "--seed", "1", "--split-seed", "3", "--out", str(out)]
        )
        assert (record["seed"], record["split_seed"]) == (1, 3)
        assert not np.array_equal(load_data("digits", seed=3).query.ids, load_data("digits").query.ids)
        for split in ("query", "database"):
            cli.run(["encode", str(out), "--split", split, "--out", str(tmp_path / f"{split}.npz")])
        metrics = cli.run(["eval", str(tmp_path / "query.npz"), str(tmp_path / "database.npz")])
        assert metrics["map_at_all"] == pytest.approx(record["map_at_all"], abs=1e-12)
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["split_seed"] == 3 and saved["seed"] == 1

    def test_model_seed_no_longer_moves_the_split(self, tmp_path):
        a = cli.run(["train", "lsh", "--bits", "8", "--seed", "1", "--out", str(tmp_path / "a")])
        assert a["split_seed"] == 0 and a["num_queries"] == 300


class ModelOptionTest:
    def test_train_takes_any_option_and_refuses_unknown_ones(self, tmp_path, capsys):
        record = cli.run(
            ["train", "itq", "--bits", "8", "--model-option", "iterations=3", "--out", str(tmp_path / "a")]
        )
        assert record["config"]["model"]["iterations"] == 3
        with pytest.raises(
            SystemExit, match=r"itq has no model option \['nope'\]; valid options: iterations"
        ):
            cli.main(["train", "itq", "--model-option", "nope=1", "--out", str(tmp_path / "b")])
        assert not (tmp_path / "b").exists()

    def test_bench_applies_options_where_they_exist_and_says_where_not(self, tmp_path, capsys):
        cli.run(
            ["bench", "--methods", "itq", "lsh", "--bits", "8", "--seeds", "0",
             "--model-option", "iterations=2", "--out", str(tmp_path / "b")]
        )  # fmt: skip
        assert "note: lsh has no model option iterations" in capsys.readouterr().out
        cell = json.loads((tmp_path / "b" / "cells" / "itq-8bit-seed0" / "metrics.json").read_text())
        assert cell["config"]["model"]["iterations"] == 2

    def test_methods_lists_methods_and_options(self, capsys):
        cli.run(["methods"])
        out = capsys.readouterr().out
        assert all(name in out for name in registry.method_names())
        cli.run(["methods", "tbh-vae"])
        out = capsys.readouterr().out
        assert "beta=4.0" in out and "weight of the total correlation" in out
        for method in registry.METHODS.values():
            assert all(text for _, _, text in method.options()), method.name


class ImageFolderTest:
    def test_train_itq_on_a_folder_of_pngs(self, tmp_path, capsys):
        from PIL import Image

        rng = np.random.default_rng(0)
        for c in range(10):
            folder = tmp_path / "images" / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(40):
                pixels = np.clip(rng.normal(25 * c, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        record = cli.run(
            ["train", "itq", "--data", str(tmp_path / "images"), "--bits", "16", "--out", str(tmp_path / "r")]
        )
        out = capsys.readouterr().out
        assert "20 queries per class" in out
        assert (record["num_queries"], record["num_database"]) == (200, 200)
        assert record["map_at_all"] > 0.2  # random codes: about 0.1
        data = load_data(tmp_path / "images", image_size=(6, 6))
        assert data.image_shape == (6, 6, 3) and data.feature_dim == 108


def test_sources_with_their_own_queries_draw_the_labelled_subset_from_the_database(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "own.mat"
    labels = np.arange(60) % 3
    savemat(path, {"train_data": np.random.default_rng(0).normal(size=(60, 4)), "train_label": labels,
                   "test_data": np.zeros((6, 4)), "test_label": np.arange(6) % 3})  # fmt: skip
    data = load_data(path, seed=2)
    subset = data.labelled(5)
    rng = np.random.default_rng(2)
    expected = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(3)])
    )
    np.testing.assert_array_equal(subset.ids, data.database.ids[expected])


@pytest.mark.large
def test_itq_under_gmans_protocol_reproduces_its_table(mnist_path, tmp_path):
    record = cli.run(
        ["train", "itq", "--data", str(mnist_path), "--protocol", "train-test", "--bits", "32",
         "--out", str(tmp_path / "itq")]
    )  # fmt: skip
    assert (record["num_queries"], record["num_database"]) == (10_000, 60_000)
    assert abs(record["euclidean_precision_radius_2"] - 0.3635) < 0.03  # GMAN Table 1, ITQ, 32 bits


class SourceImagesTest:
    def test_image_sources_keep_uint8_images_and_the_old_float_view(self, tmp_path):
        import pickle

        rng = np.random.default_rng(0)
        x_train, x_test = (rng.integers(0, 256, (n, 5, 5, 3), dtype=np.uint8) for n in (40, 8))
        np.savez(
            tmp_path / "c.npz",
            x_train=x_train,
            y_train=np.arange(40) % 4,
            x_test=x_test,
            y_test=np.arange(8) % 4,
        )
        data = load_data(tmp_path / "c.npz", queries_per_class=2)
        assert data.train.images.dtype == np.uint8 and data.train.images.shape[1:] == (5, 5, 3)
        assert data.image_shape == (5, 5, 3) and data.test_start == 40
        pool = np.concatenate([x_train, x_test])
        old_view = pool.reshape(48, -1).astype(np.float32) / 255.0  # what every feature method saw before
        np.testing.assert_array_equal(data.database.features, old_view[data.database.ids])
        folder = tmp_path / "cifar"
        folder.mkdir()
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 0, 1]}
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f)
        cifar = load_data(folder, queries_per_class=2)
        assert cifar.query.images.shape == (4, 32, 32, 3) and cifar.test_start == 20
        raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"].reshape(-1, 3, 32, 32)
        row = int(np.flatnonzero(cifar.database.ids >= 20)[0])
        np.testing.assert_array_equal(
            cifar.database.images[row], raw[cifar.database.ids[row] - 20].transpose(1, 2, 0)
        )

    def test_digits_float_view_is_the_protocols_features(self, digits):
        from sklearn.datasets import load_digits

        expected = (load_digits().data / 16.0).astype(np.float32)
        np.testing.assert_array_equal(digits.query.features, expected[digits.query.ids])
        assert digits.query.images.dtype == np.uint8 and digits.image_shape == (8, 8)

    def test_labelled_per_class_must_be_positive(self, digits):
        with pytest.raises(ValueError, match="labelled_per_class must be a positive int"):
            digits.labelled(0)


class TrainTestValuesTest:
    def test_euclidean_metrics_match_a_hand_made_ground_truth(self, tmp_path):
        from tfhash.baselines import load
        from tfhash.evaluation import euclidean_relevance, retrieval_metrics

        rng = np.random.default_rng(1)
        path = tmp_path / "tt.npz"
        x_train, x_test = (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8) for n in (1200, 30))
        np.savez(path, x_train=x_train, y_train=np.arange(1200) % 3, x_test=x_test, y_test=np.arange(30) % 3)
        out = tmp_path / "run"
        record = cli.run(
            [
                "train",
                "pcah",
                "--data",
                str(path),
                "--protocol",
                "train-test",
                "--bits",
                "8",
                "--out",
                str(out),
            ]
        )
        data = load_data(path, protocol="train-test")
        model = load(out / "model.npz")
        truth = euclidean_relevance(data.query.features, data.database.features, k=50)
        expected = retrieval_metrics(
            model.encode(data.query.features), model.encode(data.database.features), truth, top_k=(None, 1000)
        )
        for key in ("precision_radius_2", "map_at_1000", "map_at_all"):
            assert record[f"euclidean_{key}"] == pytest.approx(expected[key], abs=1e-12), key

    def test_folders_without_a_test_part_refuse_train_test(self, tmp_path):
        from PIL import Image

        for c in range(2):
            (tmp_path / "f" / str(c)).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((4, 4), 60 * c + i, np.uint8)).save(
                    tmp_path / "f" / str(c) / f"{i}.png"
                )
        with pytest.raises(ValueError, match="has no test part"):
            load_data(tmp_path / "f", protocol="train-test")


class DeepRunSplitTest:
    def test_encode_from_an_export_uses_the_runs_split(self, tmp_path, capsys):
        out = tmp_path / "tbh"
        flags = ["--bits", "8", "--steps", "2", "--steps-per-epoch", "2", "--batch-size", "100"]
        record = cli.run(["train", "tbh", *flags, "--seed", "1", "--split-seed", "2", "--out", str(out)])
        for split in ("query", "database"):
            cli.run(
                ["encode", str(out / "export"), "--split", split, "--out", str(tmp_path / f"{split}.npz")]
            )
        metrics = cli.run(["eval", str(tmp_path / "query.npz"), str(tmp_path / "database.npz")])
        assert metrics["map_at_all"] == pytest.approx(record["map_at_all"], abs=1e-12)

    def test_bench_refuses_to_resume_cells_of_another_split(self, tmp_path, capsys):
        flags = ["bench", "--methods", "lsh", "--bits", "8", "--seeds", "0", "--out", str(tmp_path / "b")]
        cli.run(flags)
        with pytest.raises(
            SystemExit,
            match="was run with split seed 0, protocol pooled, ties=expected on the query split, not 1",
        ):
            cli.main([*flags, "--split-seed", "1"])
        with pytest.raises(
            SystemExit, match="on the query split, not 0, pooled, ties=expected on the validation"
        ):
            cli.main([*flags, "--validation"])


class ValidationSplitTest:
    def test_validation_queries_are_held_out_database_items(self, digits):
        val = digits.validation_data()
        assert val.validation and not digits.validation
        assert len(val.query) == 300 and np.all(val.query.labels.sum(0) == 30)
        assert set(val.query.ids) <= set(digits.database.ids)
        assert not set(val.query.ids) & set(digits.query.ids)  # the real queries are never seen
        assert not set(val.query.ids) & set(val.database.ids)
        assert set(val.query.ids) | set(val.database.ids) == set(digits.database.ids)
        assert val.train is val.database
        labelled = val.labelled()
        assert not set(labelled.ids) & set(val.query.ids) and np.all(labelled.labels.sum(0) == 50)
        assert np.array_equal(load_data("digits").validation_data().query.ids, val.query.ids)
        assert not np.array_equal(load_data("digits", seed=1).validation_data().query.ids, val.query.ids)
        with pytest.raises(ValueError, match="already the validation split"):
            val.validation_data()

    def test_unlabelled_and_own_split_sources(self, tmp_path):
        from tfhash.data.dataset import RetrievalData, Split

        rng = np.random.default_rng(0)
        split = lambda n, start: Split(
            rng.normal(size=(n, 3)).astype(np.float32), None, np.arange(start, start + n)
        )  # noqa: E731
        database = split(50, 0)
        data = RetrievalData("toy", database.subset(np.arange(30)), split(8, 100), database)
        val = data.validation_data()
        assert len(val.query) == 8 and set(val.query.ids) <= set(range(50))
        assert not set(val.train.ids) & set(val.query.ids) and len(val.train) + len(val.database) > 0
        assert len(val.database) == 42

    def test_train_and_eval_record_and_reuse_the_validation_split(self, tmp_path, capsys):
        out = tmp_path / "run"
        record = cli.run(["train", "itq", "--bits", "8", "--validation", "--out", str(out)])
        assert record["validation"] is True and record["num_queries"] == 300
        assert "validation queries" in capsys.readouterr().out
        val = load_data("digits").validation_data()
        assert record["num_database"] == len(val.database)
        for part in ("query", "database"):
            cli.run(["encode", str(out), "--split", part, "--out", str(tmp_path / f"{part}.npz")])
        codes = np.load(tmp_path / "query.npz", allow_pickle=True)
        assert np.array_equal(np.sort(codes["ids"]), np.sort(val.query.ids))
        metrics = cli.run(["eval", str(tmp_path / "query.npz"), str(tmp_path / "database.npz")])
        assert metrics["map_at_all"] == pytest.approx(record["map_at_all"], abs=1e-12)
