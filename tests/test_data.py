import pickle

import numpy as np
import pytest
import tensorflow as tf
from scipy.io import savemat

from tfhash.data import (
    RetrievalData,
    Split,
    load_data,
    load_tfrecord_folder,
    sources,
    train_dataset,
    validation_split,
    write_tfrecord_folder,
)


def tiny(n=12, dim=4, classes=3, seed=0, labels=True):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, dim)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[np.arange(n) % classes] if labels else None
    split = Split(x, y, np.arange(n, dtype=np.int64) + 100)
    return RetrievalData("tiny", split, split.subset(np.arange(3)), split)


class DigitsTest:
    def test_split_follows_protocol(self):
        data = load_data("digits")
        assert (len(data.query), len(data.database), data.feature_dim, data.num_classes) == (
            300,
            1497,
            64,
            10,
        )
        assert data.train is data.database
        assert np.all(data.query.labels.sum(0) == 30)
        assert not set(data.query.ids) & set(data.database.ids)
        assert data.train.features.max() <= 1.0 and data.train.features.dtype == np.float32
        rng = np.random.default_rng(0)
        from sklearn.datasets import load_digits

        first = rng.choice(np.flatnonzero(load_digits().target == 0), 30, replace=False)
        assert np.array_equal(data.query.ids[:30], first)
        assert np.array_equal(load_data("digits").query.ids, data.query.ids)


class SourcesTest:
    def test_npz_in_keras_layout(self, tmp_path):
        rng = np.random.default_rng(0)
        path = tmp_path / "small.npz"
        np.savez(
            path,
            x_train=rng.integers(0, 256, (40, 3, 3), dtype=np.uint8),
            y_train=np.arange(40) % 4,
            x_test=rng.integers(0, 256, (8, 3, 3), dtype=np.uint8),
            y_test=np.arange(8) % 4,
        )
        data = load_data(path, queries_per_class=2)
        assert (len(data.query), len(data.database), data.feature_dim) == (8, 40, 9)
        assert data.image_shape == (3, 3) and data.train.features.max() <= 1.0
        np.savez(tmp_path / "bad.npz", x=np.zeros(3))
        with pytest.raises(ValueError, match="missing"):
            load_data(tmp_path / "bad.npz")

    def test_mat_in_tbh_layout(self, tmp_path):
        path = tmp_path / "small.mat"
        savemat(
            path,
            {
                "train_data": np.ones((6, 5)),
                "train_label": np.eye(3)[np.arange(6) % 3],
                "test_data": np.zeros((2, 5)),
                "test_label": np.array([[0], [2]]),
            },
        )
        data = load_data(path)
        assert (len(data.train), len(data.query), data.num_classes) == (6, 2, 3)
        assert data.query.labels.tolist() == [[1, 0, 0], [0, 0, 1]]

    def test_cifar10_batch_folder(self, tmp_path):
        rng = np.random.default_rng(0)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 0, 1]}
            with open(tmp_path / name, "wb") as f:
                pickle.dump(batch, f)
        data = load_data(tmp_path, queries_per_class=2)
        assert (len(data.query), len(data.database), data.feature_dim) == (4, 20, 3072)
        assert data.image_shape == (32, 32, 3)

    def test_unknown_source_lists_valid_ones(self):
        with pytest.raises(ValueError, match="valid sources: digits"):
            load_data("imagenet")

    def test_offline_keras_dataset_says_to_pass_a_file(self, monkeypatch):
        import keras

        def offline():
            raise OSError("no network")

        monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
        with pytest.raises(ValueError, match="Pass a local file"):
            sources.load_keras_dataset("mnist")


class TFRecordTest:
    def test_write_then_read_round_trip(self, tmp_path):
        data = tiny()
        write_tfrecord_folder(data, tmp_path)
        back = load_tfrecord_folder(tmp_path)
        assert np.array_equal(back.train.features, data.train.features)
        assert np.array_equal(back.train.labels, data.train.labels)
        assert np.array_equal(back.query.ids, data.query.ids)
        assert back.database is back.train
        assert sorted(p.name for p in tmp_path.iterdir()) == ["test.tfrecords", "train.tfrecords"]
        assert load_data(tmp_path).feature_dim == 4

    def test_reads_the_authors_record_layout(self, tmp_path):
        def example(i, feat, label):
            f = tf.train.Features(
                feature={
                    "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                    "feat": tf.train.Feature(float_list=tf.train.FloatList(value=feat)),
                    "label": tf.train.Feature(float_list=tf.train.FloatList(value=label)),
                }
            )
            return tf.train.Example(features=f).SerializeToString()

        for name in ("train", "test"):
            with tf.io.TFRecordWriter(str(tmp_path / f"{name}.tfrecords")) as w:
                w.write(example(7, [0.5, 1.5], [0, 1]))
                w.write(example(9, [2.5, 3.5], [1, 1]))
        data = load_tfrecord_folder(tmp_path)
        assert data.train.ids.tolist() == [7, 9] and data.train.labels.tolist() == [[0, 1], [1, 1]]

    def test_corrupt_file_gives_a_clear_error(self, tmp_path):
        write_tfrecord_folder(tiny(), tmp_path)
        raw = (tmp_path / "train.tfrecords").read_bytes()
        (tmp_path / "train.tfrecords").write_bytes(raw[:30] + b"\x00garbage" + raw[40:])
        with pytest.raises(ValueError, match="not a readable TFRecord"):
            load_tfrecord_folder(tmp_path)

    def test_unlabelled_data_round_trips_without_labels(self, tmp_path):
        write_tfrecord_folder(tiny(labels=False), tmp_path)
        data = load_tfrecord_folder(tmp_path)
        assert not data.has_labels
        with pytest.raises(ValueError, match="needs labels"):
            data.require_labels("HashNet")


