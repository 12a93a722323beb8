"""Hostile inputs: nothing a user file names is executed, nothing of the user's is removed or
replaced, and every refusal is one `error:` line naming the file (issue 34)."""

import json
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from tfhash import cli, files
from tfhash.data.cifar_batches import read_batch
from tfhash.testing import claiming_npz

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class Payload:
    """Unpickled by the standard unpickler, this writes `marker` (it would be any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 2 for i in range(n)]}


def write_folder(folder, first=None, protocol=None):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(BATCHES):
        with open(folder / name, "wb") as f:
            pickle.dump(first if (i == 0 and first is not None) else batch(seed=i), f, protocol=protocol)
    return folder


def cli_error(argv, capsys):
    """(exit status, the stderr line) of a CLI call that fails."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    code = exit_info.value.code
    return (1, code) if isinstance(code, str) else (code, capsys.readouterr().err)


class CodeExecutionTest:
    def test_a_lone_crafted_batch_is_never_opened(self, tmp_path, capsys):
        marker = tmp_path / "ran"
        folder = tmp_path / "cifar"
        folder.mkdir()
        (folder / "data_batch_1").write_bytes(pickle.dumps(Payload(marker)))
        status, line = cli_error(["train", "itq", "--data", folder, "--out", tmp_path / "run"], capsys)
        assert status == 1 and not marker.exists()
        assert "data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch missing" in line

    @pytest.mark.parametrize("where", ["whole", "labels", "nested"])
    def test_a_crafted_batch_is_refused_without_running(self, tmp_path, capsys, where):
        marker = tmp_path / "ran"
        payload = Payload(marker)
        content = {
            "whole": payload,
            "labels": {**batch(), b"labels": payload},
            "nested": {**batch(), b"filenames": [b"a", (payload,)]},
        }[where]
        folder = write_folder(tmp_path / "cifar", first=content)
        status, line = cli_error(["train", "itq", "--data", folder, "--out", tmp_path / "run"], capsys)
        assert status == 1 and not marker.exists()
        assert re.search(r"data_batch_1 is not a CIFAR-10 python batch: it names builtins\.exec", line)
        assert "refusing to load it" in line and "\n" not in line.strip()
        assert not (tmp_path / "run").exists()

    @pytest.mark.parametrize("protocol", [2, 4, 5])
    def test_real_batches_read_as_pickle_wrote_them(self, tmp_path, protocol):
        original = batch(n=6, seed=3)
        path = tmp_path / "b"
        with open(path, "wb") as f:
            extra = {b"batch_label": b"training batch 1 of 5", b"filenames": [b"x.png"] * 6}
            pickle.dump({**original, **extra}, f, protocol=protocol)
        images, labels = read_batch(path)
        np.testing.assert_array_equal(images, original[b"data"])
        assert labels.tolist() == original[b"labels"] and images.flags.c_contiguous

    def test_labels_saved_as_an_array_and_fortran_order_read(self, tmp_path):
        data = np.asfortranarray(batch(n=5)[b"data"])
        path = tmp_path / "b"
        path.write_bytes(pickle.dumps({"data": data, "labels": np.arange(5, dtype=">i8")}, protocol=2))
        images, labels = read_batch(path)
        np.testing.assert_array_equal(images, data)
        assert labels.tolist() == [0, 1, 2, 3, 4]

    @pytest.mark.parametrize(
        "content, words",
        [
            ({b"data": np.zeros((2, 3072), object), b"labels": [0, 1]}, "element type 'O8'"),
            ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "element type 'f4'"),
            ({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, "not an (n, 3072) uint8 array"),
            ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
            ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "labels run 0..12"),
            ({b"labels": [0]}, "no data entry"),
            ([1, 2], "holds a list, not a dict"),
            ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1.5]}, "not all integers"),
        ],
    )
    def test_malformed_batches_are_value_errors_naming_the_file(self, tmp_path, content, words):
        path = tmp_path / "data_batch_1"
        path.write_bytes(pickle.dumps(content, protocol=2))
        with pytest.raises(ValueError, match=re.escape(words)) as error:
            read_batch(path)
        assert str(path) in str(error.value)

    def test_truncated_and_hand_made_pickles(self, tmp_path):
        path = tmp_path / "data_batch_1"
        path.write_bytes(pickle.dumps(batch(), protocol=2)[:500])
        with pytest.raises(ValueError, match="damaged pickle"):
            read_batch(path)
        # a hand-made _reconstruct of another class, and a shape that disagrees with the bytes
        path.write_bytes(b"cnumpy.core.multiarray\n_reconstruct\n(cos\nsystem\n(I0\ntS'b'\ntR.")
        with pytest.raises(ValueError, match="names os.system"):
            read_batch(path)
        reconstruct = np.zeros(1).__reduce__()[0]

        class Short:  # an array pickle whose bytes are fewer than its shape needs
            def __reduce__(self):
                return reconstruct, (np.ndarray, (0,), b"b"), (1, (2, 3072), np.dtype("u1"), False, b"0" * 10)

        path.write_bytes(pickle.dumps({b"data": Short(), b"labels": [0, 0]}, protocol=2))
        with pytest.raises(ValueError, match="shape \\(2, 3072\\) whose data holds 10 bytes"):
            read_batch(path)

    def test_no_other_unpickling_or_eval_of_user_input_in_the_package(self):
        """pickle, eval/exec, yaml.load and subprocess appear only where the module is a reader
        that restricts them (the CIFAR-10 batches, the torch file) or runs no user input."""
        root = pathlib.Path(files.__file__).resolve().parent
        allowed = {"data/cifar_batches.py", "backbones/torch_file.py", "testing.py"}
        pattern = re.compile(
            r"\bpickle\.(load|loads|Unpickler)\b|allow_pickle\s*=\s*True|(?<![\w.])(eval|exec)\(|"
            r"yaml\.(unsafe_)?load\(|\bsubprocess\b|\bmarshal\.loads?\b|\bshelve\b"
        )
        found = []
        for path in root.rglob("*.py"):
            name = path.relative_to(root).as_posix()
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and name not in allowed and not line.lstrip().startswith("#"):
                    found.append(f"{name}:{number}: {line.strip()}")
        assert found == []


