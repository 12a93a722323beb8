import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.baselines import LSH
from tfhash.data import load_data, train_dataset
from tfhash.export import export_encoder
from tfhash.losses import redundancy_combination
from tfhash.models import SGH
from tfhash.models.sgh import VARIANTS
from tfhash.testing import query_map


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class SGHTest:
    @pytest.mark.parametrize("variant", VARIANTS)
    def test_config_round_trip(self, variant):
        model = SGH(input_dim=20, bits=8, variant=variant, delta=0.1, seed=3)
        clone = SGH.from_config(json.loads(json.dumps(model.get_config())))
        assert clone.get_config() == model.get_config()
        x = np.random.default_rng(0).random((5, 20)).astype(np.float32)
        clone.set_weights(model.get_weights())
        np.testing.assert_array_equal(clone.encode(x), model.encode(x))

    def test_layer_widths_follow_the_paper(self):
        deep = SGH(input_dim=20, bits=8, variant="rsgh")
        assert [layer.units for layer in deep.encoder_layers] == [8, 8, 8]  # [D-K-K-K]
        assert [layer.units for layer in deep.decoder_layers] == [8, 8, 20]  # [K-K-K-D]
        linear = SGH(input_dim=20, bits=8)
        assert [layer.units for layer in linear.decoder_layers] == [20] and not linear.decoder_layers[
            0
        ].use_bias

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="variant must be one of"):
            SGH(input_dim=4, bits=2, variant="deep")
        with pytest.raises(ValueError, match="rho must be in"):
            SGH(input_dim=4, bits=2, rho=1.0)
        with pytest.raises(ValueError, match="ridge must be > 0"):
            SGH(input_dim=4, bits=2, ridge=0)

    def test_adapt_initialises_the_decoder_from_data(self, digits):
        model = SGH(input_dim=64, bits=8)
        model.adapt(digits.train.features)
        np.testing.assert_allclose(
            model.shift.numpy(), digits.train.features.astype(np.float64).mean(0), atol=1e-6
        )
        np.testing.assert_allclose(
            model.scale.numpy(), digits.train.features.astype(np.float64).var(0), atol=1e-6
        )

    def test_loss_terms_by_hand(self):
        model = SGH(input_dim=2, bits=1, alpha=0.5, weight_decay=0.1)
        model.encoder_layers[0].set_weights([np.array([[2.0], [0.0]]), np.array([0.0])])
        model.decoder_layers[0].set_weights([np.array([[0.5, -1.0]])])
        model.scale.assign([2.0, 1.0])
        model.shift.assign([0.5, 1.0])
        terms, objectives = model.compute_loss_terms(tf.constant([[1.0, 0.0]]), training=False)
        # logit 2 -> p = sigmoid(2), code 1; x_hat = [0.5 * 2 + 0.5, -1 * 1 + 1] = [1.5, 0]
        p = 1 / (1 + np.exp(-2.0))
        recon = 0.5 * 0.5**2
        kl = 0.5 * (p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p)))
        assert float(terms["reconstruction_loss"]) == pytest.approx(recon, rel=1e-5)
        assert float(terms["kl_loss"]) == pytest.approx(kl, rel=1e-5)
        # weight decay 0.5 * 0.1 * sum of squared kernels: encoder 4 -> 0.2, decoder 1.25 -> 0.0625
        assert float(objectives["decoder"]) == pytest.approx(recon + 0.0625, rel=1e-5)
        assert float(objectives["encoder"]) == pytest.approx(recon + kl + 0.2, rel=1e-5)

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_every_variable_of_each_role_gets_a_gradient(self, variant, digits):
        model = SGH(input_dim=64, bits=8, variant=variant, seed=0)
        model.adapt(digits.train.features)
        model.combination.assign(redundancy_combination(model(digits.train.features[:200]), 1.0))
        roles = {role: model.role_variables(role) for role in model.roles}
        owned = [id(v) for vs in roles.values() for v in vs]
        assert sorted(owned) == sorted(id(v) for v in model.trainable_variables)  # roles partition them
        with tf.GradientTape(persistent=True) as tape:
            _, objectives = model.compute_loss_terms(tf.constant(digits.train.features[:200]), training=True)
        for role, variables in roles.items():
            for variable, grad in zip(variables, tape.gradient(objectives[role], variables), strict=True):
                assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, (role, variable.path)

    def test_fit_updates_the_combination_matrix(self, digits):
        model = SGH(input_dim=64, bits=8, variant="rsgh", seed=0)
        model.compile(learning_rate=1e-2)
        history = model.fit(
            train_dataset(digits.train.features, 500, seed=0), steps_per_epoch=3, epochs=1, verbose=0
        )
        a = model.combination.numpy()
        assert np.all(np.diag(a) == 0) and np.abs(a).max() > 0
        assert not model.combination.trainable and any(w is model.combination for w in model.weights)
        assert set(model.loss_names) <= set(history.history)

    @pytest.mark.large
    def test_saved_model_round_trip(self, tmp_path, digits):
        model = SGH(input_dim=64, bits=16, variant="rsgh", seed=1)
        model.adapt(digits.train.features)
        export_encoder(model, tmp_path / "export")
        np.save(tmp_path / "x.npy", digits.query.features)
        np.save(tmp_path / "codes.npy", model.encode(digits.query.features))
        script = textwrap.dedent(f"""
            import numpy as np, tensorflow as tf
            fn = tf.saved_model.load({str(tmp_path / "export")!r}).signatures["serving_default"]
            out = fn(features=tf.constant(np.load({str(tmp_path / "x.npy")!r})))
            want = np.load({str(tmp_path / "codes.npy")!r})
            assert (out["codes"].numpy() == want).all()
            assert (out["packed_codes"].numpy() == np.packbits(want, axis=1)).all()
            print("ok")
        """)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.large
@pytest.mark.parametrize("variant", ["sgh", "rsgh"])
def test_training_on_digits_beats_lsh(variant, digits):
    lsh = np.mean([query_map(LSH(32, seed).fit(digits.train.features), digits) for seed in range(5)])
    keras.utils.set_random_seed(0)
    model = SGH(input_dim=64, bits=32, variant=variant, seed=0)
    model.adapt(digits.train.features)
    model.compile(learning_rate=1e-2)
    model.fit(train_dataset(digits.train.features, 500, seed=0), steps_per_epoch=100, epochs=6, verbose=0)
    got = query_map(model, digits)
    print(json.dumps({variant: got, "lsh": lsh}))
    assert got > lsh + 0.1, (got, lsh)


@pytest.mark.large
def test_rsgh_trains_under_mirrored_strategy():
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfhash.data import train_dataset
        from tfhash.models import SGH
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = SGH(input_dim=16, bits=8, variant="rsgh", seed=0)
            model.compile(learning_rate=1e-3)
        x = np.random.default_rng(0).uniform(size=(64, 16)).astype("float32")
        history = model.fit(train_dataset(x, 16), steps_per_epoch=3, epochs=1, verbose=0)
        assert all(np.isfinite(v[0]) for v in history.history.values()), history.history
        a = model.combination.numpy()
        assert np.abs(a).max() > 0 and np.all(np.diag(a) == 0)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
