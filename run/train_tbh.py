"""Train TBH (Shen et al. 2020): `python run/train_tbh.py --help`.

With no arguments: TBH on scikit-learn's digits, 32 bits; prints the test
metrics and writes the export, metrics.json, checkpoints and TensorBoard logs
under saved_models/tbh-digits-32bit/.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["train", "tbh", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["train", "tbh", *sys.argv[1:]]))