USER_FILES = {
    ".tmp-build/thesis.tex": "chapter 1",
    ".bashrc.tmp": "alias ll='ls -l'",
    ".project.tmpl": "template",
    ".export-notes": "notes",
    ".features-list/a.txt": "a",
    ".tfhash-tmp-mywork12/keep.txt": "a folder named like ours, without the marker",
    ".tfhash-tmp-notes.txt": "a file named near ours",
    ".x.tmp": "dot tmp",
}


def plant(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in USER_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def assert_planted(folder):
    for name, text in USER_FILES.items():
        assert (folder / name).read_text() == text, name


class UserFilesTest:
    def test_train_and_its_rerun_keep_every_hidden_file(self, tmp_path):
        run = tmp_path / "run"
        plant(run)
        plant(run / "checkpoints")
        assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
        assert cli.main(["train", "itq", "--bits", "8", "--overwrite", "--out", str(run)]) == 0
        assert_planted(run)
        assert_planted(run / "checkpoints")

    def test_a_deep_run_with_checkpoints_keeps_them_too(self, tmp_path):
        run = tmp_path / "run"
        plant(run)
        plant(run / "checkpoints")
        argv = ["train", "sgh", "--bits", "8", "--steps", "4", "--batch-size", "16", "--out", str(run)]
        assert cli.main(argv) == 0
        assert_planted(run)
        assert_planted(run / "checkpoints")
        assert (run / "export").is_dir() and not (run / "export" / files.TEMPORARY_MARKER).exists()

    def test_bench_encode_index_search_eval_keep_them(self, tmp_path):
        plant(tmp_path)
        bench = tmp_path / "bench"
        plant(bench)
        argv = ["bench", "--methods", "itq", "--bits", "8", "--seeds", "0", "--out", str(bench)]
        assert cli.main(argv) == 0
        run = tmp_path / "itq"
        assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
        codes, index = tmp_path / "codes.npz", tmp_path / "index.npz"
        assert cli.main(["encode", str(run), "--data", "digits", "--out", str(codes)]) == 0
        query = tmp_path / "query.npz"
        assert (
            cli.main(["encode", str(run), "--data", "digits", "--split", "query", "--out", str(query)]) == 0
        )
        assert cli.main(["index", str(codes), "--out", str(index), "--backend", "numpy"]) == 0
        argv = ["search", str(run), str(index), "--data", "digits", "--queries", "2"]
        assert cli.main([*argv, "--out", str(tmp_path / "hits.csv")]) == 0
        assert cli.main(["eval", str(query), str(codes), "--out", str(tmp_path / "eval.json")]) == 0
        assert_planted(tmp_path)
        assert_planted(bench)

    def test_only_marked_temporaries_are_stale(self, tmp_path):
        """What a killed process left (atomic_path's file, atomic_folder's folder) goes; near
        names, a folder named like ours without the marker, and a link to ours stay."""
        fd, name = tempfile.mkstemp(dir=tmp_path, prefix=files.TEMPORARY_PREFIX, suffix=".npz.tmp")
        os.close(fd)
        killed_file = pathlib.Path(name)
        kept = killed_file.with_name(killed_file.name + "x")  # not a name tfhash makes
        kept.write_text("user")
        killed_folder = pathlib.Path(files.temporary_folder(tmp_path))
        (killed_folder / "weights.h5").write_text("half")
        link = tmp_path / (files.TEMPORARY_PREFIX + "abcdefgh")
        link.symlink_to(killed_folder)
        plant(tmp_path)
        removed = files.remove_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted([str(killed_file), str(killed_folder)])
        assert kept.exists() and link.is_symlink()
        assert_planted(tmp_path)

    def test_a_temporary_name_is_always_one_cleanup_recognises(self, tmp_path):
        for suffix in files.TEMPORARY_SUFFIXES:
            with files.atomic_path(tmp_path / "f", suffix=suffix) as tmp:
                open(tmp, "w").close()
                assert files.is_temporary(tmp), tmp
        with pytest.raises(ValueError, match="TEMPORARY_SUFFIXES"):
            with files.atomic_path(tmp_path / "f", suffix=".bak"):
                pass
        with files.atomic_folder(tmp_path / "folder") as tmp:
            assert files.is_temporary(tmp)
        assert os.listdir(tmp_path / "folder") == []


class OutputNodesTest:
    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory):
        root = tmp_path_factory.mktemp("nodes")
        assert cli.main(["train", "itq", "--bits", "8", "--out", str(root / "itq")]) == 0
        assert (
            cli.main(["encode", str(root / "itq"), "--data", "digits", "--out", str(root / "codes.npz")]) == 0
        )
        return root

    @pytest.mark.parametrize("kind", ["fifo", "symlink", "socket"])
    @pytest.mark.parametrize("command", ["encode", "index", "eval", "search"])
    def test_a_node_or_link_at_out_is_refused_and_left_as_it_was(self, run, tmp_path, capsys, kind, command):
        out = tmp_path / "out"
        target = tmp_path / "target.txt"
        target.write_text("user's")
        if kind == "fifo":
            os.mkfifo(out)
        elif kind == "symlink":
            out.symlink_to(target)
        else:
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(out))
        argv = {
            "encode": ["encode", run / "itq", "--data", "digits", "--out", out],
            "index": ["index", run / "codes.npz", "--backend", "numpy", "--out", out],
            "eval": ["eval", run / "codes.npz", run / "codes.npz", "--out", out],
            "search": ["search", run / "itq", run / "index.npz", "--data", "digits", "--out", out],
        }[command]
        status, line = cli_error(argv, capsys)
        assert status == 1 and str(out) in line
        assert ("symbolic link" in line) if kind == "symlink" else ("not a regular file" in line)
        assert os.path.islink(out) if kind == "symlink" else not os.path.isfile(out)
        assert target.read_text() == "user's"
        assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []

    def test_dev_null_is_never_replaced(self):
        with pytest.raises(ValueError, match="not a regular file"):
            files.check_output_file(os.devnull)
        assert not os.path.isfile(os.devnull)


