import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tfhash.data.images import IMAGE_EXTENSIONS, ImageFolder, is_image_folder, read_image_folder


def save(path, pixels, format=None):
    """Writes an array (mode inferred: bool "1", (H, W, 2) "LA", ...) as an image file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format)
    return pixels


def opened(path, convert=None):
    """The pixels of an image file, optionally converted to a Pillow mode."""
    with Image.open(path) as image:
        return np.asarray(image.convert(convert) if convert else image)


def make_folder(root, classes=("cat", "dog", "eel"), per_class=3, shape=(6, 5, 3), seed=0):
    """Layout (a): random PNGs; returns {relative path: pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for name in classes:
        for i in range(per_class):
            file = f"{name}/img{i}.png"
            pixels[file] = save(pathlib.Path(root) / file, rng.integers(0, 256, shape, np.uint8))
    return pixels


class ReadImageFolderTest:
    def test_classes_by_sorted_names_and_files_by_name(self, tmp_path):
        rng = np.random.default_rng(0)
        for name, count in (("eel", 2), ("ant", 3), ("bee", 1)):
            for i in reversed(range(count)):
                save(tmp_path / name / f"{i}.png", rng.integers(0, 256, (4, 7, 3), np.uint8))
        folder = read_image_folder(tmp_path)
        assert isinstance(folder, ImageFolder) and len(folder) == 6
        assert folder.images.shape == (6, 4, 7, 3) and folder.images.dtype == np.uint8
        assert folder.class_names == ["ant", "bee", "eel"]
        assert folder.class_ids.dtype == np.int64
        assert folder.class_ids.tolist() == [0, 0, 0, 1, 2, 2]
        assert folder.files == ["ant/0.png", "ant/1.png", "ant/2.png", "bee/0.png", "eel/0.png", "eel/1.png"]
        assert folder.test_start is None

    def test_pixels_match_the_files(self, tmp_path):
        pixels = make_folder(tmp_path)
        folder = read_image_folder(tmp_path, workers=1)
        for file, image in zip(folder.files, folder.images, strict=True):
            np.testing.assert_array_equal(image, pixels[file])

    def test_grey_only_when_every_file_is_grey(self, tmp_path):
        rng = np.random.default_rng(1)
        grey = save(tmp_path / "a/0.png", rng.integers(0, 256, (5, 5), np.uint8))
        save(tmp_path / "b/0.png", rng.integers(0, 2, (5, 5)).astype(bool))
        all_grey = read_image_folder(tmp_path)
        assert all_grey.images.shape == (2, 5, 5)
        np.testing.assert_array_equal(all_grey.images[0], grey)
        assert set(np.unique(all_grey.images[1])) <= {0, 255}

        colour = save(tmp_path / "c/0.png", rng.integers(0, 256, (5, 5, 3), np.uint8))
        mixed = read_image_folder(tmp_path)
        assert mixed.images.shape == (3, 5, 5, 3)
        np.testing.assert_array_equal(mixed.images[0], np.repeat(grey[..., None], 3, axis=-1))
        np.testing.assert_array_equal(mixed.images[1], np.repeat(all_grey.images[1][..., None], 3, axis=-1))
        np.testing.assert_array_equal(mixed.images[2], colour)

    def test_alpha_is_dropped(self, tmp_path):
        rng = np.random.default_rng(2)
        rgba = save(tmp_path / "a/0.png", rng.integers(0, 256, (4, 4, 4), np.uint8))
        la = save(tmp_path / "b/0.png", rng.integers(0, 256, (4, 4, 2), np.uint8))
        folder = read_image_folder(tmp_path)
        np.testing.assert_array_equal(folder.images[0], rgba[..., :3])
        np.testing.assert_array_equal(folder.images[1], np.repeat(la[..., :1], 3, axis=-1))
        (tmp_path / "a/0.png").unlink()
        (tmp_path / "a").rmdir()
        np.testing.assert_array_equal(read_image_folder(tmp_path).images[0], la[..., 0])

    def test_grey_palette_and_16_bit_files_are_grey(self, tmp_path):
        rng = np.random.default_rng(3)
        grey = rng.integers(0, 256, (4, 4), np.uint8)
        (tmp_path / "a").mkdir()
        Image.fromarray(grey).convert("P").save(tmp_path / "a/0.png")
        assert opened(tmp_path / "a/0.png").shape == (4, 4)  # palette indices
        wide = save(tmp_path / "b/0.png", rng.integers(0, 65536, (4, 4), np.uint16))
        assert opened(tmp_path / "b/0.png").dtype == np.uint16
        folder = read_image_folder(tmp_path)
        assert folder.images.shape == (2, 4, 4)
        np.testing.assert_array_equal(folder.images[0], grey)
        np.testing.assert_array_equal(folder.images[1], np.round(wide / 257).astype(np.uint8))

    def test_colour_palette_is_rgb(self, tmp_path):
        rgb = np.random.default_rng(4).integers(0, 256, (4, 4, 3), np.uint8)
        (tmp_path / "a").mkdir()
        Image.fromarray(rgb).quantize(8).save(tmp_path / "a/0.png")
        Image.fromarray(rgb).quantize(8).save(tmp_path / "a/1.png", transparency=bytes(8))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Pillow warning about palette transparency
            folder = read_image_folder(tmp_path)
        assert folder.images.shape == (2, 4, 4, 3)
        np.testing.assert_array_equal(folder.images[0], opened(tmp_path / "a/0.png", "RGB"))
        np.testing.assert_array_equal(folder.images[1], opened(tmp_path / "a/0.png", "RGB"))

    def test_jpeg_files_are_read(self, tmp_path):
        smooth = np.linspace(0, 255, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint8)
        save(tmp_path / "a/0.jpg", smooth)
        save(tmp_path / "b/0.JPEG", smooth, format="JPEG")
        folder = read_image_folder(tmp_path)
        assert folder.files == ["a/0.jpg", "b/0.JPEG"]
        assert folder.images.shape == (2, 16, 16, 3)
        assert np.abs(folder.images.astype(int) - smooth).mean() < 8

    def test_resizes_to_image_size(self, tmp_path):
        make_folder(tmp_path, shape=(12, 10, 3))
        folder = read_image_folder(tmp_path, image_size=(6, 8))
        assert folder.images.shape == (9, 6, 8, 3)
        with Image.open(tmp_path / folder.files[0]) as image:
            resized = np.asarray(image.resize((8, 6), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(folder.images[0], resized)

    def test_mixed_sizes_default_to_the_first_file(self, tmp_path):
        rng = np.random.default_rng(5)
        first = save(tmp_path / "a/0.png", rng.integers(0, 256, (6, 9, 3), np.uint8))
        save(tmp_path / "a/1.png", rng.integers(0, 256, (20, 4, 3), np.uint8))
        same = save(tmp_path / "b/0.png", rng.integers(0, 256, (6, 9, 3), np.uint8))
        folder = read_image_folder(tmp_path)
        assert folder.images.shape == (3, 6, 9, 3)
        np.testing.assert_array_equal(folder.images[0], first)
        np.testing.assert_array_equal(folder.images[2], same)

    def test_train_test_layout(self, tmp_path):
        train = make_folder(tmp_path / "train", classes=("b", "a"), per_class=2, seed=0)
        test = make_folder(tmp_path / "test", classes=("a", "b"), per_class=1, seed=1)
        folder = read_image_folder(tmp_path)
        assert folder.class_names == ["a", "b"]
        assert folder.test_start == 4
        assert folder.files == [
            "train/a/img0.png",
            "train/a/img1.png",
            "train/b/img0.png",
            "train/b/img1.png",
            "test/a/img0.png",
            "test/b/img0.png",
        ]
        assert folder.class_ids.tolist() == [0, 0, 1, 1, 0, 1]
        pixels = {**{f"train/{k}": v for k, v in train.items()}, **{f"test/{k}": v for k, v in test.items()}}
        for file, image in zip(folder.files, folder.images, strict=True):
            np.testing.assert_array_equal(image, pixels[file])

    def test_non_image_and_hidden_entries_are_ignored(self, tmp_path):
        make_folder(tmp_path, classes=("a", "b"), per_class=2)
        (tmp_path / "a/notes.txt").write_text("not an image")
        (tmp_path / "a/.DS_Store").write_bytes(b"\0\1")
        (tmp_path / "a/.hidden.png").write_bytes(b"junk")
        (tmp_path / ".cache").mkdir()
        (tmp_path / "README.md").write_text("read me")
        (tmp_path / "a/nested").mkdir()
        folder = read_image_folder(tmp_path)
        assert folder.class_names == ["a", "b"]
        assert folder.files == ["a/img0.png", "a/img1.png", "b/img0.png", "b/img1.png"]

    def test_many_files_in_threads_match_one_thread(self, tmp_path):
        pixels = make_folder(tmp_path, classes=[f"c{i}" for i in range(10)], per_class=40, shape=(16, 16, 3))
        folder = read_image_folder(tmp_path, workers=2)
        assert folder.images.shape == (400, 16, 16, 3)
        assert np.bincount(folder.class_ids).tolist() == [40] * 10
        expected = np.stack([pixels[file] for file in folder.files])
        np.testing.assert_array_equal(folder.images, expected)

    def test_undecoded_files_split_and_decode_as_the_loaded_folder(self, tmp_path):
        from tfhash.data import load_data

        make_folder(tmp_path, per_class=8)
        save(tmp_path / "dog" / "img9.png", np.zeros((9, 7), np.uint8))  # grey and resized
        loaded = load_data(str(tmp_path), 2, seed=3)
        lazy = load_data(str(tmp_path), 2, seed=3, read_rows=False)
        for part in ("query", "database"):
            a, b = getattr(loaded, part), getattr(lazy, part)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.labels, b.labels)
            assert b.images.shape == a.images.shape and b.images.ndim == 4
            np.testing.assert_array_equal(b.images.decode(), a.images)  # fancy-indexed files
            np.testing.assert_array_equal(b.subset(slice(3, 7)).images.decode(), a.images[3:7])
        assert lazy.name == loaded.name and lazy.image_shape == loaded.image_shape
        with pytest.raises(TypeError, match="a slice or a 1-D array of indices"):
            lazy.query.images[[[0]]]

    def test_module_does_not_import_tensorflow(self):
        path = pathlib.Path(__file__).resolve().parents[1] / "tfhash" / "data" / "images.py"
        code = (
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('images', {str(path)!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=path.parents[2])


class ReadImageFolderErrorsTest:
    def test_not_a_folder(self, tmp_path):
        with pytest.raises(ValueError, match="missing.* is not a folder"):
            read_image_folder(tmp_path / "missing")

    def test_no_class_subfolders(self, tmp_path):
        save(tmp_path / "0.png", np.zeros((2, 2), np.uint8))
        with pytest.raises(ValueError, match="no class subfolders"):
            read_image_folder(tmp_path)

    def test_empty_class_is_named(self, tmp_path):
        make_folder(tmp_path, classes=("a",))
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty/labels.txt").write_text("x")
        with pytest.raises(ValueError, match="empty holds no image files"):
            read_image_folder(tmp_path)

    def test_train_test_classes_must_match(self, tmp_path):
        make_folder(tmp_path / "train", classes=("a", "b"), per_class=1)
        make_folder(tmp_path / "test", classes=("a", "c"), per_class=1)
        with pytest.raises(ValueError, match=r"only in train/: \['b'\], only in test/: \['c'\]"):
            read_image_folder(tmp_path)

    def test_corrupt_file_is_named(self, tmp_path):
        make_folder(tmp_path, classes=("a", "b"), per_class=2)
        (tmp_path / "b/bad.png").write_bytes(np.random.default_rng(6).bytes(200))
        with pytest.raises(ValueError, match="bad.png cannot be decoded.*corrupt or not an image"):
            read_image_folder(tmp_path)

    def test_truncated_file_is_named(self, tmp_path):
        make_folder(tmp_path, classes=("a",), per_class=1, shape=(32, 32, 3))
        data = (tmp_path / "a/img0.png").read_bytes()
        (tmp_path / "a/img0.png").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="img0.png cannot be decoded"):
            read_image_folder(tmp_path)

    @pytest.mark.parametrize("image_size", [(0, 4), (4,), 4, (4.0, 4), (True, 4), "ab", (4, 4, 3)])
    def test_image_size_must_be_two_positive_ints(self, tmp_path, image_size):
        make_folder(tmp_path, classes=("a",), per_class=1)
        with pytest.raises(ValueError, match="image_size must be two positive ints"):
            read_image_folder(tmp_path, image_size=image_size)


class IsImageFolderTest:
    def test_class_layout(self, tmp_path):
        make_folder(tmp_path, per_class=1)
        assert is_image_folder(tmp_path)
        assert is_image_folder(str(tmp_path))

    def test_train_test_layout(self, tmp_path):
        make_folder(tmp_path / "train", classes=("a", "b"), per_class=1)
        make_folder(tmp_path / "test", classes=("a", "b"), per_class=1)
        assert is_image_folder(tmp_path)

    def test_rejects_other_folders(self, tmp_path):
        assert not is_image_folder(tmp_path / "missing")
        assert not is_image_folder(tmp_path)  # empty
        save(tmp_path / "flat.png", np.zeros((2, 2), np.uint8))
        assert not is_image_folder(tmp_path)  # no class subfolders
        assert not is_image_folder(tmp_path / "flat.png")
        (tmp_path / "a").mkdir()
        (tmp_path / "a/labels.txt").write_text("x")
        assert not is_image_folder(tmp_path)  # a class without images

    def test_rejects_mismatched_train_test(self, tmp_path):
        make_folder(tmp_path / "train", classes=("a", "b"), per_class=1)
        make_folder(tmp_path / "test", classes=("a",), per_class=1)
        assert not is_image_folder(tmp_path)

    def test_extensions_match_in_any_case(self, tmp_path):
        assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg")
        save(tmp_path / "a/0.PNG", np.zeros((2, 2), np.uint8))
        assert is_image_folder(tmp_path)
