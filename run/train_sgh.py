"""Train SGH, Deep-SGH or R-SGH: `python run/train_sgh.py --variant rsgh --help`.

With no arguments: linear SGH on scikit-learn's digits, 32 bits; the same
flags and outputs as run/train_tbh.py (saved_models/<variant>-<data>-<bits>bit/).
"""

import argparse
import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run
from tfhash.models.sgh import VARIANTS


def _argv(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--variant", choices=VARIANTS, default="sgh")
    args, rest = parser.parse_known_args(argv)
    return ["train", args.variant, *rest]


def main(argv=None):
    return run(_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(cli_main(_argv(sys.argv[1:])))