class FeaturesOutputTest:
    def test_an_existing_file_for_tfrecords_is_refused_before_work(self, tmp_path, capsys):
        out = tmp_path / "mine.txt"
        out.write_text("keep me")
        argv = ["features", "digits", "--backbone", "mobilenetv3small", "--weights", "none",
                "--format", "tfrecord", "--out", out]  # fmt: skip
        status, line = cli_error(argv, capsys)
        assert status == 1 and "mine.txt exists and is not an empty folder" in line
        assert out.read_text() == "keep me" and os.listdir(tmp_path) == ["mine.txt"]

    def test_a_users_partial_folder_is_neither_continued_nor_removed(self, tmp_path):
        from tfhash import features

        out = tmp_path / "feats.npz"
        partial = pathlib.Path(features.partial_path(out))
        partial.mkdir()
        (partial / "rows-000000000000-000000000010.npy").write_bytes(b"mine")
        (partial / "results.csv").write_text("mine")
        with pytest.raises(ValueError, match="is not a progress folder of tfhash features; it is left"):
            features.load_partial(str(partial), {"format": features.PARTIAL_FORMAT}, 10, 4)
        with pytest.raises(ValueError, match="is not a progress folder"):
            features.remove_partial(str(partial))
        (partial / "job.json").write_text('{"format": "my-own-job"}')  # a job file, but not tfhash's
        with pytest.raises(ValueError, match="is not a progress folder of tfhash features"):
            features.load_partial(str(partial), {"format": features.PARTIAL_FORMAT}, 10, 4)
        with pytest.raises(ValueError, match="is not a progress folder"):
            features.remove_partial(str(partial))
        kept = ["job.json", "results.csv", "rows-000000000000-000000000010.npy"]
        assert sorted(os.listdir(partial)) == kept

    def test_a_tfhash_partial_folder_loses_only_its_own_files(self, tmp_path):
        from tfhash import features

        partial = tmp_path / "feats.npz.partial"
        job = {"format": features.PARTIAL_FORMAT, "images": "a"}
        features.save_segment(str(partial), job, 0, np.ones((3, 2)))
        (partial / "notes.txt").write_text("mine")
        assert features.load_partial(str(partial), job, 3, 2)[0] == 3
        # another job: tfhash's files go, the user's stay (and so does the folder)
        assert features.load_partial(str(partial), {**job, "images": "b"}, 3, 2) == (0, None)
        assert os.listdir(partial) == ["notes.txt"]
        (partial / "notes.txt").unlink()
        features.save_segment(str(partial), job, 0, np.ones((3, 2)))
        features.remove_partial(str(partial))
        assert not partial.exists()


