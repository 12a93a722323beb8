"""`tfhash features`: images -> a feature source that splits like the images and trains every method."""

import json
import os
import time

import numpy as np
import pytest
from scipy.io import savemat

from tfhash import cli
from tfhash.data import load_data, load_tfrecord_folder


@pytest.fixture
def image_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8),
        y_train=np.arange(120) % 4,
        x_test=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8),
        y_test=np.arange(40) % 4,
    )
    return path


FLAGS = ["--backbone", "mobilenetv3small", "--weights", "none", "--input-size", "32", "--quiet"]


class FeaturesCommandTest:
    def test_features_split_like_the_images_and_train_a_method(
        self, image_npz, tmp_path, capsys, monkeypatch
    ):
        import itertools
        import types

        from tfhash import features

        clock = itertools.count(1.0)  # one second per reading
        monkeypatch.setattr(features, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
        out = tmp_path / "feats.npz"
        meta = cli.run(["features", str(image_npz), *FLAGS, "--batch-size", "48", "--out", str(out)])
        # the rate leaves out the first batch (it traces the graph): 160 - 48 images in one tick
        assert meta["backbone"] == "mobilenetv3small" and meta["images_per_second"] == 112.0
        with np.load(out) as f:
            assert f["x_train"].shape == (120, 576) and f["x_test"].shape == (40, 576)
            assert (
                f["ids_train"].tolist() == list(range(120))
                and f["y_test"].tolist() == (np.arange(40) % 4).tolist()
            )
            assert json.loads(str(f["meta"]))["weights"] == "none"
        images, feats = load_data(image_npz, queries_per_class=5), load_data(out, queries_per_class=5)
        assert feats.image_shape is None and not feats.has_images and feats.feature_dim == 576
        np.testing.assert_array_equal(images.query.ids, feats.query.ids)
        np.testing.assert_array_equal(images.database.labels, feats.database.labels)
        record = cli.run(
            ["train", "tbh", "--data", str(out), "--queries-per-class", "5", "--bits", "8", "--steps", "4",
             "--steps-per-epoch", "2", "--batch-size", "50", "--out", str(tmp_path / "run")]
        )  # fmt: skip
        assert record["steps"] == 4 and record["num_database"] == 140

    def test_batches_do_not_change_the_features(self, image_npz, tmp_path, capsys):
        for batch in ("7", "64"):
            cli.run(
                [
                    "features",
                    str(image_npz),
                    *FLAGS,
                    "--batch-size",
                    batch,
                    "--out",
                    str(tmp_path / f"{batch}.npz"),
                ]
            )
        with np.load(tmp_path / "7.npz") as a, np.load(tmp_path / "64.npz") as b:
            np.testing.assert_allclose(a["x_train"], b["x_train"], rtol=1e-4, atol=1e-5)

    def test_tfrecord_format_holds_the_split(self, image_npz, tmp_path, capsys):
        out = tmp_path / "records"
        cli.run(
            [
                "features",
                str(image_npz),
                *FLAGS,
                "--format",
                "tfrecord",
                "--queries-per-class",
                "5",
                "--out",
                str(out),
            ]
        )
        data, images = load_tfrecord_folder(out), load_data(image_npz, queries_per_class=5)
        np.testing.assert_array_equal(data.query.ids, images.query.ids)
        assert data.feature_dim == 576 and len(data.train) == 140

    def test_feature_sources_and_offline_imagenet_fail_clearly(self, tmp_path, image_npz, monkeypatch):
        path = tmp_path / "f.mat"
        savemat(path, {"train_data": np.ones((6, 5)), "train_label": np.arange(6) % 3,
                       "test_data": np.ones((2, 5)), "test_label": np.arange(2)})  # fmt: skip
        with pytest.raises(SystemExit, match="tfhash features needs images, but .*f.mat holds features"):
            cli.main(["features", str(path), *FLAGS, "--out", str(tmp_path / "x.npz")])
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
        start = time.perf_counter()
        with pytest.raises(SystemExit, match="cannot download"):
            cli.main(["features", str(image_npz), "--backbone", "resnet50", "--out", str(tmp_path / "y.npz")])
        assert time.perf_counter() - start < 5
        assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


def test_a_stopped_run_resumes_where_it_stopped(image_npz, tmp_path, capsys, monkeypatch):
    """A run killed after its second save resumes from OUT.partial; the result equals one whole run."""
    from tfhash import features
    from tfhash.backbones import ApplicationBackbone

    weights = str(tmp_path / "mobilenet.weights.h5")
    ApplicationBackbone("mobilenetv3small", (16, 16, 3), input_size=32).feature_model.save_weights(weights)
    common = [str(image_npz), "--backbone", "mobilenetv3small", "--weights", weights, "--quiet"]
    common += ["--batch-size", "16"]
    flags = [*common, "--input-size", "32"]
    whole, out = tmp_path / "whole.npz", tmp_path / "feats.npz"
    cli.run(["features", *flags, "--save-every", "0", "--out", str(whole)])
    real_save = features.save_segment

    saves = []

    def killed_after_saving(*args):  # killed right after the second save
        real_save(*args)
        saves.append(args[2])
        if len(saves) % 2 == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(features, "save_segment", killed_after_saving)
    with pytest.raises(KeyboardInterrupt):
        cli.run(["features", *flags, "--save-every", "40", "--out", str(out)])
    partial = features.partial_path(out)
    segments = ["job.json", "rows-000000000000-000000000048.npy", "rows-000000000048-000000000096.npy"]
    assert sorted(os.listdir(partial)) == segments and not out.exists()  # each save: its new rows only
    monkeypatch.undo()
    capsys.readouterr()
    cli.run(["features", *flags, "--save-every", "40", "--out", str(out)])
    assert "resuming at image 96 of 160" in capsys.readouterr().out
    assert not os.path.exists(partial)
    with np.load(whole) as a, np.load(out) as b:
        np.testing.assert_allclose(b["x_train"], a["x_train"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b["x_test"], a["x_test"], rtol=1e-4, atol=1e-5)
    # another job's progress file (another input size) is not continued
    monkeypatch.setattr(features, "save_segment", killed_after_saving)
    with pytest.raises(KeyboardInterrupt):
        cli.run(["features", *flags, "--save-every", "40", "--out", str(out)])
    monkeypatch.undo()
    cli.run(["features", *common, "--input-size", "40", "--save-every", "40", "--out", str(out)])
    assert "belongs to another features job" in capsys.readouterr().out


def test_features_of_a_source_without_a_test_part_split_like_it(tmp_path, capsys):
    out = tmp_path / "digits-feats.npz"
    cli.run(["features", "digits", *FLAGS, "--out", str(out)])
    with np.load(out) as f:
        assert f["x_train"].shape == (1797, 576) and f["x_test"].shape == (0, 576)
    feats, digits = load_data(out, queries_per_class=30), load_data("digits")
    np.testing.assert_array_equal(feats.query.ids, digits.query.ids)
    assert feats.test_start is None
