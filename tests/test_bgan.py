"""BGAN (issue 16): the batch similarity from the sparse graph, beta's stages, the binarisations, the
three roles and their losses, config and SavedModel round trips, and a short training run on digits."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tfhash import cli, registry
from tfhash.data import load_data
from tfhash.models.bgan import BGAN, app, batch_similarity, stage_beta
from tfhash.neighbours import build_graph, pair_keys, save_graph
from tfhash.testing import assert_export_round_trip, random_code_map
from tfhash.train import fit

# digits-sized images (8 x 8 x 1) with small networks, so that a test step costs milliseconds
SMALL = {
    "input_dim": 64,
    "bits": 6,
    "seed": 0,
    "image_shape": (8, 8, 1),
    "k1": 3,
    "k2": 2,
    "backbone_options": {"units": [16]},
    "generator_filters": [8, 6, 4],
    "discriminator_filters": [4, 4, 4, 4],
    "discriminator_units": 8,
}


def features(n=24, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 64)).astype(np.float32)


def small_model(x=None, **kwargs):
    model = BGAN(**{**SMALL, **kwargs})
    model.compile(learning_rate=1e-2)
    model.adapt(features() if x is None else x)
    return model


def batch(index=(0, 3, 5, 7, 11, 20), seed=0):
    x = features(seed=seed)
    return {"features": tf.constant(x[list(index)]), "index": tf.constant(index, tf.int64)}


class GraphLookupTest:
    def test_batch_similarity_is_the_graphs_rows(self):
        x = features(40)
        for symmetric in (False, True):
            graph = build_graph(x, k1=4, k2=3, symmetric=symmetric)
            dense = -np.ones((40, 40), np.float32)
            for i in range(40):
                dense[i, graph["indices"][graph["indptr"][i] : graph["indptr"][i + 1]]] = 1.0
            assert symmetric == np.array_equal(dense, dense.T)
            index = np.array([39, 0, 7, 7, 12, 3, 38, 21])
            s = batch_similarity(tf.constant(pair_keys(graph)), tf.constant(index), 40).numpy()
            expected = dense[np.ix_(index, index)]
            expected[index[:, None] == index[None, :]] = 1.0  # an item and its copy
            np.testing.assert_array_equal(s, expected)

    def test_batch_similarity_edge_cases(self):
        keys = tf.constant([1, 5], tf.int64)  # items 0 -> 1 and 1 -> 2 of 3
        s = batch_similarity(keys, tf.constant([0, 1, 0]), 3).numpy()
        np.testing.assert_array_equal(s, [[1, 1, 1], [-1, 1, -1], [1, 1, 1]])  # copies of item 0 agree
        empty = batch_similarity(tf.zeros((0,), tf.int64), tf.constant([2, 0]), 3).numpy()
        np.testing.assert_array_equal(empty, [[1, -1], [-1, 1]])
        with pytest.raises(tf.errors.InvalidArgumentError, match="outside the graph"):
            batch_similarity(keys, tf.constant([0, 3]), 3)

    def test_pair_keys_are_sorted_edge_ids(self):
        graph = {"indptr": np.array([0, 2, 2, 3]), "indices": np.array([1, 2, 0])}
        np.testing.assert_array_equal(pair_keys(graph), [1, 2, 6])

    def test_adapt_reads_a_matching_graph_file_and_refuses_another(self, tmp_path):
        x = features()
        path = save_graph(build_graph(x, k1=3, k2=2), str(tmp_path / "graph.npz"))
        model = small_model(x, graph=path)
        assert model.graph_items == 24 and model.neighbours_per_item > 0
        with pytest.raises(ValueError, match="built from other features"):
            small_model(features(seed=1), graph=path)
        with pytest.raises(ValueError, match="options"):
            small_model(x, graph=path, k2=3)
        cached = small_model(x, graph=str(tmp_path / "cache"))
        assert len(list((tmp_path / "cache").iterdir())) == 1 and cached.graph_items == 24

    def test_training_without_a_graph_says_how_to_get_one(self):
        model = BGAN(**SMALL)
        with pytest.raises(RuntimeError, match="call model.adapt"):
            model.compute_loss_terms(batch(), training=True)


class CodesTest:
    def test_beta_rises_by_one_per_stage_up_to_beta_max(self):
        assert [stage_beta(t, 100) for t in (0, 99, 100, 250, 899, 900, 5000)] == [1, 1, 2, 3, 9, 10, 10]
        assert float(stage_beta(tf.constant(250, tf.int64), 100)) == 3.0
        assert stage_beta(10, 2, beta_max=4.5) == 4.5

    def test_app_tanh_two_step_and_sign(self):
        z = tf.constant([[-2.0, -0.05, 0.0, 0.3, 1.5]])
        np.testing.assert_allclose(app(z).numpy(), [[-1.0, -0.05, 0.0, 0.3, 1.0]])
        for binarization, beta, expected in (
            ("app", 10.0, np.clip(10 * z.numpy(), -1, 1)),
            ("continuation", 10.0, np.tanh(10 * z.numpy())),
            ("two-step", 10.0, np.tanh(z.numpy())),  # beta plays no part
        ):
            model = BGAN(**SMALL, binarization=binarization)
            model.beta.assign(beta)
            np.testing.assert_allclose(model.relaxed_codes(z).numpy(), expected, rtol=1e-6)
        x = features()
        model = small_model()
        codes = model.encode(x)
        np.testing.assert_array_equal(codes, (model.hash_outputs(x).numpy() > 0).astype(np.uint8))

    def test_beta_advances_in_fit_and_two_step_keeps_it_at_one(self, tmp_path):
        data = load_data("digits")
        for name, expected in (("bgan-ln", 3.0), ("bgan-two-step", 1.0)):
            config = registry.get_method(name).get_config(8, "digits")
            config["model"].update(beta_stage_steps=2, **{k: SMALL[k] for k in ("generator_filters",)})
            config["train"].update(steps=5, steps_per_epoch=5, batch_size=64, validation_size=50)
            model, record = fit(config, data, tmp_path / name, seed=0, verbose=0, export=False)
            # steps 0-1 at beta 1, 2-3 at 2, step 4 at 3
            assert float(model.beta.numpy()) == expected and record["steps"] == 5


class RolesTest:
    @pytest.mark.parametrize("losses", ["all", "neighbour", "neighbour+content", "neighbour+adversarial"])
    def test_each_role_has_its_own_variables_and_all_get_a_gradient(self, losses):
        model = small_model(losses=losses)
        expected = {
            "all": ("encoder", "generator", "discriminator"),
            "neighbour": ("encoder",),
            "neighbour+content": ("encoder", "generator"),
            "neighbour+adversarial": ("encoder", "generator", "discriminator"),
        }[losses]
        assert model.roles == expected
        with tf.GradientTape(persistent=True) as tape:
            _, objectives = model.compute_loss_terms(batch(), training=True)
        ids = [{id(v) for v in model.role_variables(role)} for role in model.roles]
        assert set().union(*ids) == {id(v) for v in model.trainable_variables}
        assert sum(map(len, ids)) == len(model.trainable_variables)  # disjoint
        for role in model.roles:
            variables = model.role_variables(role)
            for v, g in zip(variables, tape.gradient(objectives[role], variables), strict=True):
                assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, f"{role}: {v.path}"

    def test_the_adversarial_loss_never_reaches_the_encoder(self):
        """Eq. 18: the encoder descends l_N + lambda1 l_C; with l_A alone beside l_N (Table 2's third
        arm) its objective is l_N, so the codes train as the l_N arm's."""
        model = small_model(losses="neighbour+adversarial")
        terms, objectives = model.compute_loss_terms(batch(), training=True)
        assert float(objectives["encoder"]) == pytest.approx(float(terms["neighbour_loss"]))

    def test_loss_terms_by_hand(self):
        model = small_model(lambda1=0.3, lambda2=0.7)
        model.beta.assign(2.0)
        data = batch()
        terms, objectives = model.compute_loss_terms(data, training=False)
        x = data["features"].numpy()
        b = np.tanh(2.0 * model.hash_outputs(data["features"]).numpy())
        s = -np.ones((6, 6))
        rows = model.pair_keys.numpy()
        for a, i in enumerate(data["index"].numpy()):
            for c, j in enumerate(data["index"].numpy()):
                s[a, c] = 1.0 if i * 24 + j in rows else -1.0
        inner = b @ b.T / 6
        off = ~np.eye(6, dtype=bool)
        l_n = 0.5 * np.sum(((inner - s) ** 2)[off])
        images = x.reshape(6, 8, 8, 1)
        generated = model.generator(tf.constant(b, tf.float32)).numpy()
        real_f, real_logit = (t.numpy() for t in model.discriminate(tf.constant(images)))
        fake_f, fake_logit = (t.numpy() for t in model.discriminate(tf.constant(generated)))
        l_c = np.mean((images - generated) ** 2) + np.mean((real_f - fake_f) ** 2)
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        l_a = np.mean(np.log(sig(real_logit))) + np.mean(np.log(1 - sig(fake_logit)))
        assert float(terms["neighbour_loss"]) == pytest.approx(l_n, rel=1e-4)
        assert float(terms["content_loss"]) == pytest.approx(l_c, rel=1e-4)
        assert float(terms["adversarial_loss"]) == pytest.approx(l_a, rel=1e-4)
        assert float(objectives["encoder"]) == pytest.approx(l_n + 0.3 * l_c, rel=1e-4)
        assert float(objectives["generator"]) == pytest.approx(0.3 * l_c + 0.7 * l_a, rel=1e-4)
        assert float(objectives["discriminator"]) == pytest.approx(-l_a, rel=1e-4)
        with_self = small_model(self_pairs=True, lambda1=0.3, lambda2=0.7)  # the same weights, s_ii = 1
        with_self.beta.assign(2.0)
        diagonal = 0.5 * np.sum((np.diag(inner) - 1.0) ** 2)
        assert float(with_self.compute_loss_terms(data)[0]["neighbour_loss"]) == pytest.approx(
            l_n + diagonal, rel=1e-4
        )
        mean = small_model(neighbour_reduction="mean", lambda1=0.3, lambda2=0.7)
        mean.beta.assign(2.0)
        assert float(mean.compute_loss_terms(data)[0]["neighbour_loss"]) == pytest.approx(l_n / 30, rel=1e-4)

    def test_the_authors_code_form_by_hand(self):
        x = features()
        model = small_model(
            x, loss_form="authors_code", binarization="two-step", self_pairs=True, symmetric=True
        )
        assert model.roles == ("encoder", "generator", "discriminator")
        model.logvar_layer.kernel.assign(tf.zeros_like(model.logvar_layer.kernel))
        model.logvar_layer.bias.assign(
            tf.fill(model.logvar_layer.bias.shape, -80.0)
        )  # sampled latent = codes
        data = batch()
        terms, objectives = model.compute_loss_terms(data, training=False)
        codes = np.tanh(model.hash_outputs(data["features"]).numpy())
        graph = build_graph(x, k1=3, k2=2, self_pairs=True, symmetric=True)
        rows = set(pair_keys(graph).tolist())
        index = data["index"].numpy()
        s = np.array([[1.0 if i * 24 + j in rows else -1.0 for j in index] for i in index])
        assert np.all(np.diag(s) == 1.0)  # self pairs are neighbours
        pair = np.mean((codes @ codes.T - s) ** 2)  # every B x B entry, no 1 / L
        quantization = np.mean((codes - np.sign(codes)) ** 2)
        images = data["features"].numpy().reshape(6, 8, 8, 1)
        real_top, _ = model.discriminate(tf.constant(images), dense=True)
        recon_top, _ = model.discriminate(model.generator(tf.constant(codes, tf.float32)), dense=True)
        matching = np.sum((real_top.numpy() - recon_top.numpy()) ** 2) / 64  # over H W C = 64 pixels
        assert float(terms["neighbour_loss"]) == pytest.approx(pair, rel=1e-4)
        assert float(terms["quantization_loss"]) == pytest.approx(quantization, rel=1e-4)
        assert float(terms["feature_matching_loss"]) == pytest.approx(matching, rel=1e-3)
        assert float(objectives["encoder"]) == pytest.approx(matching + 10 * (pair + quantization), rel=1e-3)
        assert float(objectives["generator"]) == pytest.approx(
            matching + float(terms["generator_adversarial_loss"]), rel=1e-3
        )
        with tf.GradientTape() as tape:
            _, objectives = model.compute_loss_terms(data, training=True)
        grads = tape.gradient(objectives["encoder"], model.role_variables("encoder"))
        assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
        with pytest.raises(ValueError, match="ablations"):
            BGAN(**SMALL, loss_form="authors_code", losses="neighbour")
        config = registry.get_method("bgan-authors").get_config(32, "cifar10")
        assert config["train"]["epsilon"] == 1.0 and config["train"]["batch_size"] == 40

    def test_sources_without_images_train_the_neighbour_arm_only(self):
        with pytest.raises(ValueError, match="losses=neighbour"):
            BGAN(**{**SMALL, "image_shape": None})
        model = BGAN(**{**SMALL, "image_shape": None, "losses": "neighbour"})
        assert model.roles == ("encoder",)
        with pytest.raises(ValueError, match="losses must be one of"):
            BGAN(**SMALL, losses="content")
        with pytest.raises(ValueError, match="binarization must be one of"):
            BGAN(**SMALL, binarization="sign")


