"""Train GreedyHash (Su et al. 2018, unsupervised form): `python run/train_greedyhash.py --help`.

With no arguments: greedyhash on scikit-learn's digits, 32 bits, one Dense layer on the features;
prints the test metrics and writes the export, metrics.json, checkpoints and TensorBoard
logs under saved_models/greedyhash-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "greedyhash", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "greedyhash", *sys.argv[1:]]))
