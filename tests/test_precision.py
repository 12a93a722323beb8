"""--mixed-precision on a CPU: a probe times it against float32 once per machine, and warns if slower."""

import json

import numpy as np
import pytest

from tfhash import precision, train


def test_the_probe_measures_both_precisions_once_per_machine(tmp_path, monkeypatch):
    import itertools
    import types

    monkeypatch.setenv("TFHASH_CACHE", str(tmp_path))
    # a clock that ticks 1/1024 s per reading (exact in binary), one reading per step: 51 steps fit
    # the 0.05 s window, and the last reading comes 53 ticks after the first, for either precision
    clock = (i / 1024 for i in itertools.count())
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    plain, mixed = precision.precision_probe("mixed_bfloat16", seconds=0.05, units=16, batch=8)
    assert plain == mixed == round(51 / (53 / 1024), 1)
    with open(precision.probe_cache_path()) as f:
        cached = json.load(f)
    (key,) = cached
    assert precision.cpu_model() in key and key.endswith("mixed_bfloat16") and cached[key] == [plain, mixed]
    cached[key] = [7.0, 3.0]  # the cache answers from now on
    with open(precision.probe_cache_path(), "w") as f:
        json.dump(cached, f)
    assert precision.precision_probe("mixed_bfloat16") == (7.0, 3.0)


def test_a_slower_mixed_precision_gets_a_warning_with_both_figures(monkeypatch):
    monkeypatch.setattr(precision, "precision_probe", lambda policy: (8.8, 5.0))
    warning = precision.mixed_precision_warning("mixed_bfloat16")
    assert warning.startswith("warning: mixed_bfloat16 is slower than float32")
    assert "5.0 steps/s against 8.8" in warning and "0.57x" in warning and "--mixed-precision" in warning
    monkeypatch.setattr(precision, "precision_probe", lambda policy: (5.0, 8.0))
    assert precision.mixed_precision_warning("mixed_bfloat16") is None
    assert (
        precision.mixed_precision_warning("mixed_float16") is None
        and precision.mixed_precision_warning(None) is None
    )


def test_fit_prints_the_warning(tmp_path, monkeypatch, capsys):
    from tfhash.data import load_data
    from tfhash.registry import get_method

    monkeypatch.setattr(precision, "precision_probe", lambda policy: (8.8, 5.0))
    monkeypatch.setattr(train, "mixed_precision_policy", lambda: "mixed_bfloat16")
    config = get_method("sgh").get_config(8, "digits")
    config["train"].update(steps=2, steps_per_epoch=2)
    train.fit(config, load_data("digits"), str(tmp_path / "run"), mixed_precision=True, export=False)
    assert "warning: mixed_bfloat16 is slower than float32" in capsys.readouterr().out


def test_every_deep_method_trains_under_mixed_float16_with_loss_scaling():
    """The policy a GPU machine picks, forced on the CPU (float16 kernels run here, slowly): each
    deep method at its digits defaults takes two steps; every role's optimiser is a
    LossScaleOptimizer, the variables stay float32, the loss terms are finite float32, and the
    weights move. (Issue 33's CPU part; the GPU figures wait for a machine with TensorFlow.)"""
    import keras
    import numpy as np

    from tfhash import registry
    from tfhash.data import batch_dataset, load_data
    from tfhash.models import HashingModel
    from tfhash.precision import dtype_policy
    from tfhash.train import build_model

    data = load_data("digits")
    failed = []
    for name in registry.method_names():
        method = registry.get_method(name)
        if method.is_baseline:
            continue
        config = method.get_config(8, "digits")
        with dtype_policy("mixed_float16"):
            keras.utils.set_random_seed(0)
            model = build_model(config, data.feature_dim, 0, data.image_shape, data.num_classes)
            if type(model).adapt is not HashingModel.adapt:
                model.adapt(data.train.features)
            before = [v.numpy().copy() for v in model.trainable_variables]
            split = data.labelled(None) if model.needs_labels else data.train
            history = model.fit(batch_dataset(split, model.batch_keys, 32, 0), steps_per_epoch=2, verbose=0)
        assert model.dtype_policy.name == "mixed_float16", name
        assert all(
            isinstance(o, keras.optimizers.LossScaleOptimizer) for o in model.role_optimizers.values()
        ), name
        assert all(v.dtype == "float32" for v in model.trainable_variables), name
        if not all(np.isfinite(v[-1]) for v in history.history.values()):
            failed.append(f"{name}: {history.history}")
        moved = [
            not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables, strict=True)
        ]
        scales = [float(o.dynamic_scale.numpy()) for o in model.role_optimizers.values()]
        # a step whose scaled gradients overflow float16 is skipped and its scale halved (2 ** 15 at
        # first); so either the weights moved or some scale dropped
        assert any(moved) or min(scales) < 2.0**15, name
        if name == "bgan-ln":  # its summed neighbour loss overflows at 2 ** 15: the skip path runs
            assert min(scales) < 2.0**15 and not any(moved), scales
    assert failed == []


