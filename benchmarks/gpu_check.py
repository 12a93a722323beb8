"""The GPU check of issue 33: one script a machine with a GPU runs start to finish, every figure in one
JSON file.

    python benchmarks/gpu_check.py [--out FILE] [--minutes 9] [--cifar10 cifar10.npz]
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # CPU, tiny sizes (tested)

Sections, each timed and each written to the JSON as soon as it ends (a failure is recorded as
its error and the next section runs):

1. `environment`: the devices, TensorFlow, Keras, CUDA and cuDNN versions;
2. `speed`: TBH (batch 400, 4096-d features: CIFAR-10 fc7's width) and GMAN (batch 32 vectors) training
   steps/s in float32 and in `mixed_float16`, and their ratio, on random features (speed does not
   depend on the values);
3. `export`: a TBH trained a few steps under `mixed_float16`, exported on this device; the export's
   codes against the same weights encoded in float32 on the CPU: the fraction of equal bits, and the
   float16-rounding bound that explains the others (|pre-activation| under 2^-10 of its scale);
4. `features`: `tfhash features` images/s of EfficientNet-Lite0 (random weights: same speed) at
   224 x 224, float32 and `mixed_float16`;
5. `bgan`: in the minutes left, BGAN's full model on CIFAR-10 (`--cifar10`, a Keras-layout npz)
   under its protocol (10,000 labelled training items), checkpointed in `--bgan-out`, so that a
   second run continues it; skipped, with the reason, without the file.

`--dry-run` runs every section on the CPU with tiny sizes (a few steps, 64-d features, 32 x 32
images, digits for BGAN) so that the script is known to work the first time a GPU is lent.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "gpu-check", "gpu_check.json")
FULL = {"tbh_batch": 400, "gman_batch": 32, "dim": 4096, "items": 8000, "steps": 50, "image_size": 224,
        "images": 512, "image_batch": 64, "export_steps": 20}  # fmt: skip
DRY = {"tbh_batch": 32, "gman_batch": 16, "dim": 64, "items": 400, "steps": 3, "image_size": 32,
       "images": 24, "image_batch": 8, "export_steps": 2}  # fmt: skip


def environment():
    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    return {
        "gpus": [d.get("device_name", g.name) for d, g in zip(details, gpus, strict=True)],
        "compute_capability": [d.get("compute_capability") for d in details],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "python": sys.version.split()[0],
    }


def random_data(items, dim, seed=0):
    """A RetrievalData of random features in [0, 1) and 10 classes (speed only)."""
    from tfhash.data import split_pool

    rng = np.random.default_rng(seed)
    features = rng.random((items, dim), dtype=np.float32)
    return split_pool("random", features, np.arange(items) % 10, max(1, items // 100))


def steps_per_second(method, data, batch, steps, policy, model_options=None):
    """Training steps/s of `method` (its paper config, `batch`) under `policy` after a warm-up."""
    import keras

    from tfhash.data import batch_dataset
    from tfhash.models import HashingModel
    from tfhash.precision import dtype_policy
    from tfhash.registry import get_method
    from tfhash.train import build_model

    config = get_method(method).get_config(32, "paper")
    config["model"].update(model_options or {})
    config["train"]["batch_size"] = batch
    with dtype_policy(policy):
        keras.utils.set_random_seed(0)
        model = build_model(config, data.feature_dim, 0, data.image_shape, data.num_classes)
        if type(model).adapt is not HashingModel.adapt:
            model.adapt(data.train.features)
        dataset = batch_dataset(data.train, model.batch_keys, batch, 0)
        model.fit(dataset, steps_per_epoch=2, shuffle=False, verbose=0)  # tracing and warm-up
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, shuffle=False, verbose=0)
        return steps / (time.perf_counter() - start)


def speed(sizes):
    data = random_data(sizes["items"], sizes["dim"])
    out = {}
    for method, batch in (("tbh", sizes["tbh_batch"]), ("gman", sizes["gman_batch"])):
        options = {"pretrain_steps": 0} if method == "gman" else {}
        rates = {
            p: steps_per_second(method, data, batch, sizes["steps"], p, options)
            for p in ("float32", "mixed_float16")
        }
        out[method] = {"batch": batch, "features": sizes["dim"]}
        out[method].update({f"{p}_steps_per_second": round(r, 2) for p, r in rates.items()})
        out[method]["mixed_over_float32"] = round(rates["mixed_float16"] / rates["float32"], 3)
    return out


def export_parity(sizes):
    """Codes of a mixed_float16 TBH's export on this device against the same weights in float32 on the CPU."""
    import keras
    import tensorflow as tf

    from tfhash.data import batch_dataset
    from tfhash.export import export_encoder
    from tfhash.models import TBH
    from tfhash.precision import dtype_policy
    from tfhash.registry import get_method
    from tfhash.train import build_model

    data = random_data(sizes["items"], sizes["dim"])
    config = get_method("tbh").get_config(32, "paper")
    config["train"]["batch_size"] = sizes["tbh_batch"]
    with dtype_policy("mixed_float16"):
        keras.utils.set_random_seed(0)
        model = build_model(config, data.feature_dim, 0)
        model.fit(batch_dataset(data.train, model.batch_keys, sizes["tbh_batch"], 0),
                  steps_per_epoch=sizes["export_steps"], shuffle=False, verbose=0)  # fmt: skip
    x = data.database.features[:2048]
    with tempfile.TemporaryDirectory() as folder:
        loaded = tf.saved_model.load(str(export_encoder(model, os.path.join(folder, "export"))))
        exported = loaded.signatures["serving_default"](features=tf.constant(x))["codes"].numpy()
    with dtype_policy("float32"), tf.device("/CPU:0"):
        plain = TBH.from_config(model.get_config())
        plain.set_weights(model.get_weights())
        logits = plain.binary_head(plain.encoder_hidden(tf.constant(x))).numpy()  # codes: 1[logit > 0]
        reference = plain.encode(x)
    differ = exported != reference
    result = {
        "items": len(x),
        "bits": int(reference.shape[1]),
        "equal_bits": round(float(np.mean(~differ)), 6),
    }
    # how close to the threshold the differing bits were, in units of the logits' spread: float16
    # rounding can flip only bits whose logit is tiny against it
    spread = float(np.std(logits)) or 1.0
    result["differing_max_abs_logit_over_std"] = (
        round(float(np.abs(logits[differ]).max() / spread), 5) if differ.any() else 0.0
    )
    return result


