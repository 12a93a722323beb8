"""The worked example of docs/adding-a-method.md runs as written: its two files, copied into a copy of
the package, register a method that `tfhash methods`, `tfhash train` and `tfhash bench` pick up."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "adding-a-method.md"


def page_files():
    """{path: code} of the page's Python blocks whose first line names their file."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    return {block.split("\n", 1)[0][2:].strip(): block for block in blocks if block.startswith("# tfhash/")}


def test_the_worked_example_is_a_method_without_touching_any_other_file(tmp_path):
    files = page_files()
    assert sorted(files) == ["tfhash/configs/sign_projection.py", "tfhash/models/sign_projection.py"]
    shutil.copytree(ROOT / "tfhash", tmp_path / "tfhash", ignore=shutil.ignore_patterns("__pycache__"))
    for path, code in files.items():
        assert not (ROOT / path).exists()  # new files only: nothing of the package is edited
        (tmp_path / path).write_text(code)
    script = textwrap.dedent(f"""
        import tfhash
        assert tfhash.__file__.startswith({str(tmp_path)!r}), tfhash.__file__
        from tfhash.cli import run
        run(["methods", "sign-projection"])
        run(["train", "sign-projection", "--steps", "20", "--bits", "16", "--out", "run"])
        run(["bench", "--methods", "sign-projection", "itq", "--bits", "16", "--seeds", "0", "--steps", "20",
             "--out", "bench"])
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a learned projection, balanced and decorrelated bits" in done.stdout
    assert "balance=1.0  weight of the balance term" in done.stdout  # the option, from the docstring
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["method"] == "sign-projection" and record["steps"] == 20 and record["bits"] == 16
    assert (tmp_path / "run" / "export" / "saved_model.pb").is_file()
    table = (tmp_path / "bench" / "results.md").read_text()
    assert "sign-projection" in table and "itq" in table


def test_a_config_without_a_required_training_setting_is_named(tmp_path):
    from tfhash.data import load_data
    from tfhash.registry import get_method
    from tfhash.train import fit

    config = get_method("sgh").get_config(8, "digits")
    del config["train"]["eval_every"], config["train"]["validation_size"]
    with pytest.raises(ValueError, match=r"sgh: config\['train'\] lacks eval_every, validation_size"):
        fit(config, load_data("digits"), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_feature_presets_are_what_the_curves_chose():
    # The feature-source budgets are facts of curves.json (docs/reproduction.md, "The budgets the
    # curves chose"): a preset left behind when a curve is added, or a speed figure of `tfhash
    # methods` that no curve measured, fails here.
    import importlib.util

    from tfhash.configs.common import STEPS_PER_SECOND_ON_FEATURES
    from tfhash.registry import get_method

    spec = importlib.util.spec_from_file_location("feature_curves", ROOT / "benchmarks" / "feature_curves.py")
    curves_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves_script)
    curves = json.loads((ROOT / "benchmarks/results/cifar10-lite0-curves/curves.json").read_text())
    chosen = curves_script.choices(curves)
    assert sorted(chosen) == sorted(STEPS_PER_SECOND_ON_FEATURES)
    for method, choice in chosen.items():
        assert STEPS_PER_SECOND_ON_FEATURES[method] == pytest.approx(choice["rate"], rel=0.02), method
        features = get_method(method).get_config(32, "features")["train"]
        if method in curves_script.KEEPS_PAPER:
            assert features == get_method(method).get_config(32, "paper")["train"], method
            continue
        pick = choice["pick"]
        assert features["learning_rate"] == pytest.approx(pick["learning_rate"]), method
        assert features["steps"] == pytest.approx(pick["steps"], rel=0.05), method  # the epoch grid