def test_nothing_runs_in_a_fresh_process_either(tmp_path):
    """The CLI in its own process: the crafted batch is refused and its payload never runs."""
    marker = tmp_path / "ran"
    folder = write_folder(tmp_path / "cifar", first=Payload(marker))
    argv = [sys.executable, "-m", "tfhash", "train", "itq", "--data", str(folder)]
    argv += ["--out", str(tmp_path / "r")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and not marker.exists()
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "refusing to load it" in result.stderr


class SilentAnswersTest:
    def test_bench_refuses_a_repeated_seed(self, tmp_path, capsys):
        argv = ["bench", "--methods", "itq", "--bits", "8", "--seeds", "0", "0", "1", "--out", tmp_path / "b"]
        status, line = cli_error(argv, capsys)
        assert status == 1 and "seeds lists 0 more than once; give each once" in line

    @pytest.mark.parametrize(
        "change, words",
        [
            ({"bits": 8}, "packed_codes must be uint8 of shape (n, 1) for 8 bits"),
            ({"bits": 24}, "packed_codes must be uint8 of shape (n, 3) for 24 bits"),
            ({"bits": "16"}, "its meta gives bits='16', not a positive integer"),
            ({"packed_codes": "int16"}, "packed_codes must be uint8"),
            ({"ids": 5}, "ids must be 40 integers, one per code"),
            ({"labels": "nan"}, "label rows must be one- or multi-hot 0/1 values; row 3"),
            ({"labels": "short"}, "labels must be 40 rows"),
            ({"bits": 13}, "the 3 padding bits after bit 13 are not 0"),
        ],
    )
    def test_eval_and_index_check_codes_files(self, tmp_path, capsys, change, words):
        from tfhash.encoder import CODES_FORMAT
        from tfhash.files import write_npz

        rng = np.random.default_rng(0)
        packed = rng.integers(0, 256, (40, 2), dtype=np.uint8)
        labels = np.eye(4, dtype=np.float32)[np.arange(40) % 4]
        arrays = {"packed_codes": packed, "ids": np.arange(40), "labels": labels}
        meta = {"format": CODES_FORMAT, "bits": 16}
        if "bits" in change:
            meta["bits"] = change["bits"]
        if change.get("packed_codes"):
            arrays["packed_codes"] = packed.astype(change["packed_codes"])
        if "ids" in change:
            arrays["ids"] = np.arange(change["ids"])
        if change.get("labels") == "nan":
            arrays["labels"] = np.where(np.arange(40)[:, None] == 3, np.nan, labels).astype(np.float32)
        if change.get("labels") == "short":
            arrays["labels"] = labels[:30]
        good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
        write_npz(
            good, {"format": CODES_FORMAT, "bits": 16}, packed_codes=packed, ids=np.arange(40), labels=labels
        )
        write_npz(bad, meta, **arrays)
        for argv in (["eval", bad, good], ["eval", good, bad], ["index", bad, "--out", tmp_path / "i.npz"]):
            status, line = cli_error(argv, capsys)
            assert status == 1 and str(bad) in line and words in line, (argv, line)
        assert not (tmp_path / "i.npz").exists()

    @pytest.mark.parametrize(
        "x, words",
        [
            (np.arange(30, dtype=np.float32), "x_train has shape (30,): one value per item"),
            (np.ones((30, 4), np.complex64), "x_train is complex64; give real numbers"),
            (np.ones((30, 4), bool), "x_train is bool; give real numbers"),
        ],
    )
    def test_features_that_are_not_real_vectors_are_refused(self, tmp_path, capsys, x, words):
        path = tmp_path / "x.npz"
        np.savez(path, x_train=x, y_train=np.arange(30) % 3, x_test=x[:6], y_test=np.arange(6) % 3)
        status, line = cli_error(["train", "itq", "--data", path, "--out", tmp_path / "run"], capsys)
        assert status == 1 and words in line and str(path) in line


class LeftBehindTest:
    def test_a_run_that_fails_before_writing_leaves_no_folder(self, tmp_path, capsys):
        features = tmp_path / "f.npz"
        x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
        np.savez(features, x_train=x[:30], y_train=np.arange(30) % 3, x_test=x[30:], y_test=np.arange(10) % 3)
        argv = ["train", "gman", "--data", features, "--queries-per-class", "2", "--backbone", "conv",
                "--out", tmp_path / "new" / "run"]  # fmt: skip
        status, line = cli_error(argv, capsys)
        assert status == 1 and "GMAN needs images" in line and not (tmp_path / "new" / "run").exists()
        kept = tmp_path / "kept"
        kept.mkdir()
        (kept / "notes.txt").write_text("mine")
        status, _ = cli_error([*argv[:-1], kept], capsys)
        assert status == 1 and (kept / "notes.txt").read_text() == "mine"

    def test_dot_dots_in_out_create_no_stray_folders(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert cli.main(["train", "itq", "--bits", "8", "--out", "a/../b/../c"]) == 0
        assert sorted(os.listdir(tmp_path)) == ["c"] and (tmp_path / "c" / "metrics.json").is_file()


class WrongFolderAndLabelsTest:
    def test_a_run_folder_of_another_method_is_refused(self, tmp_path, capsys):
        run = tmp_path / "run"
        assert cli.main(["train", "pcah", "--bits", "8", "--out", str(run)]) == 0
        before = (run / "model.npz").read_bytes()
        status, line = cli_error(["train", "itq", "--bits", "8", "--out", run], capsys)
        assert status == 1 and "holds a finished pcah run (metrics.json); train itq into a new --out" in line
        assert (run / "model.npz").read_bytes() == before

    @pytest.mark.parametrize(
        "train_label, words",
        [
            (np.where(np.arange(30) == 4, -1, np.arange(30) % 3), "class ids must be >= 0; row 4"),
            (np.arange(30) % 3 + 0.5, "train_label: class ids must be integers; row 0"),
            (np.eye(3)[np.arange(30) % 3] * 2, "train_label: label rows must be one- or multi-hot 0/1"),
            (np.arange(20) % 3, "train_data has shape (30, 4) and train_label 20 labels"),
        ],
    )
    def test_mat_labels_are_checked(self, tmp_path, capsys, train_label, words):
        from scipy.io import savemat

        x = np.random.default_rng(0).random((40, 4))
        path = tmp_path / "d.mat"
        label = train_label if train_label.ndim == 2 else train_label[None, :]  # MATLAB saves vectors as rows
        savemat(path, {"train_data": x[:30], "train_label": label, "test_data": x[30:],
                       "test_label": (np.arange(10) % 3)[None, :]})  # fmt: skip
        status, line = cli_error(["train", "itq", "--data", path, "--out", tmp_path / "run"], capsys)
        assert status == 1 and words in line and str(path) in line

    def test_search_refuses_an_index_of_another_split(self, tmp_path, capsys):
        run, codes, index = tmp_path / "itq", tmp_path / "codes.npz", tmp_path / "index.npz"
        assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
        argv = ["encode", str(run), "--data", "digits", "--split-seed", "1", "--out", str(codes)]
        assert cli.main(argv) == 0
        assert cli.main(["index", str(codes), "--out", str(index), "--backend", "numpy"]) == 0
        argv = ["search", run, index, "--data", "digits", "--split-seed", "0", "--out", tmp_path / "hits.csv"]
        status, line = cli_error(argv, capsys)
        assert status == 1 and "are not in digits's database split" in line
        assert not (tmp_path / "hits.csv").exists()


class MemoryTest:
    SHAPES = {"x_train": (10**6, 10**5), "y_train": (10**6,), "x_test": (10, 10**5), "y_test": (10,)}

    def test_a_file_claiming_more_than_memory_is_refused_before_reading(self, tmp_path, capsys):
        path = claiming_npz(tmp_path / "bomb.npz", self.SHAPES)
        status, line = cli_error(["train", "itq", "--data", path, "--out", tmp_path / "run"], capsys)
        assert status == 1 and str(path) in line
        assert "claim 372.5 GiB in all (x_train: (1000000, 100000) float32" in line
        assert "nothing was read" in line
        assert not (tmp_path / "run").exists()

    def test_info_reads_headers_only(self, tmp_path):
        path = claiming_npz(tmp_path / "bomb.npz", self.SHAPES)
        script = (
            "import json, sys; from tfhash.cli.data import describe_path; "
            "info = describe_path(sys.argv[1]); "
            # VmHWM: this process's own peak (ru_maxrss also counts the parent's pages at the fork)
            "peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(json.dumps([info, peak]))"
        )
        result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                                check=True, timeout=120)  # fmt: skip
        info, peak_kib = json.loads(result.stdout.strip().splitlines()[-1])
        assert info["kind"] == "data (Keras layout)" and info["x_train"] == [10**6, 10**5]
        assert peak_kib < 1536 * 1024  # the interpreter and its imports; the arrays would be 372 GiB

    def test_one_huge_image_does_not_blow_up_the_folder(self, tmp_path):
        from PIL import Image

        from tfhash.data.images import read_image_folder

        for c in range(2):
            (tmp_path / f"c{c}").mkdir()
            for i in range(4):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"c{c}" / f"b{i}.png")
        Image.fromarray(np.zeros((3000, 3000), np.uint8)).save(tmp_path / "c0" / "a_first.png")
        folder = read_image_folder(tmp_path)
        assert folder.images.shape == (9, 8, 8) and folder.files[0] == "c0/a_first.png"

    def test_a_folder_larger_than_memory_is_refused_before_decoding(self, tmp_path, monkeypatch):
        from PIL import Image

        from tfhash.data import images

        for c in range(2):
            (tmp_path / f"c{c}").mkdir()
            Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / f"c{c}" / "a.png")
        monkeypatch.setattr(images, "available_memory", lambda: 1000)
        with pytest.raises(ValueError, match=r"2 images of shape \(64, 64\) need 0.0 GiB, more than"):
            images.read_image_folder(tmp_path)


