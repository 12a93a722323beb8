"""Every bad input through the CLI: exit status, one `error:` line naming the problem, no traceback,
nothing left in --out."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from tfhash import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An ITQ run, its codes and index, and broken files of every kind."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "itq"
    assert cli.main(["train", "itq", "--bits", "16", "--out", str(run)]) == 0
    codes = root / "codes.npz"
    assert cli.main(["encode", str(run / "model.npz"), "--data", "digits", "--out", str(codes)]) == 0
    queries = root / "query.npz"
    cli.main(
        ["encode", str(run / "model.npz"), "--data", "digits", "--split", "query", "--out", str(queries)]
    )
    index = root / "index.npz"
    assert cli.main(["index", str(codes), "--out", str(index), "--backend", "numpy"]) == 0
    pcah = root / "pcah"
    assert cli.main(["train", "pcah", "--bits", "16", "--out", str(pcah)]) == 0
    cli.main(["encode", str(pcah), "--data", "digits", "--out", str(root / "pcah_codes.npz")])
    cli.main(["encode", str(run), "--data", "digits", "--split-seed", "1", "--out", str(root / "seed1.npz")])
    (root / "text.npz").write_text("x_train,y_train\n1,2\n")
    (root / "truncated.npz").write_bytes(index.read_bytes()[:300])
    (root / "garbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (root / "not_an_image.png").write_text("hello")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "ok.png")
    rng = np.random.default_rng(0)
    x = rng.random((40, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)

    def npz(name, **arrays):
        base = {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}
        np.savez(root / name, **{**base, **arrays})

    npz("negative.npz", y_train=np.where(np.arange(30) == 7, -1, y[:30]))
    npz("fractional.npz", y_train=y[:30] + 0.5)
    npz("short_labels.npz", y_train=y[:20])
    npz("empty.npz", x_train=x[:0], y_train=y[:0], x_test=x[:0], y_test=y[:0])
    nan = x.copy()
    nan[[3, 5, 33]] = np.nan
    npz("nan.npz", x_train=nan[:30], x_test=nan[30:])
    npz("sparse_ids.npz", y_train=y[:30] * 2, y_test=y[30:] * 2)
    npz("flat.npz")
    (root / "a_file").write_text("x")
    return root


def p(files, name):
    return str(files / name)


CASES = [
    # (argv with {name} for files, exit status, words in the error line)
    (["eval", "{query.npz}", "{codes.npz}", "--radius", "-1"], 2, "--radius: must be at least 0"),
    (["eval", "{query.npz}", "{codes.npz}", "--top-k", "-5"], 2, "--top-k: must be at least 1"),
    (["eval", "{query.npz}", "{codes.npz}", "--top-k", "0"], 2, "--top-k: must be at least 1"),
    (["search", "{itq}", "{index.npz}", "--data", "digits", "--queries", "-3"], 2, "--queries: must be at"),
    (["search", "{itq}", "{index.npz}", "--data", "digits", "--queries", "0"], 2, "--queries: must be at"),
    (["train", "tbh", "--learning-rate", "nan"], 2, "--learning-rate: must be a finite number"),
    (["train", "tbh", "--learning-rate", "-0.01"], 2, "--learning-rate: must be greater than 0"),
    (["train", "tbh", "--bits", "0"], 2, "--bits: must be at least 1"),
    (["train", "tbh", "--steps", "ten"], 2, "--steps: expected an integer"),
    (
        ["train", "itq", "--data", "{negative.npz}", "--queries-per-class", "2"],
        1,
        "y_train: class ids must be >= 0; row 7",
    ),
    (
        ["train", "itq", "--data", "{fractional.npz}", "--queries-per-class", "2"],
        1,
        "class ids must be integers; row 0",
    ),
    (["train", "itq", "--data", "{short_labels.npz}"], 1, "y_train holds 20 labels for 30 items"),
    (["train", "itq", "--data", "{empty.npz}"], 1, "x_train holds no items"),
    (
        ["train", "itq", "--data", "{nan.npz}"],
        1,
        "2 rows of x_train (rows 3, 5) and 1 row of x_test (row 3)",
    ),
    (["train", "itq", "--data", "{text.npz}"], 1, "is not an npz archive"),
    (["train", "itq", "--data", "{garbage.npz}"], 1, "is a damaged npz archive"),
    (["train", "itq", "--out", "{a_file}"], 1, "is an existing file"),
    (["train", "itq", "--out", "{a_file}/run"], 1, "cannot write to the output folder"),
    (["train", "tbhx"], 2, "unknown method 'tbhx' (did you mean tbh?); valid methods: bgan, bgan-app"),
    (["train", "hashnet", "--threshold", "0.5"], 1, "which hashnet does not have (methods that do: tbh, sgh"),
    (["train", "hashnet", "--data", "{codes.npz}"], 1, "codes.npz: expected the Keras load_data layout"),
    (["train", "itq", "--data", "nowhere.npz"], 1, "unknown data source 'nowhere.npz'"),
    (["train", "gman", "--model-option", "variance=centered"], 1, "variance must be one of ('paper'"),
    (["train", "gman", "--model-option", "pretrain_steps=-5"], 1, "pretrain_steps must be an int >= 0"),
    (
        ["train", "gman", "--data", "{flat.npz}", "--queries-per-class", "2", "--backbone", "conv"],
        1,
        "GMAN needs images",
    ),
    (
        ["search", "{itq}", "{index.npz}", "--features", "{missing.npy}"],
        1,
        "--features {missing.npy} does not exist",
    ),
    (["search", "{itq}", "{index.npz}", "--features", "{text.npz}"], 1, "is not a .npy array"),
    (
        ["search", "{itq}", "{index.npz}", "--images", "{not_an_image.png}"],
        1,
        "not_an_image.png is not an image",
    ),
    (["search", "{itq}", "{index.npz}", "--images", "{itq}"], 1, "is a folder; give image files"),
    (["search", "{itq}", "{missing.npz}", "--data", "digits"], 1, "missing.npz does not exist"),
    (["search", "{itq}", "{truncated.npz}", "--data", "digits"], 1, "truncated.npz is a damaged npz archive"),
    (
        ["search", "{itq}", "{codes.npz}", "--data", "digits"],
        1,
        "codes.npz is not a tfhash-hamming-index-1 file",
    ),
    (["encode", "{itq}", "--out", "{itq}"], 1, "is a folder; give the path of a file"),
    (["eval", "{query.npz}", "{text.npz}"], 1, "text.npz is not an npz archive"),
    (["eval", "{query.npz}", "{pcah_codes.npz}"], 1, "come from different sources (model: itq 16 bits"),
    (["eval", "{query.npz}", "{seed1.npz}"], 1, "different sources (split_seed: 0 vs 1)"),
    (["search", "{pcah}", "{index.npz}", "--data", "digits"], 1, "different sources (model: pcah 16 bits"),
    (["info", "{missing.npz}"], 1, "missing.npz does not exist"),
    (["info", "{text.npz}"], 1, "is not an npz archive"),
]


@pytest.mark.parametrize(
    "argv, status, words", CASES, ids=[" ".join(c[0][:3]) + f" -> {c[2][:30]}" for c in CASES]
)
def test_bad_input_gives_one_error_line(argv, status, words, files, tmp_path, capsys):
    fill = {name: p(files, name) for name in os.listdir(files)} | {
        "missing.npy": p(files, "missing.npy"),
        "missing.npz": p(files, "missing.npz"),
    }
    argv = [_fill(a, fill) for a in argv]
    words = _fill(words, fill)
    out = tmp_path / "out"
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(out)]
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    said = capsys.readouterr()
    if status == 2:
        assert caught.value.code == 2
        lines = [line for line in said.err.splitlines() if "error:" in line]
    else:
        assert isinstance(caught.value.code, str), caught.value.code  # printed by Python, exit status 1
        lines = [line for line in caught.value.code.splitlines() + said.err.splitlines() if "error:" in line]
    assert len(lines) == 1 and words in lines[0], (lines, words)
    assert "Traceback" not in said.err + said.out
    assert "allow_pickle" not in lines[0]
    assert not out.exists() or not any(out.iterdir())


def _fill(text, paths):
    return re.sub(r"\{([\w.]+)\}", lambda m: paths[m.group(1)], text)


def test_class_ids_need_not_be_contiguous(files, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "itq", "--bits", "4", "--data", p(files, "sparse_ids.npz"), "--queries-per-class", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    from tfhash.data import load_data

    data = load_data(p(files, "sparse_ids.npz"), 2)
    assert data.class_ids == (0, 2, 4, 6) and data.num_classes == 4


def test_debug_shows_the_traceback(files):
    with pytest.raises(ValueError, match="is not an npz archive"):
        cli.main(["--debug", "train", "itq", "--data", p(files, "text.npz")])


def test_a_deliberate_mix_is_allowed_and_info_names_the_model(files, tmp_path, capsys):
    argv = ["eval", p(files, "query.npz"), p(files, "pcah_codes.npz"), "--allow-mismatch"]
    assert cli.main(argv) == 0
    out = tmp_path / "hits.csv"
    argv = ["search", p(files, "pcah"), p(files, "index.npz"), "--data", "digits", "--allow-mismatch"]
    assert cli.main([*argv, "--out", str(out)]) == 0 and out.is_file()
    capsys.readouterr()
    from tfhash.cli.data import describe_path

    run, codes, index = (describe_path(p(files, n)) for n in ("itq", "codes.npz", "index.npz"))
    model = run["model.npz"]
    assert run["kind"] == "run folder" and run["method"] == "itq" and run["bits"] == 16
    assert model["kind"] == "baseline model" and len(model["fingerprint"]) == 16
    assert codes["model"]["fingerprint"] == model["fingerprint"] == index["model"]["fingerprint"]
    assert (codes["data"], codes["split_seed"], codes["split"], codes["items"]) == (
        "digits",
        0,
        "database",
        1497,
    )
    assert index["kind"] == "Hamming index" and index["data"] == "digits"
    assert cli.main(["info", p(files, "codes.npz")]) == 0
    said = capsys.readouterr().out
    assert "kind: codes file" in said and model["fingerprint"] in said


def test_ctrl_c_in_training_prints_one_line_and_exits_130(tmp_path, capsys):
    from tfhash import lifecycle

    def hook(name, info):
        if name == "checkpoint-saved" and info["epoch"] == 1:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    argv = ["train", "tbh", "--bits", "8", "--steps", "4", "--steps-per-epoch", "2", "--out", str(out)]
    with lifecycle.fault_hook(hook), pytest.raises(SystemExit) as caught:
        cli.main(argv)
    said = capsys.readouterr()
    assert caught.value.code == 130 and "Traceback" not in said.err
    assert said.err.strip().splitlines() == [
        f"interrupted at step 2 of 4; the last checkpoint (step 2) is in {out / 'checkpoints'}: re-run the "
        "same command to resume from it"
    ]
    assert cli.main(argv) == 0 and "resuming from the checkpoint of epoch 1" in capsys.readouterr().out


def test_a_diverging_run_stops_with_one_line_and_writes_no_model(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "sgh", "--steps", "8", "--steps-per-epoch", "2", "--learning-rate", "1e30"]
    with pytest.raises(SystemExit, match=r"^error: training diverged at step \d+: the loss term") as caught:
        cli.main([*argv, "--out", str(out)])
    assert "\n" not in caught.value.code
    assert not (out / "export").exists() and not (out / "metrics.json").exists()
    if "no checkpoint was written yet" in caught.value.code:  # nothing to resume: no folder left
        assert not out.exists()
