"""Train HashNet (Cao et al. 2017): `python run/train_hashnet.py --help`.

With no arguments: HashNet on scikit-learn's digits, 32 bits, trained on the
labelled subset (50 items per class); prints the test metrics and writes the
export, metrics.json, checkpoints and TensorBoard logs (beta included) under
saved_models/hashnet-digits-32bit/. The ablations are `tfhash train
hashnet-w` (all pair weights 1) and `tfhash train hashnet-c` (no continuation).
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "hashnet", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "hashnet", *sys.argv[1:]]))
