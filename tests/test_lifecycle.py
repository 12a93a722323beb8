"""A run's lifecycle (tfhash.lifecycle): kills in every window, exact resume for every registered deep
method, divergence, interruption, stale temporaries, file modes."""

import json
import os

import numpy as np
import pytest

from tfhash import files, lifecycle, registry
from tfhash.data import load_data
from tfhash.train import fit

DEEP = [name for name in registry.method_names() if not registry.get_method(name).is_baseline]
# the resume harness runs once per model class (the first name registered for it), so that a method added
# later gets it, plus the variants that keep state of their own (R-SGH's closed-form redundancy matrix)
RESUME_CHECKED = [
    name
    for i, name in enumerate(DEEP)
    if registry.get_method(name).model_ref not in {registry.get_method(n).model_ref for n in DEEP[:i]}
] + ["rsgh"]


class Kill(BaseException):
    """Stands for SIGKILL: nothing of tfhash catches it (a real kill runs no cleanup either)."""


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def tiny_config(name, steps=6, steps_per_epoch=2):
    config = registry.get_method(name).get_config(8, "digits")
    config["train"].update(
        steps=steps, steps_per_epoch=steps_per_epoch, batch_size=64, eval_every=1, validation_size=50
    )
    if "pretrain_steps" in config["model"]:  # GMAN: the kill after step 4 falls inside pre-training
        config["model"]["pretrain_steps"] = steps - 1
        config["train"]["steps"] = 1
    return config


def kill_at(point, when=lambda info: True):
    def hook(name, info):
        if name == point and when(info):
            raise Kill(name)

    return lifecycle.fault_hook(hook)


def codes(model, data):
    return model.encode_split(data.query)


@pytest.mark.large
@pytest.mark.parametrize("name", RESUME_CHECKED)
def test_every_deep_method_resumes_exactly(name, digits, tmp_path):
    """The harness check every registered deep method gets: killed after epoch 2 of 3 and re-run, it
    ends with the uninterrupted run's codes, bit for bit, and its time adds up."""
    config = tiny_config(name)
    reference, ref_record = fit(config, digits, tmp_path / "whole", seed=3, verbose=0, export=False)
    out = tmp_path / "killed"
    with kill_at("checkpoint-saved", lambda info: info["epoch"] == 2), pytest.raises(Kill):
        fit(config, digits, out, seed=3, verbose=0, export=False)
    state = json.loads((out / "checkpoints" / "epoch-000002" / "state.json").read_text())
    assert state["steps"] == 4 and not state["finished"]
    resumed, record = fit(config, digits, out, seed=3, verbose=0, export=False)
    np.testing.assert_array_equal(codes(resumed, digits), codes(reference, digits))
    assert record["map_at_all"] == ref_record["map_at_all"] and record["steps"] == 6
    assert record["resumes"] == 1 and ref_record["resumes"] == 0
    assert record["train_seconds"] >= round(state["train_seconds"], 2)
    assert not (out / "checkpoints").exists()  # removed once metrics.json is written


def test_an_image_model_with_augmentation_resumes_exactly(digits, tmp_path):
    """Killed after epoch 2 of 3, a convolutional GreedyHash trained on augmented images (crops and
    flips drawn per batch) resumes with the crops it would have drawn: the uninterrupted codes."""
    config = tiny_config("greedyhash")
    config["model"].update(backbone="conv", backbone_options={"filters": [4, 8]})
    config["train"].update(augment="crop,flip", crop_padding=2)
    reference, _ = fit(config, digits, tmp_path / "whole", seed=3, verbose=0, export=False)
    assert reference.input_kind == "images"
    out = tmp_path / "killed"
    with kill_at("checkpoint-saved", lambda info: info["epoch"] == 2), pytest.raises(Kill):
        fit(config, digits, out, seed=3, verbose=0, export=False)
    resumed, record = fit(config, digits, out, seed=3, verbose=0, export=False)
    assert record["resumes"] == 1 and record["steps"] == 6
    np.testing.assert_array_equal(codes(resumed, digits), codes(reference, digits))
    # and the augmentation matters: without it the same run ends elsewhere
    config["train"].pop("augment")
    plain, _ = fit(config, digits, tmp_path / "plain", seed=3, verbose=0, export=False)
    assert not np.array_equal(resumed.encode_split(digits.database), plain.encode_split(digits.database))


