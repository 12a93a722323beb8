"""Train BGAN (Song et al. 2018): `python run/train_bgan.py --help`.

With no arguments: BGAN on scikit-learn's digits, 32 bits (the MLP encoder on the features;
the generator and discriminator on the 8 x 8 images; --backbone conv for the image encoder).
Builds the neighbour graph of the training features, trains, prints the test metrics and
writes the export, metrics.json, TensorBoard logs and reconstructions.png (query images
and the images generated from their binary codes) under saved_models/bgan-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def _argv(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    return ["train", "bgan", *argv, *(["--figure"] if "--figure" not in argv else [])]


def main(argv=None):
    return run(_argv(argv))


if __name__ == "__main__":
    sys.exit(cli_main(_argv(None)))
