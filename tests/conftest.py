import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def mnist_path():
    path = SHARED_DATA / "mnist.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent (it lives in ../shared/data, outside users' checkouts)")
    return path
