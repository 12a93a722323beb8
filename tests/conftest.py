import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def mnist_path():
    path = SHARED_DATA / "mnist.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent (it lives in ../shared/data, outside users' checkouts)")
    return path


@pytest.fixture
def run_script():
    """Imports a script of run/ by name: `run_script("train_tbh").main([...])`."""

    def load(name):
        path = pathlib.Path(__file__).resolve().parents[1] / "run" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
