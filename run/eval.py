"""`tfhash eval` as a script: `python run/eval.py --help`."""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["eval", *sys.argv[1:]]))