class MessagesTest:
    """Item 7: the messages that fell back to an exception's type or hid the cause."""

    def test_object_arrays_single_class_and_image_folder_problems_are_named(self, tmp_path, capsys):
        from PIL import Image

        x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
        obj = tmp_path / "obj.npz"
        objects = np.array([{"a": 1}] * 4, object)
        np.savez(obj, x_train=objects, y_train=np.arange(4), x_test=x[:1], y_test=[0])
        one = tmp_path / "one.npz"
        np.savez(one, x_train=x[:48], y_train=np.zeros(48, int), x_test=x[48:], y_test=np.zeros(12, int))
        empty, mismatch = tmp_path / "empty", tmp_path / "mismatch"
        for folder, classes in ((empty, "ab"), (mismatch / "train", "ab"), (mismatch / "test", "ac")):
            for c in classes:
                (folder / c).mkdir(parents=True)
                Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / c / "0.png")
        (empty / "c").mkdir()
        expected = {
            obj: "x_train holds Python objects (an object array, stored as a pickle), which tfhash never",
            one: "every item has the same label; retrieval is scored by labels",
            empty: f"class folder {empty / 'c'} holds no image files",
            mismatch: "only in train/: ['b'], only in test/: ['c']",
        }
        for data, words in expected.items():
            status, line = cli_error(["train", "itq", "--data", data, "--out", tmp_path / "run"], capsys)
            assert status == 1 and words in line and "--debug" not in line, line

    def test_search_features_of_another_width_name_the_file(self, tmp_path, capsys):
        run = tmp_path / "itq"
        assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
        assert cli.main(["encode", str(run), "--data", "digits", "--out", str(tmp_path / "c.npz")]) == 0
        argv = ["index", str(tmp_path / "c.npz"), "--backend", "numpy", "--out", str(tmp_path / "i.npz")]
        assert cli.main(argv) == 0
        np.save(tmp_path / "wide.npy", np.zeros((2, 7), np.float32))
        argv = ["search", run, tmp_path / "i.npz", "--features", tmp_path / "wide.npy"]
        argv += ["--out", tmp_path / "h.csv"]
        status, line = cli_error(argv, capsys)
        assert status == 1 and "wide.npy has shape (2, 7)" in line and "encodes (n, 64) features" in line


