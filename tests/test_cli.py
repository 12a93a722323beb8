import json
import re
import sys

import numpy as np
import pytest

from tfhash import cli
from tfhash.baselines import PCAH
from tfhash.data import load_data, load_tfrecord_folder
from tfhash.evaluation import euclidean_relevance, retrieval_metrics


@pytest.mark.large
def test_train_tbh_script_writes_everything_under_out(tmp_path, capsys, run_script):
    out = tmp_path / "run"
    record = run_script("train_tbh").main(
        [
            "--bits",
            "16",
            "--steps",
            "20",
            "--steps-per-epoch",
            "10",
            "--batch-size",
            "200",
            "--out",
            str(out),
            "--learning-rate",
            "1e-3",
            "--threshold",
            "0.5",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("method", "data", "bits", "seed", "steps", "map_at_all", "map_at_1000", "precision_radius_2"):
        assert key in metrics
    assert (metrics["method"], metrics["bits"], metrics["steps"], metrics["data"]) == (
        "tbh",
        16,
        20,
        "digits",
    )
    assert metrics["config"]["model"]["threshold"] == 0.5
    assert 0.0 <= metrics["map_at_all"] <= 1.0 and metrics == json.loads(json.dumps(record))
    assert (out / "export" / "saved_model.pb").exists()
    assert any((out / "logs").rglob("events.out.tfevents*"))
    assert "map_at_all" in capsys.readouterr().out


def test_unknown_method_is_a_usage_error_with_the_nearest_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "tbhx"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "tensorflow" not in sys.modules or exit_info.value.code == 2
    assert re.search(
        r"unknown method 'tbhx' \(did you mean tbh\?\); valid methods: bgan, bgan-app, .*, sh, tbh", err
    )


def test_a_mistyped_method_fails_before_tensorflow_is_imported():
    import subprocess

    code = (
        "import sys; from tfhash import cli\ntry: cli.main(['train', 'tbhh'])\n"
        "except SystemExit as e: print(e.code, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.split() == ["2", "False"]


def test_convert_writes_tbh_tfrecords(tmp_path):
    assert cli.main(["convert", "digits", str(tmp_path / "digits")]) == 0  # console-script exit status
    data = load_tfrecord_folder(tmp_path / "digits")
    assert (len(data.train), len(data.query), data.feature_dim) == (1497, 300, 64)


def test_bad_data_source_exits_with_the_message():
    with pytest.raises(SystemExit, match="error: unknown data source 'nowhere.npz'.*valid sources: digits"):
        cli.main(["train", "tbh", "--data", "nowhere.npz"])


def test_train_baseline_writes_model_and_metrics(tmp_path, capsys):
    from tfhash import baselines

    out = tmp_path / "itq"
    record = cli.run(["train", "itq", "--bits", "16", "--out", str(out), "--steps", "5"])
    printed = capsys.readouterr().out
    assert "ignoring --steps" in printed and "map_at_all" in printed
    model = baselines.load(out / "model.npz")
    assert model.bits == 16 and record["method"] == "itq" and record["map_at_all"] > 0.55
    assert json.loads((out / "metrics.json").read_text())["map_at_all"] == record["map_at_all"]


def test_benchmark_script_takes_comma_separated_methods(tmp_path, capsys, run_script):
    out = tmp_path / "bench"
    records = run_script("benchmark").main(
        ["--methods", "lsh,pcah", "--bits", "8", "--seeds", "0", "1", "--out", str(out), "--euclidean"]
    )
    assert [(r["method"], r["seed"]) for r in records] == [("lsh", 0), ("lsh", 1), ("pcah", 0), ("pcah", 1)]
    printed = capsys.readouterr().out
    assert "| pcah |" in printed and "Euclidean ground truth" in printed
    data = load_data("digits")
    model = PCAH(8).fit(data.train.features)
    relevance = euclidean_relevance(data.query.features, data.database.features, k=50)
    want = retrieval_metrics(
        model.encode(data.query.features), model.encode(data.database.features), relevance
    )
    assert records[2]["euclidean_map_at_all"] == pytest.approx(want["map_at_all"], abs=1e-12)
    assert (out / "results.csv").exists() and (out / "map_vs_bits.png").exists()


def test_bench_unknown_method_exits_with_the_list(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--methods", "itq", "agh"])
    assert exit_info.value.code == 2
    assert re.search(
        r"unknown method 'agh'.*; valid methods: bgan, bgan-app, .*, sh, tbh", capsys.readouterr().err
    )


@pytest.mark.large
def test_train_sgh_script_writes_the_reconstruction_figure(tmp_path, run_script):
    out, figure = tmp_path / "rsgh", tmp_path / "fig.png"
    flags = ["--bits", "8", "--steps", "10", "--steps-per-epoch", "10", "--out", str(out)]
    record = run_script("train_sgh").main(["--variant", "rsgh", *flags, "--figure", str(figure)])
    assert record["method"] == "rsgh" and record["config"]["model"]["variant"] == "rsgh"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "rsgh-sgh").exists()  # one command, one model (benchmarks/rsgh_figure.py: both)
    assert "dead_bits" in record and len(record["bits_per_bit"]["entropy"]) == 8


def test_figure_needs_a_decoder(tmp_path):
    with pytest.raises(SystemExit, match="itq has no decoder or generator"):
        cli.main(["train", "itq", "--figure", str(tmp_path / "f.png"), "--out", str(tmp_path)])


def test_figure_of_any_model_with_a_decoder(tmp_path):
    figure = tmp_path / "tbh.png"
    flags = ["--bits", "8", "--steps", "2", "--steps-per-epoch", "2", "--batch-size", "100"]
    cli.run(["train", "tbh", *flags, "--figure", str(figure), "--out", str(tmp_path / "run")])
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_methods_show_the_real_training_defaults(capsys):
    cli.run(["methods", "tbh-vae"])
    out = capsys.readouterr().out
    assert "training on digits: 2,000 steps of batch 400, adam at learning rate 0.001" in out
    assert "training on other data: 100,000 steps of batch 1024, adam at learning rate 0.0001" in out
    assert (
        "training on feature sources (no images): 2,000 steps of batch 1024, adam at learning rate 0.0001"
        in out
    )
    cli.run(["methods", "itq"])
    assert "fitted in closed form" in capsys.readouterr().out


def test_short_budget_note_and_duration_estimate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=rng.integers(0, 256, (200, 4, 4), dtype=np.uint8), y_train=np.arange(200) % 2,
             x_test=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), y_test=np.arange(20) % 2)  # fmt: skip
    flags = ["--data", str(path), "--queries-per-class", "5", "--bits", "8", "--batch-size", "50"]
    small = ["--model-option", "hidden_dim=16", "--model-option", "continuous_dim=8"]
    cli.run(
        [
            "train",
            "tbh",
            *flags,
            *small,
            "--steps",
            "30",
            "--steps-per-epoch",
            "30",
            "--out",
            str(tmp_path / "a"),
        ]
    )
    out = capsys.readouterr().out
    assert "note: 30 steps of the paper's 100,000: the paper's learning rate 1e-4" in out
    assert "ms per step: 30 steps take about" in out
    cli.run(
        [
            "train",
            "tbh",
            *flags,
            *small,
            "--steps",
            "2",
            "--learning-rate",
            "1e-3",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    assert "note:" not in capsys.readouterr().out
    record = cli.run(["train", "itq", "--bits", "8", "--out", str(tmp_path / "c")])
    assert record["precision"].startswith("float64") and "mixed_precision" not in record


def test_parsing_imports_neither_tensorflow_nor_the_models():
    import subprocess
    import sys

    script = (
        "import sys, tfhash.cli; tfhash.cli.build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'tfhash.models') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.large
def test_a_command_prints_no_tensorflow_start_up_lines(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = [sys.executable, "-m", "tfhash", "train", "itq", "--bits", "8", "--out", str(tmp_path / "r")]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    assert out.stderr == "", out.stderr
    assert "map_at_all" in out.stdout


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    """kill (SIGTERM) gets the Ctrl-C path: one line saying where the run stopped and how to resume,
    exit 130, and the checkpoint kept."""
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "tfhash", "train", "sgh", "--steps", "100000", "--steps-per-epoch", "50",
            "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "checkpoints").glob("epoch-*")) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step") and "re-run the same command to resume" in last
    assert list((out / "checkpoints").glob("epoch-*"))


def test_feature_sources_get_the_curves_budgets_and_the_paper_stays_a_preset(tmp_path, capsys):
    """`tfhash train METHOD --data FEATURES.npz` trains with the budget chosen on the validation curves
    (configs' FEATURES, docs/reproduction.md); an image source and `--preset paper` keep the paper's."""
    from tfhash.cli.train import config_from_args
    from tfhash.configs import similarity_hash, tbh
    from tfhash.configs.common import settings_for

    rng = np.random.default_rng(0)
    feats, images = tmp_path / "feats.npz", tmp_path / "images.npz"
    np.savez(feats, x_train=rng.normal(size=(200, 6)).astype("float32"), y_train=np.arange(200) % 2,
             x_test=rng.normal(size=(20, 6)).astype("float32"), y_test=np.arange(20) % 2)  # fmt: skip
    np.savez(images, x_train=rng.integers(0, 256, (200, 4, 4), dtype=np.uint8), y_train=np.arange(200) % 2,
             x_test=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), y_test=np.arange(20) % 2)  # fmt: skip
    parser = cli.build_parser()
    kinds = {}
    for source in ("digits", feats, images):
        data = load_data(str(source), queries_per_class=5)
        for preset in ("auto", "paper"):
            args = parser.parse_args(["train", "tbh", "--data", str(source), "--preset", preset])
            kinds[source, preset] = settings_for(data, preset), config_from_args("tbh", args, data)["train"]
    assert {key: kind for key, (kind, _) in kinds.items()} == {
        ("digits", "auto"): "digits", ("digits", "paper"): "paper", (feats, "auto"): "features",
        (feats, "paper"): "paper", (images, "auto"): "paper", (images, "paper"): "paper",
    }  # fmt: skip
    assert kinds[feats, "auto"][1]["steps"] == tbh.FEATURES["steps"] == 15_000
    assert kinds[feats, "auto"][1]["learning_rate"] == 1e-3
    for key in ((feats, "paper"), (images, "auto"), ("digits", "paper")):
        assert (kinds[key][1]["steps"], kinds[key][1]["learning_rate"]) == (100_000, 1e-4)
    assert settings_for("some/features.npz") == "paper"  # a string cannot say it holds features
    with pytest.raises(ValueError, match=r"preset must be one of \('auto', 'paper'\)"):
        settings_for("digits", "fast")
    # a flag still wins over the preset; BiHalf's preset changes its rate, not its optimiser
    args = parser.parse_args(["train", "bihalf", "--data", str(feats), "--steps", "7"])
    train = config_from_args("bihalf", args, load_data(str(feats), queries_per_class=5))["train"]
    assert (train["steps"], train["learning_rate"], train["optimizer"]) == (7, 1e-3, "sgd")
    assert similarity_hash.FEATURES["bihalf"]["learning_rate"] == 1e-3
    # BGAN's preset is the l_N ablation's only: the full BGAN keeps the paper's budget on features
    from tfhash.configs import bgan

    assert (
        bgan.get_config(32, "features", "bgan-ln")["train"]["steps"],
        bgan.get_config(32, "features")["train"]["steps"],
    ) == (40_000, 10_000)
    cli.run(["methods", "tbh"])
    out = capsys.readouterr().out
    features = "on feature sources (no images): 15,000 steps of batch 400, adam at learning rate 0.001"
    assert f"{features} (about" in out
    assert "min of training on 2 CPU cores at 1,280-d)" in out
    assert "training on other data: 100,000 steps of batch 400, adam at learning rate 0.0001\n" in out


def test_train_and_bench_apply_their_shared_flags_alike(tmp_path, capsys):
    """One override function (configs.common.with_overrides) and one set of training flags
    (cli.common.add_training_arguments): the same flags give `tfhash train` and a `tfhash bench`
    cell the same settings, --optimizer included, and a baseline takes no training setting."""
    from tfhash.bench import cell_config
    from tfhash.cli.common import augment_from_args, model_options_from_args
    from tfhash.cli.train import config_from_args
    from tfhash.configs.common import with_overrides
    from tfhash.registry import get_method

    flags = ["--steps", "7", "--learning-rate", "0.002", "--batch-size", "16", "--optimizer", "sgd",
             "--augment", "crop", "--model-option", "hidden_dim=8"]  # fmt: skip
    parser = cli.build_parser()
    data = load_data("digits")
    trained = config_from_args("tbh", parser.parse_args(["train", "tbh", *flags]), data)
    args = parser.parse_args(["bench", "--methods", "tbh", *flags])
    train = {key: getattr(args, key) for key in ("steps", "learning_rate", "batch_size", "optimizer")}
    overrides = {
        "train": {**train, "augment": augment_from_args(args)},
        "model": model_options_from_args(args),
    }
    benched = cell_config(get_method("tbh"), 32, "digits", overrides)
    expected = {"steps": 7, "learning_rate": 0.002, "batch_size": 16, "optimizer": "sgd", "augment": ["crop"]}
    assert {key: trained["train"][key] for key in expected} == expected
    assert {key: benched["train"][key] for key in expected} == expected
    assert trained["model"]["hidden_dim"] == benched["model"]["hidden_dim"] == 8
    with pytest.raises(ValueError, match=r"unknown training settings \['epochs'\]"):
        with_overrides(get_method("tbh"), get_method("tbh").get_config(32), {"epochs": 3})
    itq = get_method("itq")
    assert with_overrides(itq, itq.get_config(32), {"steps": 5}, {"hidden_dim": 3}) == itq.get_config(32)
    # the bench's --optimizer reaches each cell's training (its metrics.json keeps the config)
    cli.run(["bench", "--methods", "sgh", "--bits", "8", "--seeds", "0", "--steps", "2", "--optimizer", "sgd",
             "--out", str(tmp_path / "bench")])  # fmt: skip
    record = json.loads((tmp_path / "bench" / "cells" / "sgh-8bit-seed0" / "metrics.json").read_text())
    assert record["config"]["train"]["optimizer"] == "sgd" and record["steps"] == 2
    capsys.readouterr()
    for command in ("train", "bench"):  # the help names each method's own optimiser
        with pytest.raises(SystemExit):
            cli.run([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        own = "SGD with momentum for hashnet, hashnet-w, hashnet-c, bihalf; Adam for the others"
        assert f"(default: the method's own: {own})" in text


def test_option_flags_are_model_options_by_another_name():
    """--threshold, --backbone and the TBH-VAE flags are aliases of --model-option KEY=VALUE: the
    same config, and a method without the option gets one error naming the methods with it."""
    from tfhash.cli.train import config_from_args

    parser = cli.build_parser()
    data = load_data("digits")
    flag = config_from_args("tbh", parser.parse_args(["train", "tbh", "--threshold", "0.5"]), data)
    option = config_from_args(
        "tbh", parser.parse_args(["train", "tbh", "--model-option", "threshold=0.5"]), data
    )
    assert flag == option and flag["model"]["threshold"] == 0.5
    expected = r"--threshold sets the model option threshold, which greedyhash does not have \(methods"
    with pytest.raises(ValueError, match=expected):
        config_from_args("greedyhash", parser.parse_args(["train", "greedyhash", "--threshold", "0.5"]), data)
