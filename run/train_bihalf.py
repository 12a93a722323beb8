"""Train BiHalf (Li and van Gemert 2021): `python run/train_bihalf.py --help`.

With no arguments: bihalf on scikit-learn's digits, 32 bits, one Dense layer on the features;
prints the test metrics and writes the export, metrics.json, checkpoints and TensorBoard
logs under saved_models/bihalf-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "bihalf", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "bihalf", *sys.argv[1:]]))