def test_the_gpu_check_runs_every_section_in_its_dry_run(tmp_path):
    """benchmarks/gpu_check.py, prepared for the first GPU lent (issue 33): on the CPU with tiny sizes
    every section ends with figures, not an error, and the JSON holds them all."""
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(script), "--dry-run", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == ["environment", "speed", "export", "features", "bgan"]
    assert not [name for name, result in sections.items() if "error" in result or "skipped" in result]
    assert sections["environment"]["tensorflow"] and sections["environment"]["gpus"] == []
    for method in ("tbh", "gman"):
        assert sections["speed"][method]["float32_steps_per_second"] > 0
        assert sections["speed"][method]["mixed_float16_steps_per_second"] > 0
    assert sections["export"]["equal_bits"] > 0.99 and sections["export"]["bits"] == 32
    assert sections["features"]["mixed_over_float32"] > 0
    assert sections["bgan"]["steps"] == 4 and sections["bgan"]["map_at_all"] > 0.2
    assert not (script.parent / "results" / "gpu-check").exists()  # the dry run writes only --out


def test_a_mixed_float16_run_killed_and_resumed_ends_with_the_uninterrupted_codes(tmp_path, monkeypatch):
    """Under the policy a GPU picks (forced here), a run killed after epoch 2 of 3 resumes bit for bit:
    the loss scale and each LossScaleOptimizer's inner state are checkpointed with the weights."""
    from tfhash import lifecycle
    from tfhash.data import load_data
    from tfhash.registry import get_method

    monkeypatch.setattr(train, "mixed_precision_policy", lambda: "mixed_float16")
    data = load_data("digits")
    config = get_method("tbh").get_config(8, "digits")
    config["train"].update(steps=6, steps_per_epoch=2, batch_size=64, eval_every=1, validation_size=50)

    class Kill(BaseException):
        pass

    def hook(name, info):
        if name == "checkpoint-saved" and info["epoch"] == 2:
            raise Kill(name)

    whole, _ = train.fit(
        config, data, tmp_path / "whole", seed=3, verbose=0, export=False, mixed_precision=True
    )
    with lifecycle.fault_hook(hook), pytest.raises(Kill):
        train.fit(config, data, tmp_path / "run", seed=3, verbose=0, export=False, mixed_precision=True)
    resumed, record = train.fit(
        config, data, tmp_path / "run", seed=3, verbose=0, export=False, mixed_precision=True
    )
    assert record["resumes"] == 1 and record["mixed_precision"] == "mixed_float16"
    scales = [float(o.dynamic_scale.numpy()) for o in resumed.role_optimizers.values()]
    assert scales == [float(o.dynamic_scale.numpy()) for o in whole.role_optimizers.values()]
    np.testing.assert_array_equal(resumed.encode_split(data.query), whole.encode_split(data.query))


def test_the_export_of_a_mixed_float16_model_gives_its_float32_codes(tmp_path):
    """A TBH trained under mixed_float16, exported, and the same weights in a float32 model: the codes
    agree except where a logit is within float16 rounding of the threshold, which is measured here."""
    import keras
    import tensorflow as tf

    from tfhash.data import batch_dataset, load_data
    from tfhash.export import export_encoder
    from tfhash.models import TBH
    from tfhash.precision import dtype_policy
    from tfhash.registry import get_method

    data = load_data("digits")
    config = get_method("tbh").get_config(16, "digits")
    with dtype_policy("mixed_float16"):
        keras.utils.set_random_seed(0)
        model = train.build_model(config, data.feature_dim, 0)
        model.fit(
            batch_dataset(data.train, model.batch_keys, 64, 0), steps_per_epoch=5, shuffle=False, verbose=0
        )
    loaded = tf.saved_model.load(str(export_encoder(model, tmp_path / "export")))
    x = data.database.features
    exported = loaded.signatures["serving_default"](features=tf.constant(x))["codes"].numpy()
    plain = TBH.from_config({**model.get_config(), "dtype": "float32"})
    plain.set_weights(model.get_weights())
    logits = plain.binary_head(plain.encoder_hidden(tf.constant(x))).numpy()
    float32_codes = (logits > 0).astype(np.uint8)
    differ = exported != float32_codes
    assert differ.mean() < 0.01, differ.mean()
    # float16 carries 11 significant bits: a flipped bit had a logit tiny against the logits' spread
    assert not differ.any() or np.abs(logits[differ]).max() < 1e-2 * np.std(logits)


def test_gated_roles_still_gate_under_mixed_float16():
    """GMAN's discriminators are gated off during its L2 pre-training: under mixed_float16 (their
    optimisers wrapped in LossScaleOptimizer, applied inside tf.cond) their weights must not move
    while the auto-encoder's do."""
    import keras

    from tfhash.data import batch_dataset, load_data
    from tfhash.precision import dtype_policy
    from tfhash.registry import get_method

    data = load_data("digits")
    config = get_method("gman").get_config(8, "digits")
    config["model"]["pretrain_steps"] = 10
    with dtype_policy("mixed_float16"):
        keras.utils.set_random_seed(0)
        model = train.build_model(config, data.feature_dim, 0)
        before = {role: [v.numpy().copy() for v in model.role_variables(role)] for role in model.roles}
        model.fit(
            batch_dataset(data.train, model.batch_keys, 32, 0), steps_per_epoch=3, shuffle=False, verbose=0
        )
    assert model.roles == ("generator", "d_ae", "d_b")
    for role in model.roles:
        moved = any(
            not np.array_equal(b, v.numpy())
            for b, v in zip(before[role], model.role_variables(role), strict=True)
        )
        assert moved == (role == "generator"), role
        assert isinstance(model.role_optimizers[role], keras.optimizers.LossScaleOptimizer)
