"""`tfhash encode` as a script: `python run/encode.py --help`."""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["encode", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["encode", *sys.argv[1:]]))
