"""ECE against hand computations, including confidences exactly on bin edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from soften.evaluation.calibration import ece_from_logits, expected_calibration_error, reliability_bins

# Hand-built predictions (10 bins): 0.2 and 0.6 lie exactly on bin edges and belong
# to the lower, right-closed bins (0.1, 0.2] and (0.5, 0.6]; 1.0 to (0.9, 1.0].
CONF = [0.2, 0.25, 0.95, 1.0, 0.55, 0.6]
CORRECT = [1, 0, 1, 1, 0, 1]
# (0.1,0.2]: acc 1, conf 0.2 -> 0.8 x 1/6 ; (0.2,0.3]: acc 0, conf 0.25 -> 0.25 x 1/6
# (0.5,0.6]: acc 0.5, conf 0.575 -> 0.075 x 2/6 ; (0.9,1]: acc 1, conf 0.975 -> 0.025 x 2/6
HAND_ECE = (0.8 + 0.25 + 2 * 0.075 + 2 * 0.025) / 6  # = 0.2083...


def test_ece_equals_hand_computation_with_edge_cases():
    assert expected_calibration_error(CONF, CORRECT, n_bins=10) == pytest.approx(HAND_ECE, abs=1e-12)


def test_edge_goes_to_lower_bin():
    bins = reliability_bins(CONF, CORRECT, n_bins=10)
    assert [b["count"] for b in bins] == [0, 1, 1, 0, 0, 2, 0, 0, 0, 2]
    assert bins[1]["accuracy"] == 1.0 and bins[1]["confidence"] == pytest.approx(0.2)
    assert bins[5]["lower"] == 0.5 and bins[5]["upper"] == 0.6
    assert bins[0]["accuracy"] is None
    # 15 bins (the default): 1/3 = 5/15 is the upper edge of bin 4, 1.0 in bin 14
    b15 = reliability_bins([1 / 3, 1.0], [1, 1])
    assert b15[4]["count"] == 1 and b15[14]["count"] == 1 and len(b15) == 15


def test_perfectly_calibrated_and_single_bin():
    # 4 predictions at confidence 0.75, 3 of them correct: calibrated, ECE 0
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    # one bin: ECE = |accuracy - mean confidence|
    assert expected_calibration_error([0.9, 0.7, 0.5], [1, 0, 0], n_bins=1) == pytest.approx(abs(1 / 3 - 0.7))


def test_ece_from_logits_uses_softmax_top_probability():
    # logits = log p give softmax = p (up to rounding; no confidence near a bin edge)
    p = np.array([[0.72, 0.18, 0.10], [0.10, 0.64, 0.26], [0.46, 0.44, 0.10], [0.20, 0.15, 0.65]])
    y = torch.tensor([0, 2, 0, 2])  # correct (0.72), wrong (0.64), correct (0.46), correct (0.65)
    res = ece_from_logits(torch.tensor(np.log(p)), y, n_bins=10)
    # (0.7,0.8]: {0.72 ok} gap 0.28 ; (0.6,0.7]: {0.64 wrong, 0.65 ok} |0.5 - 0.645| = 0.145 x 2 ;
    # (0.4,0.5]: {0.46 ok} gap 0.54
    hand = (0.28 + 2 * 0.145 + 0.54) / 4
    assert res["ece"] == pytest.approx(hand, abs=1e-9)
    assert res["accuracy"] == 0.75 and math.isclose(res["mean_confidence"], (0.72 + 0.64 + 0.46 + 0.65) / 4)
    assert sum(b["count"] for b in res["bins"]) == 4