class PickleBoundsTest:
    """Item 5 (the readers): nesting, memo and copies bounded before a pickle is unpickled."""

    DEEP = b"\x80\x02)" + b"\x85" * 10**6 + b"."  # a tuple nested a million deep (crashed Python)

    @staticmethod
    def copies():
        import collections

        pairs = [(i, i) for i in range(20000)]

        class Copy:  # 200 OrderedDicts of one memoized list: 2.4 MB that builds 4 million items
            def __reduce__(self):
                return collections.OrderedDict, (pairs,)

        return pickle.dumps([Copy() for _ in range(200)], protocol=2)

    def test_the_cifar_reader_refuses_deep_and_copying_pickles(self, tmp_path):
        copies = "refused before unpickling: it builds more than"
        for name, raw, words in (("deep", self.DEEP, "nested more than 100 deep"),
                                 ("copies", self.copies(), copies)):  # fmt: skip
            path = tmp_path / name
            path.write_bytes(raw)
            with pytest.raises(ValueError, match=words) as error:
                read_batch(path)
            assert str(path) in str(error.value)

    def test_the_torch_reader_refuses_them_with_value_errors(self, tmp_path):
        from tfhash.backbones.torch_file import read_torch_state_dict

        memo = b"\x80\x02" + b"N\x94" * 1_000_001 + b"."  # a million and one memo entries
        for name, raw, words in (("deep", self.DEEP, "nested more than 100 deep"),
                                 ("copies", self.copies(), "refused before unpickling: it builds more than"),
                                 ("memo", memo, "more than 1,000,000 memoized")):  # fmt: skip
            path = tmp_path / name
            path.write_bytes(raw)
            with pytest.raises(ValueError, match=words) as error:
                read_torch_state_dict(path)
            assert str(path) in str(error.value)

    def test_a_real_batch_passes_the_bounds(self, tmp_path):
        from tfhash.pickle_bounds import check_pickle

        content = {b"data": np.zeros((1000, 3072), np.uint8), b"labels": [0] * 1000,
                   b"filenames": [b"f%d.png" % i for i in range(1000)]}  # fmt: skip
        for protocol in (2, 4, 5):
            raw = pickle.dumps(content, protocol=protocol)
            assert check_pickle(raw) == len(raw)