class RoundTripTest:
    def test_config_round_trip(self):
        model = small_model(binarization="app", losses="neighbour+content", beta_stage_steps=7)
        clone = BGAN.from_config(json.loads(json.dumps(model.get_config())))
        assert clone.get_config() == model.get_config()
        assert clone.roles == ("encoder", "generator") and clone.binarization == "app"

    def test_savedmodel_round_trip_on_features_and_images(self, tmp_path):
        model = small_model()
        model.beta.assign(4.0)
        assert_export_round_trip(model, features(), tmp_path / "features")
        conv = BGAN(**{**SMALL, "backbone": "conv", "backbone_options": {"filters": [4, 4]}})
        assert conv.input_kind == "images"
        assert_export_round_trip(conv, features(), tmp_path / "images")

    def test_reconstruct_generates_from_the_binary_codes(self):
        model = small_model()
        x = features(5)
        out = model.reconstruct(x)
        signs = np.where(model.hash_outputs(x).numpy() > 0, 1.0, -1.0).astype(np.float32)
        expected = model.generator(tf.constant(signs)).numpy().reshape(5, 64)
        np.testing.assert_allclose(out, expected, atol=1e-6)
        assert out.shape == (5, 64) and out.min() >= 0 and out.max() <= 1


def test_short_training_on_digits_beats_random_codes(tmp_path):
    """The default arm and networks, shortened: 150 steps of batch 128 on digits."""
    data = load_data("digits")
    config = registry.get_method("bgan").get_config(32, "digits")
    config["model"].update(beta_stage_steps=20, generator_filters=[32, 16, 8], discriminator_units=64)
    config["train"].update(steps=150, steps_per_epoch=50, batch_size=128)
    model, record = fit(config, data, tmp_path, seed=0, verbose=0, export=False)
    assert float(model.beta.numpy()) == 8.0  # step 149 is in stage 7
    random_codes = random_code_map(data, 32)
    assert random_codes < 0.15 and record["map_at_all"] > random_codes + 0.4, (
        record["map_at_all"],
        random_codes,
    )
    assert record["dead_bits"] == 0 and math.isfinite(record["train_seconds"])


