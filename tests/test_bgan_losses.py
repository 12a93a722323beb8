"""BGAN's loss terms (the model itself is the rest of issue 16)."""

import numpy as np
import pytest

from tfhash.losses import neighbour_structure_loss


def test_neighbour_structure_loss_by_hand_on_3_items_with_2_bits():
    b = np.array([[1.0, 1.0], [1.0, -1.0], [0.5, 1.0]], np.float32)
    s = np.array([[1, -1, 1], [-1, 1, -1], [1, -1, 1]], np.float32)
    # <b_i, b_j> / 2: (0,1) 0, (0,2) 0.75, (1,2) -0.25; each unordered pair counts twice (ordered sum)
    off_diagonal = (0 - (-1)) ** 2 + (0.75 - 1) ** 2 + (-0.25 - (-1)) ** 2  # 1 + 0.0625 + 0.5625
    assert float(neighbour_structure_loss(b, s)) == pytest.approx(0.5 * 2 * off_diagonal)
    # self pairs: <b_i, b_i> / 2 = 1, 1, 0.625 against s_ii = 1
    diagonal = 0 + 0 + (0.625 - 1) ** 2
    assert float(neighbour_structure_loss(b, s, self_pairs=True)) == pytest.approx(
        0.5 * (2 * off_diagonal + diagonal)
    )
    # the authors' code: no 1 / L; (0,1) 0, (0,2) 1.5, (1,2) -0.5
    unscaled = (0 + 1) ** 2 + (1.5 - 1) ** 2 + (-0.5 + 1) ** 2
    assert float(neighbour_structure_loss(b, s, scaled=False)) == pytest.approx(0.5 * 2 * unscaled)