class ValidationTest:
    def test_nan_features_are_rejected(self):
        x = np.ones((3, 2), np.float32)
        x[1, 0] = np.nan
        split = Split(x, None, np.arange(3))
        with pytest.raises(ValueError, match="NaN or infinite"):
            RetrievalData("bad", split, split, split)

    def test_mismatched_widths_and_empty_splits(self):
        a = Split(np.ones((3, 2), np.float32), None, np.arange(3))
        b = Split(np.ones((3, 5), np.float32), None, np.arange(3))
        with pytest.raises(ValueError, match="feature widths differ"):
            RetrievalData("bad", a, b, a)
        empty = Split(np.zeros((0, 2), np.float32), None, np.arange(0))
        with pytest.raises(ValueError, match="empty"):
            RetrievalData("bad", a, empty, a)

    def test_validation_split_is_seeded_and_disjoint(self):
        data = tiny(n=20)
        q, db = validation_split(data.train, 5, seed=1)
        assert len(q) == 5 and len(db) == 15 and not set(q.ids) & set(db.ids)
        assert np.array_equal(validation_split(data.train, 5, seed=1)[0].ids, q.ids)


class PipelineTest:
    def test_fixed_batches_seeded_shuffle(self):
        x = np.arange(50, dtype=np.float32)[:, None]
        first = [b.numpy() for b in train_dataset(x, 16, seed=3).take(4)]
        again = [b.numpy() for b in train_dataset(x, 16, seed=3).take(4)]
        assert all(b.shape == (16, 1) and b.dtype == np.float32 for b in first)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not np.array_equal(first[0].ravel(), np.arange(16))

    def test_too_few_items_for_a_batch(self):
        with pytest.raises(ValueError, match="lower --batch-size"):
            train_dataset(np.ones((5, 2)), 8)

    def test_pipelines_run_without_the_autotuner(self):
        # its thread sleeps up to a minute between passes, and fit's end waited for it to wake
        from tfhash.data import Split, batch_dataset

        x = np.arange(64, dtype=np.float32).reshape(32, 2)
        split = Split(x, None, np.arange(32), images=np.zeros((32, 4, 4), np.uint8))
        for dataset in (train_dataset(x, 8), batch_dataset(split, ("images", "index"), 8)):
            assert dataset.options().autotune.enabled is False
        features = next(iter(train_dataset(x, 8))).numpy()
        assert features.shape == (8, 2) and set(features[:, 0] // 2) <= set(range(32))  # rows of x
        np.testing.assert_array_equal(features[:, 1], features[:, 0] + 1)
        batch = next(iter(batch_dataset(split, ("images", "index"), 8)))
        assert batch["images"].shape == (8, 4, 4, 1) and batch["index"].shape == (8,)
        assert len(set(batch["index"].numpy().tolist())) == 8


@pytest.mark.large
def test_mnist_split(mnist_path):
    data = load_data(mnist_path)
    assert (len(data.query), len(data.database), data.feature_dim) == (1000, 69000, 784)
    assert np.all(data.query.labels.sum(0) == 100)


class OrderFreeTrainingTest:
    def test_first_batch_of_a_class_sorted_array_spans_every_row(self):
        x = np.repeat(np.arange(10, dtype=np.float32), 1000)[:, None]  # 10 classes stored one after another
        first = next(iter(train_dataset(x, 400, seed=0))).numpy().ravel()
        assert len(np.unique(first)) == 10 and np.bincount(first.astype(int)).max() < 0.2 * 400
        again = next(iter(train_dataset(x, 400, seed=0))).numpy().ravel()
        np.testing.assert_array_equal(first, again)
        other = next(iter(train_dataset(np.arange(10_000, dtype=np.float32)[:, None], 400, seed=1)))
        assert not np.array_equal(np.sort(other.numpy().ravel()), np.arange(400))  # not the stored order

    def test_any_epoch_can_be_rebuilt_from_seed_and_epoch(self):
        """Each epoch holds every item once, in an order of its own; a stream started at the first
        batch of epoch 1 gives epoch 1 without drawing epoch 0; another seed, another order."""
        x = np.arange(50, dtype=np.float32)[:, None]
        batches = [b.numpy().ravel() for b in train_dataset(x, 10, seed=4).take(10)]  # two epochs of 5
        epochs = [np.concatenate(batches[5 * e : 5 * e + 5]) for e in (0, 1)]
        for order in epochs:
            np.testing.assert_array_equal(np.sort(order), np.arange(50))
        assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[0], np.arange(50))
        rebuilt = [b.numpy().ravel() for b in train_dataset(x, 10, seed=4, start_batch=5).take(5)]
        np.testing.assert_array_equal(np.concatenate(rebuilt), epochs[1])
        other = np.concatenate([b.numpy().ravel() for b in train_dataset(x, 10, seed=5).take(5)])
        assert not np.array_equal(other, epochs[0])


def test_a_stream_starts_at_any_batch_as_the_whole_stream_would_go_on():
    from tfhash.data.pipeline import epoch_permutation

    x = np.arange(40, dtype=np.float32)[:, None]
    one = [b.numpy().ravel() for b in train_dataset(x, 8, seed=2, repeat=False, start_batch=15)]
    assert len(one) == 5  # batch 15 opens epoch 3
    np.testing.assert_array_equal(np.concatenate(one), epoch_permutation(40, 2, 3))
    whole = [b.numpy().ravel() for b in train_dataset(x, 8, seed=2).take(20)]
    later = [b.numpy().ravel() for b in train_dataset(x, 8, seed=2, start_batch=7).take(13)]
    np.testing.assert_array_equal(np.stack(later), np.stack(whole[7:]))
