import numpy as np
import pytest

from tfhash.data import load_data
from tfhash.diagnostics import bit_statistics
from tfhash.registry import get_method
from tfhash.train import fit


def test_bit_statistics_by_hand():
    codes = np.array([[1, 0, 1], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    stats = bit_statistics(codes)
    np.testing.assert_allclose(stats["ones_fraction"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(stats["entropy"], [0.0, 1.0, 1.0], atol=1e-9)
    assert stats["dead_bits"] == 1


def test_a_copied_bit_is_redundant():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (400, 5))
    codes[:, 4] = codes[:, 0]
    redundancy = bit_statistics(codes, ridge=1e-3)["redundancy"]
    assert redundancy[4] < 1e-3 and redundancy[0] < 1e-3  # each explains the other
    assert np.all(redundancy[1:4] > 0.1)


@pytest.mark.large
def test_fit_logs_and_records_bit_diagnostics(tmp_path):
    data = load_data("digits")
    config = get_method("rsgh").get_config(16, "digits")
    config["train"].update({"steps": 40, "steps_per_epoch": 20, "eval_every": 1})
    model, record = fit(config, data, tmp_path, verbose=0, export=False)
    history = model.history.history
    assert len(history["dead_bits"]) == 2 and 0 <= history["bit_entropy_mean"][-1] <= 1
    assert 0 <= record["dead_bits"] <= 16 and len(record["bits_per_bit"]["redundancy"]) == 16
    assert any((tmp_path / "logs" / "bits").glob("events.out.tfevents*"))