def features_speed(sizes):
    from tfhash.data import split_pool
    from tfhash.features import extract
    from tfhash.precision import dtype_policy

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (sizes["images"], 32, 32, 3), dtype=np.uint8)
    data = split_pool("random", images, np.arange(sizes["images"]) % 2, 1, image_shape=(32, 32, 3))
    rates = {}
    for policy in ("float32", "mixed_float16"):
        with dtype_policy(policy):
            _, _, _, rate = extract(
                data, "efficientnet-lite0", None, sizes["image_size"], sizes["image_batch"], False
            )
        rates[f"{policy}_images_per_second"] = round(rate, 1)
    ratio = rates["mixed_float16_images_per_second"] / rates["float32_images_per_second"]
    return {"backbone": "efficientnet-lite0", "input_size": sizes["image_size"], **rates,
            "mixed_over_float32": round(ratio, 3)}  # fmt: skip


def bgan(args, seconds_left, dry_run):
    """BGAN's full model under its protocol for the time left, checkpointed in args.bgan_out."""
    from tfhash.data import load_data
    from tfhash.registry import get_method
    from tfhash.train import fit

    if dry_run:
        data, labelled = load_data("digits"), 50
    elif not args.cifar10 or not os.path.isfile(args.cifar10):
        return {"skipped": f"no CIFAR-10 npz (--cifar10 {args.cifar10!r}); nothing to train"}
    else:
        data, labelled = load_data(args.cifar10), 1000
    config = get_method("bgan").get_config(32, "digits" if dry_run else "paper")
    if dry_run:
        config["model"].update(generator_filters=[8, 8, 4], discriminator_units=16)
        config["train"].update(steps=4, steps_per_epoch=2, batch_size=32)
    _, record = fit(config, data, args.bgan_out, seed=0, verbose=0, budget_seconds=max(seconds_left, 1.0),
                    labelled_per_class=labelled, mixed_precision=not dry_run)  # fmt: skip
    keys = ("steps", "train_seconds", "map_at_all", "map_at_1000", "mixed_precision", "resumes")
    return {key: record.get(key) for key in keys}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--minutes", type=float, default=9.0, help="stop starting work after this (default 9)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny sizes: checks that every section runs"
    )
    parser.add_argument("--cifar10", default=os.path.expanduser("~/.cache/tfhash-data/cifar10.npz"))
    parser.add_argument(
        "--bgan-out",
        help="BGAN's run folder (default: benchmarks/results/gpu-check/bgan-cifar10; "
        "a temporary one with --dry-run)",
    )
    args = parser.parse_args(argv)
    scratch = tempfile.TemporaryDirectory(prefix="gpu-check-")
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    if args.bgan_out is None:
        args.bgan_out = os.path.join(
            scratch.name if args.dry_run else os.path.join(HERE, "results", "gpu-check"), "bgan-cifar10"
        )
    start = time.time()
    sizes = DRY if args.dry_run else FULL
    report = {"dry_run": args.dry_run, "sizes": sizes, "sections": {}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def write():
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)

    sections = [
        ("environment", environment),
        ("speed", lambda: speed(sizes)),
        ("export", lambda: export_parity(sizes)),
        ("features", lambda: features_speed(sizes)),
        ("bgan", lambda: bgan(args, args.minutes * 60 - (time.time() - start), args.dry_run)),
    ]
    for name, section in sections:
        if name != "environment" and time.time() - start > args.minutes * 60:
            report["sections"][name] = {"skipped": "out of time"}
            continue
        began = time.time()
        try:
            result = section()
        except Exception as err:  # one section's failure must not lose the others' figures
            result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
        result["seconds"] = round(time.time() - began, 1)
        report["sections"][name] = result
        report["total_seconds"] = round(time.time() - start, 1)
        write()
        print(f"{name}: {json.dumps(result)[:400]}", flush=True)
    print(f"wrote {args.out}")
    scratch.cleanup()
    return report


if __name__ == "__main__":
    main()
