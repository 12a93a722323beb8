import numpy as np
import pytest

from tfhash import baselines
from tfhash.baselines import ITQ, LSH, PCAH, SH, itq_rotation, spectral_modes
from tfhash.data import load_data
from tfhash.evaluation import label_relevance, retrieval_metrics
from tfhash.testing import query_map

ALL = (LSH, PCAH, ITQ, SH)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def digits_map(model, data):
    return query_map(model.fit(data.train.features), data)


class ITQTest:
    def test_rotation_is_orthogonal_and_the_loss_never_increases(self):
        rng = np.random.default_rng(3)
        projected = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12))
        projected -= projected.mean(0)
        rotation, losses = itq_rotation(projected, iterations=30, rng=rng)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(12), atol=1e-10)
        assert len(losses) == 31
        assert np.all(np.diff(losses) <= 1e-9 * losses[0]), losses
        assert losses[-1] < losses[0]

    def test_procrustes_step_beats_random_rotations(self):
        rng = np.random.default_rng(4)
        projected = rng.normal(size=(200, 4))
        rotation, losses = itq_rotation(projected, iterations=1, rotation=np.eye(4))
        signs = np.where(projected > 0, 1.0, -1.0)
        best = np.sum((signs - projected @ rotation) ** 2)
        for _ in range(50):  # R = U W^T minimises ||B - V R|| over orthogonal R for this B
            other = baselines.random_rotation(4, rng)
            assert best <= np.sum((signs - projected @ other) ** 2) + 1e-9

    def test_fit_records_losses_and_reproduces_protocol_on_digits(self, digits):
        model = ITQ(bits=32, seed=0)
        assert digits_map(model, digits) == pytest.approx(0.655, abs=0.01)  # protocols.md digits ITQ 32 bits
        assert len(model.losses) == 51 and np.all(np.diff(model.losses) <= 1e-6 * model.losses[0])


class SHTest:
    def test_modes_are_the_smallest_frequencies_ties_by_dimension(self):
        dims, omegas = spectral_modes(np.array([4.0, 2.0, 1.0]), bits=4)
        # dim 0: pi/4, pi/2, 3pi/4, ...; dim 1: pi/2, pi; dim 2: pi
        assert dims.tolist() == [0, 0, 1, 0]
        np.testing.assert_allclose(omegas, np.pi * np.array([0.25, 0.5, 0.5, 0.75]))

    def test_codes_are_balanced_on_uniform_data(self):
        rng = np.random.default_rng(0)
        box = rng.uniform(size=(20000, 3)) * np.array([4.0, 2.0, 1.0])
        model = SH(bits=6).fit(box)
        codes = model.encode(rng.uniform(size=(20000, 3)) * np.array([4.0, 2.0, 1.0]))
        np.testing.assert_allclose(codes.mean(0), 0.5, atol=0.02)
        assert len({tuple(c) for c in codes.T}) == 6  # six different bits

    def test_more_bits_than_features(self):
        rng = np.random.default_rng(1)
        codes = SH(bits=16).fit(rng.normal(size=(300, 4))).encode(rng.normal(size=(10, 4)))
        assert codes.shape == (10, 16) and set(np.unique(codes)) <= {0, 1}


class BaselineTest:
    @pytest.mark.parametrize("cls", ALL)
    def test_deterministic_given_a_seed(self, cls, digits):
        x = digits.train.features
        first = cls(bits=16, seed=5).fit(x).encode(digits.query.features)
        again = cls(bits=16, seed=5).fit(x).encode(digits.query.features)
        np.testing.assert_array_equal(first, again)
        assert first.dtype == np.uint8 and first.shape == (300, 16)

    def test_lsh_and_itq_depend_on_the_seed(self, digits):
        for cls in (LSH, ITQ):
            a = cls(bits=16, seed=0).fit(digits.train.features).encode(digits.query.features)
            b = cls(bits=16, seed=1).fit(digits.train.features).encode(digits.query.features)
            assert (a != b).any(), cls

    @pytest.mark.parametrize("cls", ALL)
    def test_save_load_and_config_round_trip(self, cls, digits, tmp_path):
        model = cls(bits=24, seed=2).fit(digits.train.features)
        path = model.save(tmp_path / f"{cls.name}.npz")
        loaded = baselines.load(path)
        assert type(loaded) is cls and loaded.get_config() == model.get_config()
        np.testing.assert_array_equal(
            loaded.encode(digits.query.features), model.encode(digits.query.features)
        )
        clone = cls.from_config(model.get_config()).fit(digits.train.features)
        np.testing.assert_array_equal(
            clone.encode(digits.query.features), model.encode(digits.query.features)
        )
        assert [p.name for p in tmp_path.iterdir()] == [f"{cls.name}.npz"]  # no temporary left

    def test_pcah_and_lsh_reproduce_protocol_on_digits(self, digits):
        assert digits_map(PCAH(bits=16), digits) == pytest.approx(0.334, abs=0.01)
        assert digits_map(PCAH(bits=32), digits) == pytest.approx(0.292, abs=0.01)
        lsh = [digits_map(LSH(bits=32, seed=s), digits) for s in range(5)]
        assert abs(np.mean(lsh) - 0.375) < 2 * np.std(lsh) + 0.01, lsh  # protocols.md LSH 32 bits

    def test_bad_input_gives_clear_errors(self, digits, tmp_path):
        with pytest.raises(ValueError, match="not fitted"):
            ITQ(bits=8).encode(digits.query.features)
        model = ITQ(bits=8).fit(digits.train.features)
        with pytest.raises(ValueError, match=r"shape \(n, 64\); received \(3, 10\)"):
            model.encode(np.zeros((3, 10)))
        bad = digits.query.features.copy()
        bad[4, 2] = np.nan
        with pytest.raises(ValueError, match="NaN or infinite values in 1 rows"):
            model.encode(bad)
        with pytest.raises(ValueError, match="at most min"):
            PCAH(bits=65).fit(digits.train.features)
        with pytest.raises(ValueError, match="bits must be a positive int"):
            SH(bits=0)
        np.savez(tmp_path / "other.npz", x=np.zeros(3))
        with pytest.raises(ValueError, match="not a tfhash-baseline-1 file"):
            baselines.load(tmp_path / "other.npz")

    def test_rank_deficient_data_warns(self, digits):
        with pytest.warns(UserWarning, match="3 of the 64 principal directions have zero variance") as caught:
            PCAH(bits=64).fit(digits.train.features)  # three digits pixels are always 0
        assert len(caught) == 1


@pytest.mark.large
def test_mnist_reproduces_protocol_figures(mnist_path):
    data = load_data(mnist_path)
    relevance = label_relevance(data.query.labels, data.database.labels)

    def metrics(model):
        model.fit(data.train.features)
        return retrieval_metrics(
            model.encode(data.query.features), model.encode(data.database.features), relevance
        )

    # protocols.md, mnist: ITQ and PCAH within 0.01, mAP@all and mAP@1000
    for model, (at_all, at_1000) in (
        (ITQ(bits=32, seed=0), (0.432, 0.763)),
        (PCAH(bits=16), (0.275, 0.605)),
        (PCAH(bits=64), (0.212, 0.629)),
    ):
        got = metrics(model)
        assert got["map_at_all"] == pytest.approx(at_all, abs=0.01), (model.name, model.bits, got)
        assert got["map_at_1000"] == pytest.approx(at_1000, abs=0.01), (model.name, model.bits, got)
    lsh = [metrics(LSH(bits=32, seed=s))["map_at_all"] for s in range(3)]
    assert abs(np.mean(lsh) - 0.230) < 3 * np.std(lsh) + 0.005, lsh
