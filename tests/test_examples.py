"""blender_lib.examples: the one score reader and the training inputs every trained selector shares."""

from __future__ import annotations

import numpy as np
import pytest

from blender_lib import examples as E
from conftest import overlap_example

QUESTION = "What is the capital of France?"


def test_score_table_reads_metrics_and_the_judge_and_names_what_is_missing():
    ex = overlap_example("e", QUESTION, "paris", ["Paris", "Lyon", "Paris."],
                         cmp_results={"m0,m1": "A is better", "m0,m2": "Same good", "m1,m2": "B is better"})
    table = E.score_table(ex, ("bleu", "rougeL", E.GPT_RANK))
    assert table.shape == (3, 3)
    assert np.allclose(table[:, 0], [100 * c["scores"]["bleu"] / 100 for c in ex["candidates"]])
    assert table[:, 2].tolist() == [-1.0, -3.0, -1.0]  # m0 and m2 tie for rank 1 (negated: higher = better)
    assert np.allclose(E.metric_values(ex, "rougeL"), table[:, 1])
    del ex["candidates"][1]["scores"]["rougeL"]
    with pytest.raises(ValueError, match=r"'e', candidate 1 \(m1\) has no score for \['rougeL'\]"):
        E.score_table(ex, ("bleu", "rougeL"))
    with pytest.raises(ValueError, match=r"unknown metric 'rogueL'.*\['bleu', 'rougeL'\]"):
        E.score_table(ex, ("rogueL",))
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        E.score_table(ex, "bleu")


def test_quality_is_scale_free_and_one_candidate_gets_one():
    table = np.array([[10.0, 0.1], [50.0, 0.5], [30.0, 0.9]])
    assert np.allclose(E.quality_from_table(table), [0.0, 0.75, 0.75])
    assert E.quality_from_table(table[:1]).tolist() == [1.0]


def test_training_inputs_merge_duplicates_drop_empties_and_count_skips():
    good = overlap_example("good", QUESTION, "paris", ["Paris", "Paris", "Lyon", " "])
    solo = overlap_example("solo", QUESTION, "paris", ["same", "same"])
    mute = overlap_example("mute", " ", "paris", ["Paris", "Lyon"])
    with pytest.warns(UserWarning) as caught:
        inputs, skipped = E.training_inputs([good, solo, mute], ("bleu",), what="test")
    messages = [str(w.message) for w in caught]
    assert skipped == 2 and len(inputs) == 1
    assert any("test: skipped 2 training input(s): 'solo' has 1 distinct non-empty candidate(s); 'mute' has an "
               "empty instruction" in m for m in messages)
    assert any("test: dropped 1 empty candidate text(s)" in m for m in messages)
    only = inputs[0]
    assert only.texts == ["Paris", "Lyon"] and only.scores.shape == (2, 1) and only.reference == "paris"
    with pytest.raises(ValueError, match="nothing to learn from"):
        E.training_inputs([solo], ("bleu",), what="test")


def test_data_key_follows_what_methods_read():
    a = overlap_example("a", QUESTION, "paris", ["Paris", "Lyon"])
    b = overlap_example("a", QUESTION, "paris", ["Paris", "Lyon"])
    assert E.data_key([a]) == E.data_key([b])
    b["candidates"][1]["scores"]["bleu"] += 1
    assert E.data_key([a]) != E.data_key([b])
