"""Recognition metrics on hand-made readings with exact expected values."""

from __future__ import annotations

import itertools
import math

import pytest

from models import metrics


def test_edit_distance_of_known_strings():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("", "中国") == 2
    assert metrics.edit_distance("中国人", "中国") == 1
    assert metrics.edit_distance("abc", "abc") == 0


def test_cer_is_total_distance_over_total_reference_length():
    readings = ["kitten", "中国", "", "abc"]
    references = ["sitting", "中国人", "xy", "abc"]
    # distances 3 + 1 + 2 + 0 = 6 over lengths 7 + 3 + 2 + 3 = 15
    assert metrics.character_error_rate(readings, references) == pytest.approx(6 / 15)


def test_cer_can_exceed_one_for_long_readings():
    assert metrics.character_error_rate(["abcd"], ["x"]) == pytest.approx(4.0)


def test_cer_of_empty_references_is_an_error():
    with pytest.raises(ValueError, match=r"^character_error_rate: every reference is empty$"):
        metrics.character_error_rate(["a", "b"], ["", ""])


def test_ned_is_mean_of_distance_over_longer_length():
    readings = ["kitten", "中国", "", ""]
    references = ["sitting", "中国人", "xy", ""]
    expected = (3 / 7 + 1 / 3 + 2 / 2 + 0.0) / 4
    assert metrics.normalized_edit_distance(readings, references) == pytest.approx(expected)


def test_sequence_accuracy():
    assert metrics.sequence_accuracy(["ab", "c", "中"], ["ab", "d", "中"]) == pytest.approx(2 / 3)


def test_empty_inputs_give_nan():
    assert math.isnan(metrics.sequence_accuracy([], []))
    assert math.isnan(metrics.character_error_rate([], []))
    assert math.isnan(metrics.normalized_edit_distance([], []))


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 readings but 1 references"):
        metrics.sequence_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="1 readings but 2 references"):
        metrics.character_error_rate(["a"], ["a", "b"])


def test_topk_accuracy():
    candidates = [
        ["啊", "阿", "呵"],
        ["阿", "啊", "呵", "吖", "嗄"],
        ["埃", "挨", "哎", "唉", "哀", "皑"],  # reference at rank 6: outside the top 5
        ["爱"],
    ]
    references = ["啊", "啊", "皑", "碍"]
    assert metrics.topk_accuracy(candidates, references, 1) == pytest.approx(1 / 4)
    assert metrics.topk_accuracy(candidates, references, 5) == pytest.approx(2 / 4)
    assert metrics.topk_accuracy(candidates, references, 6) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="k must be"):
        metrics.topk_accuracy(candidates, references, 0)


def test_value_accuracy_counts_unparsable_readings_as_wrong():
    readings = [
        "(7+5)+4",  # right expression, right value
        "4+(5+7)",  # wrong expression, same value: counts
        "(7+5)+5",  # wrong value
        "(7+5+4",  # unparsable
        "",  # empty
    ]
    values = [16, 16, 16, 16, 16]
    assert metrics.value_accuracy(readings, values) == pytest.approx(2 / 5)


def test_text_metrics_adds_topk_and_value_acc_on_request():
    readings = ["1+2", "3*3"]
    references = ["1+2", "3*4"]
    out = metrics.text_metrics(readings, references, values=[3, 12])
    assert out == {
        "n": 2,
        "seq_acc": 0.5,
        "cer": pytest.approx(1 / 6),
        "ned": pytest.approx((0 + 1 / 3) / 2),
        "value_acc": 0.5,
    }
    out = metrics.text_metrics(["中"], ["中"], candidates=[["中", "申"]])
    assert out["top1"] == 1.0 and out["top5"] == 1.0
    # top5 counts a reference at rank 5, and none at rank 6
    fifth = [["甲", "乙", "丙", "丁", "中", "戊"], ["甲", "乙", "丙", "丁", "戊", "中"]]
    out = metrics.text_metrics(["甲", "甲"], ["中", "中"], candidates=fifth)
    assert out["top1"] == 0.0 and out["top5"] == 0.5


def test_grouped_metrics_per_font():
    fonts = ["B", "A", "B", "A", "A"]
    readings = ["x", "y", "z", "y", "n"]
    references = ["x", "y", "q", "y", "m"]

    def compute(idx):
        return {
            "n": len(idx),
            "seq_acc": metrics.sequence_accuracy(
                [readings[i] for i in idx], [references[i] for i in idx]
            ),
        }

    out = metrics.grouped_metrics(fonts, compute)
    assert list(out) == ["A", "B"]
    assert out["A"] == {"n": 3, "seq_acc": pytest.approx(2 / 3)}
    assert out["B"] == {"n": 2, "seq_acc": 0.5}


def test_confused_pairs_most_frequent_first():
    readings = ["未", "未", "末", "土", "士", "中"]
    references = ["末", "末", "未", "士", "土", "中"]
    assert metrics.confused_pairs(readings, references, top=3) == [
        ("末", "未", 2),
        ("土", "士", 1),
        ("士", "土", 1),
    ]


def test_a_cell_without_a_figure_or_images_has_no_interval():
    assert metrics.share_interval(0.5, 100) == metrics.wilson_interval(0.5, 100)
    assert metrics.share_interval("0.5", "100") == metrics.wilson_interval(0.5, 100)  # CSV text
    for share, n in ((None, 100), (0.5, None), (math.nan, 100), (0.5, 0), ("", 100)):
        assert metrics.share_interval(share, n) is None, (share, n)


def test_wilson_interval_bounds_a_share_of_n_samples():
    # The textbook case (Wilson 1927; Newcombe 1998): 50 of 100 gives 0.4038 to 0.5962.
    assert metrics.wilson_interval(0.5, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    # 993 of 2000: a target of 0.99 lies inside, one of 0.985 below.
    low, high = metrics.wilson_interval(0.993, 2000)
    assert 0.985 < low < 0.99 < high
    # All right or all wrong still leaves room the other way, within [0, 1].
    assert metrics.wilson_interval(1.0, 10)[0] == pytest.approx(0.72247, abs=1e-5)
    assert metrics.wilson_interval(0.0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    # More samples, a narrower interval around the same share.
    wide, narrow = metrics.wilson_interval(0.9, 100), metrics.wilson_interval(0.9, 10000)
    assert wide[0] < narrow[0] < 0.9 < narrow[1] < wide[1]
    # Never past 0 or 1, where rounding takes the formula (0 of 2: a lower bound of -5.6e-17)
    for share, n in itertools.product((0.0, 1.0), range(1, 50)):
        low, high = metrics.wilson_interval(share, n)
        assert 0.0 <= low <= high <= 1.0, (share, n)
    for share, n in ((0.5, 0), (1.2, 10), (-0.1, 10)):
        with pytest.raises(ValueError, match="wilson_interval"):
            metrics.wilson_interval(share, n)
