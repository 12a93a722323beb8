"""Train JMLH (Shen et al. 2019): `python run/train_jmlh.py --help`.

With no arguments: JMLH on scikit-learn's digits, 32 bits, trained on the
labelled subset (50 items per class); prints the test metrics and writes the
export, metrics.json, checkpoints and TensorBoard logs under
saved_models/jmlh-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "jmlh", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "jmlh", *sys.argv[1:]]))
