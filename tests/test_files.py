import json

import numpy as np
import pytest

from tfhash.files import atomic_path, read_npz, write_json, write_npz


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json({"map_at_all": 0.5}, path)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("{half")
        raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"map_at_all": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_npz_round_trip_and_format_check(tmp_path):
    path = write_npz(tmp_path / "codes", {"format": "x-1", "bits": 3}, a=np.arange(3))
    assert path.endswith("codes")  # the name is kept as given, no ".npz" appended
    meta, arrays = read_npz(path, "x-1", "hint")
    assert meta == {"format": "x-1", "bits": 3} and arrays["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="is not a y-1 file \\(make one with z\\)"):
        read_npz(path, "y-1", "make one with z")
