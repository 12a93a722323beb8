"""--mixed-precision on a CPU: a probe times it against float32 once per machine, and warns if slower."""

import json

from tfhash import train


def test_the_probe_measures_both_precisions_once_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHASH_CACHE", str(tmp_path))
    plain, mixed = train.precision_probe("mixed_bfloat16", seconds=0.05, units=16, batch=8)
    assert plain > 0 and mixed > 0
    with open(train.probe_cache_path()) as f:
        cached = json.load(f)
    (key,) = cached
    assert train.cpu_model() in key and key.endswith("mixed_bfloat16") and cached[key] == [plain, mixed]
    cached[key] = [7.0, 3.0]  # the cache answers from now on
    with open(train.probe_cache_path(), "w") as f:
        json.dump(cached, f)
    assert train.precision_probe("mixed_bfloat16") == (7.0, 3.0)


def test_a_slower_mixed_precision_gets_a_warning_with_both_figures(monkeypatch):
    monkeypatch.setattr(train, "precision_probe", lambda policy: (8.8, 5.0))
    warning = train.mixed_precision_warning("mixed_bfloat16")
    assert warning.startswith("warning: mixed_bfloat16 is slower than float32")
    assert "5.0 steps/s against 8.8" in warning and "0.57x" in warning and "--mixed-precision" in warning
    monkeypatch.setattr(train, "precision_probe", lambda policy: (5.0, 8.0))
    assert train.mixed_precision_warning("mixed_bfloat16") is None
    assert (
        train.mixed_precision_warning("mixed_float16") is None and train.mixed_precision_warning(None) is None
    )


def test_fit_prints_the_warning(tmp_path, monkeypatch, capsys):
    from tfhash.data import load_data
    from tfhash.registry import get_method

    monkeypatch.setattr(train, "precision_probe", lambda policy: (8.8, 5.0))
    monkeypatch.setattr(train, "mixed_precision_policy", lambda: "mixed_bfloat16")
    config = get_method("sgh").get_config(8, "digits")
    config["train"].update(steps=2, steps_per_epoch=2)
    train.fit(config, load_data("digits"), str(tmp_path / "run"), mixed_precision=True, export=False)
    assert "warning: mixed_bfloat16 is slower than float32" in capsys.readouterr().out
