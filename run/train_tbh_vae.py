"""Train TBH-VAE (Verwilst et al.) or one of its ablation arms: `python run/train_tbh_vae.py --help`.

With no arguments: TBH with both VAE bottlenecks on scikit-learn's digits,
32 bits; the same flags and outputs as run/train_tbh.py, plus --beta,
--kappa, --kappa-fraction, --binary-posterior and --ablation
both|binary|geco|none (saved_models/<method>-<data>-<bits>bit/).
"""

import argparse
import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run
from tfhash.configs.tbh_vae import ABLATION_METHODS


def _argv(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--ablation", choices=sorted(ABLATION_METHODS), default="both")
    args, rest = parser.parse_known_args(argv)
    return ["train", ABLATION_METHODS[args.ablation], *rest]


def main(argv=None):
    return run(_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(cli_main(_argv(sys.argv[1:])))