def test_a_large_serving_request_is_encoded_in_chunks(tmp_path, monkeypatch):
    """The export cuts a request larger than SERVING_CHUNK into chunks inside the graph (memory
    bounded by one chunk's activations); the codes equal those of small requests, padding dropped."""
    import tensorflow as tf

    from tfhash import export
    from tfhash.registry import get_method
    from tfhash.train import build_model

    model = build_model(get_method("tbh").get_config(16, "digits"), 64, 0)
    monkeypatch.setattr(export, "SERVING_CHUNK", 7)
    export.export_encoder(model, tmp_path / "e")
    serve = tf.saved_model.load(str(tmp_path / "e")).signatures["serving_default"]
    x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    whole = serve(features=tf.constant(x))
    parts = [serve(features=tf.constant(x[i : i + 5]))["codes"].numpy() for i in range(0, 50, 5)]
    np.testing.assert_array_equal(whole["codes"].numpy(), np.concatenate(parts))
    assert whole["packed_codes"].shape == (50, 2) and whole["codes"].shape == (50, 16)
    graph = serve.graph.as_graph_def()
    ops = {node.op for f in graph.library.function for node in f.node_def}
    assert "While" in ops or "StatelessWhile" in ops  # the map over chunks is in the graph


def test_an_index_file_without_its_bits_is_named_damaged(tmp_path):
    from tfhash.files import write_npz
    from tfhash.index import FORMAT, HammingIndex

    path = tmp_path / "i.npz"
    write_npz(path, {"format": FORMAT}, codes=np.zeros((3, 2), np.uint8), ids=np.arange(3))
    with pytest.raises(ValueError, match=r"i.npz: a damaged index \(no bits\); build it again"):
        HammingIndex.load(path)


def test_a_finished_run_is_not_retrained_without_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
    before = (run / "metrics.json").read_text()
    status, line = cli_error(["train", "itq", "--bits", "8", "--out", run], capsys)
    assert status == 1 and "holds a finished itq run (metrics.json); pass --overwrite" in line
    assert (run / "metrics.json").read_text() == before
    assert cli.main(["train", "itq", "--bits", "8", "--seed", "1", "--overwrite", "--out", str(run)]) == 0
    assert '"seed": 1' in (run / "metrics.json").read_text()


def test_a_file_out_in_a_missing_folder_is_refused_before_work(tmp_path, capsys):
    run = tmp_path / "itq"
    assert cli.main(["train", "itq", "--bits", "8", "--out", str(run)]) == 0
    status, line = cli_error(["encode", run, "--out", tmp_path / "nowhere" / "c.npz"], capsys)
    assert status == 1 and f"the folder {tmp_path / 'nowhere'} does not exist; create it first" in line
