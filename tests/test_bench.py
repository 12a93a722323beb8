import csv
import json

import numpy as np
import pytest

from tfhash import registry
from tfhash.baselines import ITQ, Baseline
from tfhash.bench import run_benchmark
from tfhash.data import load_data
from tfhash.models import TBH
from tfhash.train import build_model, fit


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class Broken(Baseline):
    name = "broken"

    def _fit(self, x):
        raise RuntimeError("deliberate failure")


class RegistryTest:
    def test_unknown_name_lists_the_valid_ones(self):
        with pytest.raises(
            ValueError,
            match="unknown method .itqq. \\(did you mean itq\\?\\); valid methods: bgan, bgan-app, "
            "bgan-authors, bgan-ln, bgan-ln-la, "
            "bgan-ln-lc, bgan-two-step, bihalf, classifier, deep-sgh, gman, gman-no-aegan, "
            "gman-no-bgan, greedyhash, hashnet, hashnet-c, hashnet-w, itq, jmlh, lsh, pcah, rsgh, sgh, "
            "sgman, sh, tbh",
        ):
            registry.get_method("itqq")

    def test_every_method_builds_from_its_config(self):
        for name in registry.method_names():
            method = registry.get_method(name)
            config = method.get_config(16, "digits")
            assert config["method"] == name and config["model"]["bits"] == 16
            model = build_model(config, input_dim=64, seed=0, image_shape=(8, 8), num_classes=10)
            assert isinstance(model, method.model) and model.bits == 16
        assert registry.method_names()[0] == "tbh"  # deep methods first
        assert isinstance(build_model(registry.get_method("itq").get_config(8), 64, 0), ITQ)
        assert isinstance(build_model(registry.get_method("tbh").get_config(8), 64, 0), TBH)


def test_fit_runs_a_baseline_like_a_model(digits, tmp_path):
    model, record = fit(registry.get_method("itq").get_config(16), digits, tmp_path)
    assert record["map_at_all"] > 0.55 and record["steps"] is None
    assert (tmp_path / "model.npz").exists() and record["encode_items_per_second"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(record))


def test_encode_throughput_counts_queries_and_database_over_the_encoding_time(digits, monkeypatch):
    """evaluate's encode_items_per_second = (queries + database items) / the seconds their encoding
    took, read from a clock that ticks 2 s per reading."""
    import itertools
    import types

    from tfhash import train

    model = build_model(registry.get_method("itq").get_config(16), 64, 0).fit(digits.train.features)
    clock = itertools.count(10.0, 2.0)
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    metrics = train.evaluate(model, digits, registry.get_method("itq").get_config(16)["eval"])
    assert metrics["encode_items_per_second"] == (len(digits.query) + len(digits.database)) / 2.0


@pytest.mark.large
def test_time_budget_stops_deep_training(digits, tmp_path):
    config = registry.get_method("tbh").get_config(8, "digits")
    config["train"].update({"steps": 1000, "steps_per_epoch": 100, "batch_size": 100})
    _, record = fit(config, digits, tmp_path, verbose=0, budget_seconds=1e-6, export=False)
    assert record["steps"] == 1 and not (tmp_path / "export").exists()


@pytest.mark.large
def test_runner_writes_every_output_survives_a_crash_and_resumes(digits, tmp_path, monkeypatch):
    def broken_config(bits, data="digits"):
        return {**registry.METHODS["itq"].get_config(bits, data), "method": "broken", "model": {"bits": bits}}

    monkeypatch.setitem(registry.METHODS, "broken", registry.Method("broken", Broken, broken_config, ""))
    out = tmp_path / "bench"
    lines = []
    kwargs = dict(
        methods=["tbh", "itq", "broken"], bits=(8, 16), seeds=(0, 1), steps=4, out=str(out), log=lines.append
    )
    records = run_benchmark(digits, **kwargs)
    assert [(r["method"], r["bits"], r["seed"]) for r in records][:3] == [
        ("tbh", 8, 0),
        ("tbh", 8, 1),
        ("itq", 8, 0),
    ]
    results = [line for line in lines if not line.endswith(": training ...")]  # each cell says it starts
    assert len(records) == 12 and len(results) == 12 and len(lines) == 24
    assert lines[0] == "[1/12] tbh 8 bits seed 0: training ..."
    assert results[0].startswith("[1/12] tbh 8 bits seed 0: mAP@all")
    assert all(r["steps"] == 4 for r in records if r["method"] == "tbh")
    broken = [r for r in records if r["method"] == "broken"]
    assert len(broken) == 4 and all(r["error"] == "RuntimeError: deliberate failure" for r in broken)
    assert (out / "cells" / "broken-8bit-seed0" / "error.txt").read_text().count("deliberate failure")

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0]["method"] == "tbh"
    for key in ("map_at_all", "map_at_1000", "precision_radius_2", "precision_at_100", "train_seconds"):
        assert key in rows[0], key
    assert {r["status"] for r in rows if r["method"] == "broken"} == {"error"}
    saved = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in saved] == [r["seed"] for r in records]
    itq = [r for r in saved if r["method"] == "itq" and r["bits"] == 16]
    assert len(itq[0]["curves"]["pr_precision"]) == 17
    table = (out / "results.md").read_text()
    assert "| itq |" in table and "| broken | failed | failed |" in table and "## Failed cells" in table
    mean = np.mean([r["map_at_all"] for r in itq])
    assert f"{mean:.3f} ± " in table
    for name in (
        "pr_curve_8bit",
        "pr_curve_16bit",
        "precision_at_n_8bit",
        "precision_at_n_16bit",
        "map_vs_bits",
    ):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name

    (out / "cells" / "itq-16bit-seed1" / "metrics.json").unlink()
    lines.clear()
    again = run_benchmark(digits, **kwargs)
    ran = [line for line in lines if "skipped" not in line and not line.endswith(": training ...")]
    assert [line.split(":")[0] for line in ran if "FAILED" not in line] == ["[10/12] itq 16 bits seed 1"]
    assert len(ran) == 5  # the deleted cell, and the failed cells are retried
    assert [r.get("map_at_all") for r in again] == [r.get("map_at_all") for r in records]


def test_runner_rejects_bad_arguments_before_running(digits, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_benchmark(digits, methods=["itq", "nope"], out=str(tmp_path))
    with pytest.raises(ValueError, match="bits must be a positive int"):
        run_benchmark(digits, methods=["itq"], bits=(0,), out=str(tmp_path))
    assert not (tmp_path / "cells").exists()


def test_one_seed_has_no_spread_and_progress_is_said_before_each_cell(tmp_path, monkeypatch):
    from tfhash import bench

    assert bench._cell_text([{"m": 0.4761}], "m", [0]) == "0.476"
    assert bench._cell_text([{"m": 0.4}, {"m": 0.5}], "m", [0, 1]) == "0.450 ± 0.050"
    said = []
    bench.run_benchmark(
        load_data("digits"), ["itq"], (8,), (0,), None, None, str(tmp_path / "b"), log=said.append
    )
    assert said[0] == "[1/1] itq 8 bits seed 0: training ..." and "mAP@all" in said[1]
    assert "± 0.000" not in (tmp_path / "b" / "results.md").read_text()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt("interrupted at step 3 of 8")

    monkeypatch.setattr(bench, "_run_cell", stop)
    with pytest.raises(
        KeyboardInterrupt, match=r"step 3 of 8; the bench stopped in cell \[1/1\] lsh 8 bits seed 0: re-run"
    ):
        bench.run_benchmark(
            load_data("digits"), ["lsh"], (8,), (0,), None, None, str(tmp_path / "b"), log=said.append
        )
