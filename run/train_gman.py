"""Train GMAN (Wang, Liu and Zhao 2018): `python run/train_gman.py --help`.

With no arguments: GMAN on scikit-learn's digits, 32 bits (the vector form; --backbone conv
for the image form), L2 pre-training then the adversarial steps; prints the test metrics
and writes the export, metrics.json, checkpoints and TensorBoard logs under
saved_models/gman-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "gman", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "gman", *sys.argv[1:]]))
