"""benchmark.stats.display: the rounding rule on hand-written cases."""

from __future__ import annotations

import math

import pytest

from benchmark.stats.display import change, collapse_point, decimals, number, value_se


@pytest.mark.parametrize("kind,metric,values,statistic,want", [
    ("spectrum", "kappa_w", [4.47, 742.2], None, 1),
    ("general", "word_perplexity", [68.0], None, 2),
    ("general", "ppl", [68.0], "word_perplexity", 2),
    ("general", "bits_per_byte", [1.13], None, 2),
    ("general", "acc", [0.9125, None, math.nan], "mean", 3),
    ("editing", "efficacy", [30.0, 100.0], "mean", 1),
    ("general", "margin", [5.03, -1.2], "mean", 1),
    ("general", "empty", [], "mean", 1),
])
def test_decimals(kind, metric, values, statistic, want):
    assert decimals(kind, metric, values, statistic) == want


def test_numbers():
    assert number(None, 1) == number(math.nan, 1) == "—"
    assert number(70.04, 1) == "70.0" and number(2.5, 1, sign=True) == "+2.5"
    assert number(1e-5, 3) == "1e-05" and number(123456.0, 1) == "1.23e+05"
    assert number(0.0, 3) == "0.000"


def test_value_and_error_share_decimals():
    assert value_se(60.21, 3.64, 1) == "60.2 ± 3.6"
    assert value_se(-6.9, 0.0123, 1) == "-6.900 ± 0.012"  # two significant digits of the error
    assert value_se(0.9125, 0.0318, 3) == "0.912 ± 0.032"
    assert value_se(68.0, None, 2) == "68.00"


def test_change_with_interval():
    assert change(2.13, 0.52, 3.61, True, 1) == "+2.1 [0.5, 3.6]*"
    assert change(-0.325, -0.475, -0.15, False, 3) == "-0.325 [-0.475, -0.150]"
    assert change(0.1, 0.0454, 0.15, True, 1) == "+0.100 [0.045, 0.150]*"
    assert change(1.0, math.nan, math.nan, False, 1) == "+1.0"
    assert change(None, 0, 1, False, 1) == "—"


def test_collapse_point():
    assert collapse_point(37.4, True, True, 50) == "≈37"
    assert collapse_point(10.0, True, False, 10) == "≤10"
    assert collapse_point(None, False, False, 50) == ">50"
    assert collapse_point(math.nan, False, False, 25) == ">25"