class KillWindowTest:
    config = staticmethod(lambda: tiny_config("tbh", steps=4))

    def whole(self, digits, tmp_path):
        model, _ = fit(self.config(), digits, tmp_path / "whole", seed=0, verbose=0)
        return codes(model, digits)

    @pytest.mark.parametrize("point", ["evaluate", "export", "metrics", "cleanup"])
    def test_a_kill_after_training_evaluates_and_exports_without_training_again(
        self, point, digits, tmp_path, capsys
    ):
        out = tmp_path / "run"
        with kill_at(point), pytest.raises(Kill):
            fit(self.config(), digits, out, seed=0)
        assert (out / "checkpoints").is_dir()
        capsys.readouterr()
        model, record = fit(self.config(), digits, out, seed=0)
        said = capsys.readouterr().out
        assert "training had finished, so evaluating and exporting" in said
        assert "about" not in said  # no training step ran (DurationEstimate never printed)
        assert record["steps"] == 4 and (out / "export").is_dir() and (out / "metrics.json").is_file()
        np.testing.assert_array_equal(codes(model, digits), self.whole(digits, tmp_path))
        assert not (out / "checkpoints").exists()

    def test_a_half_written_checkpoint_is_skipped_with_one_warning(self, digits, tmp_path, capsys):
        out = tmp_path / "run"
        with kill_at("checkpoint-saved", lambda info: info["epoch"] == 2), pytest.raises(Kill):
            fit(self.config(), digits, out, seed=0, export=False)
        newest = out / "checkpoints" / "epoch-000002"
        (newest / "model.weights.h5").write_bytes(b"")  # what a kill during the write of a file leaves
        # and a checkpoint folder and an export never renamed in (as atomic_folder makes them)
        stale = [files.temporary_folder(out / "checkpoints"), files.temporary_folder(out)]
        capsys.readouterr()
        model, record = fit(self.config(), digits, out, seed=0, export=False)
        said = capsys.readouterr().out
        assert said.count("warning:") == 1 and "epoch-000002" in said
        assert "resuming from the checkpoint of epoch 1 (step 2)" in said
        assert not any(os.path.exists(path) for path in stale)
        np.testing.assert_array_equal(codes(model, digits), self.whole(digits, tmp_path))

    def test_no_readable_checkpoint_starts_over_saying_so(self, digits, tmp_path, capsys):
        out = tmp_path / "run"
        with kill_at("checkpoint-saved", lambda info: info["epoch"] == 1), pytest.raises(Kill):
            fit(self.config(), digits, out, seed=0, export=False)
        (out / "checkpoints" / "epoch-000001" / "state.json").write_text("{")
        capsys.readouterr()
        model, record = fit(self.config(), digits, out, seed=0, export=False)
        said = capsys.readouterr().out
        assert "training starts over" in said and record["resumes"] == 0
        np.testing.assert_array_equal(codes(model, digits), self.whole(digits, tmp_path))

    def test_checkpoints_of_another_configuration_are_refused(self, digits, tmp_path):
        out = tmp_path / "run"
        with kill_at("checkpoint-saved"), pytest.raises(Kill):
            fit(self.config(), digits, out, seed=0, export=False)
        with pytest.raises(ValueError, match="checkpoints of another run"):
            fit(self.config(), digits, out, seed=1, export=False)


class DivergenceTest:
    def test_a_nan_loss_stops_at_once_naming_the_step_and_term(self, digits, tmp_path):
        config = tiny_config("sgh", steps=8)
        config["train"]["learning_rate"] = 1e30
        out = tmp_path / "run"
        with pytest.raises(
            lifecycle.TrainingDiverged, match=r"diverged at step \d+: the loss term \w+"
        ) as info:
            fit(config, digits, out, seed=0, verbose=0)
        assert not (out / "metrics.json").exists() and not (out / "export").exists()
        # before its first checkpoint, the run leaves no folder (only logs were in it); after, it stays
        assert out.exists() == ("is kept in" in str(info.value))

    def test_a_run_diverging_after_a_checkpoint_keeps_it(self, digits, tmp_path):
        config = tiny_config("sgh", steps=8)
        config["train"]["steps_per_epoch"] = 2
        out = tmp_path / "run"

        def diverge(name, info):
            if name == "checkpoint-saved" and info["epoch"] == 2:
                raise lifecycle.TrainingDiverged("diverged (injected)")

        with lifecycle.fault_hook(diverge), pytest.raises(lifecycle.TrainingDiverged):
            fit(config, digits, out, seed=0, verbose=0)
        assert sorted(os.listdir(out / "checkpoints")) == ["epoch-000001", "epoch-000002"]


def test_ctrl_c_raises_one_line_saying_how_to_resume(digits, tmp_path):
    def hook(name, info):
        if name == "checkpoint-saved" and info["epoch"] == 2:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with lifecycle.fault_hook(hook), pytest.raises(lifecycle.RunInterrupted) as caught:
        fit(tiny_config("tbh"), digits, out, seed=0, verbose=0, export=False)
    message = str(caught.value)
    assert "\n" not in message and "step 4 of 6" in message and "re-run the same command" in message


def test_ctrl_c_after_training_says_the_model_is_kept(digits, tmp_path):
    def hook(name, info):
        if name == "export":
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with lifecycle.fault_hook(hook), pytest.raises(lifecycle.RunInterrupted, match="while evaluating or"):
        fit(tiny_config("tbh", steps=2), digits, out, seed=0, verbose=0)
    assert (out / "checkpoints").is_dir() and not (out / "metrics.json").exists()


def test_files_take_the_modes_the_umask_asks_for(digits, tmp_path):
    previous = os.umask(0o022)
    try:
        fit(tiny_config("tbh", steps=2), digits, tmp_path / "run", seed=0, verbose=0)
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    assert (run / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (run / "export").stat().st_mode & 0o777 == 0o755
    for root, dirs, names in os.walk(run / "export"):
        for name in dirs:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o755
        for name in names:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o644


def test_an_unwritable_output_is_refused_before_training(digits, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        fit(tiny_config("tbh"), digits, tmp_path / "file", seed=0, verbose=0)
    with pytest.raises(ValueError, match="cannot write to the output folder"):
        fit(tiny_config("tbh"), digits, tmp_path / "file" / "run", seed=0, verbose=0)