def test_train_bgan_on_a_feature_source_without_images_fails_clearly(tmp_path, capsys):
    path = tmp_path / "features.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(60, 5)),
        y_train=np.arange(60) % 3,
        x_test=rng.normal(size=(9, 5)),
        y_test=np.arange(9) % 3,
    )
    with pytest.raises(SystemExit, match="losses=neighbour"):
        cli.main(
            [
                "train",
                "bgan",
                "--data",
                str(path),
                "--queries-per-class",
                "2",
                "--bits",
                "8",
                "--out",
                str(tmp_path / "r"),
            ]
        )


def test_run_script_trains_and_draws_originals_and_generated_images(tmp_path, capsys, run_script):
    out = tmp_path / "run"
    flags = ["--bits", "8", "--steps", "4", "--steps-per-epoch", "2", "--batch-size", "64"]
    small = ["generator_filters=[8,6,4]", "discriminator_units=8", "discriminator_filters=[4,4,4,4]"]
    options = [arg for option in small for arg in ("--model-option", option)]
    record = run_script("train_bgan").main([*flags, *options, "--out", str(out)])
    assert record["method"] == "bgan" and record["steps"] == 4
    assert (out / "reconstructions.png").stat().st_size > 1000
    assert f"figure: {out / 'reconstructions.png'}" in capsys.readouterr().out


def test_a_graph_from_the_command_serves_a_run_on_the_same_training_subset(tmp_path, capsys):
    graph = tmp_path / "graph.npz"
    cli.run(["neighbours", "digits", "--labelled-per-class", "20", "--out", str(graph)])
    assert "of 200 digits training items" in capsys.readouterr().out
    flags = ["train", "bgan-ln", "--bits", "8", "--steps", "2", "--batch-size", "32", "--labelled-per-class"]
    record = cli.run([*flags, "20", "--model-option", f"graph={graph}", "--out", str(tmp_path / "a")])
    assert record["train_split"] == {"part": "labelled", "per_class": 20, "items": 200}
    with pytest.raises(SystemExit, match="built from other features"):
        cli.main([*flags, "30", "--model-option", f"graph={graph}", "--out", str(tmp_path / "b")])
