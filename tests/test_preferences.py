"""One pair dataset from every real judgment, folded by prompt (blender_lib.preferences)."""

from __future__ import annotations

import json

import numpy as np
from pathlib import Path

import pytest
from test_real_data import REF, write_alpaca, write_llmbar

from blender_lib import preferences as P
from blender_lib.data import DataError


def write_vicuna_bench(root: Path) -> Path:
    folder = root / "vicuna_bench" / "original_eval_table"
    (folder / "answer").mkdir(parents=True)
    (folder / "review" / "gpt-3.5-turbo_review_x").mkdir(parents=True)
    (folder / "review" / "x").mkdir(parents=True)

    def jsonl(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    # question 1 is AlpacaEval's "question 0?" with other spacing and case: the same prompt
    jsonl(folder / "question.jsonl", [{"question_id": 1, "text": "Question   0?", "category": "generic"},
                                      {"question_id": 2, "text": "Tell a joke.", "category": "generic"}])
    jsonl(folder / "answer" / "answer_a.jsonl", [{"answer_id": "a1", "model_id": "a", "question_id": 1, "text": "A one"},
                                                 {"answer_id": "a2", "model_id": "a", "question_id": 2, "text": "A two"}])
    jsonl(folder / "answer" / "answer_b.jsonl", [{"answer_id": "b1", "model_id": "b", "question_id": 1, "text": "B one"},
                                                 {"answer_id": "b2", "model_id": "b", "question_id": 2, "text": "B two"}])
    review = {"review_id": "r", "question_id": 1, "answer1_id": "a1", "answer2_id": "b1", "text": "8 9", "score": [8, 9]}
    jsonl(folder / "review" / "x" / "review_a_b.jsonl",
          [review, {**review, "review_id": "s", "question_id": 2, "answer1_id": "a2", "answer2_id": "b2", "score": [7, 7]},
           {**review, "review_id": "t", "score": [-1, -1]}])  # an unparsed review upstream
    jsonl(folder / "review" / "gpt-3.5-turbo_review_x" / "gpt-3.5-turbo_review_a_b.jsonl", [review])  # not GPT-4
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    for write in (write_alpaca, write_llmbar, write_vicuna_bench):
        write(folder)
    return folder


def test_alpaca_eval_gives_judged_and_implied_pairs(root):
    prefs = P.alpaca_eval_preferences(root)
    judged = [p for p in prefs if p.source == "alpaca_eval"]
    # prompt 0: all three judged; 1: all three; 2: weak's answer is empty, mid drew; 3: strong drew, weak failed
    assert sorted(p.pair_id for p in judged) == sorted(
        ["alpaca_eval/0/strong", "alpaca_eval/0/mid", "alpaca_eval/0/weak", "alpaca_eval/1/strong",
         "alpaca_eval/1/mid", "alpaca_eval/1/weak", "alpaca_eval/2/strong", "alpaca_eval/3/mid"])
    assert all(p.second_model == REF and p.second == f"reference answer {p.pair_id.split('/')[1]}" for p in judged)
    assert {p.pair_id: p.label for p in judged}["alpaca_eval/1/mid"] == 0.0
    implied = {p.pair_id: p.label for p in prefs if p.source == "alpaca_eval:implied"}
    assert implied == {"alpaca_eval/0/strong/mid": P.TIE, "alpaca_eval/0/strong/weak": 1.0,
                       "alpaca_eval/0/mid/weak": 1.0, "alpaca_eval/1/strong/mid": 1.0,
                       "alpaca_eval/1/strong/weak": 1.0, "alpaca_eval/1/mid/weak": P.TIE}
    assert {p.weight for p in prefs if p.source == "alpaca_eval:implied"} == {0.5}
    assert len(P.decisive(prefs)) == len(prefs) - 2


def test_vicuna_bench_and_llmbar(root):
    vicuna = P.vicuna_bench_preferences(root)
    assert [(p.pair_id, p.label, p.first_model) for p in vicuna] == [("vicuna_bench/r", 0.0, "a"), ("vicuna_bench/s", P.TIE, "a")]
    llmbar = P.llmbar_preferences(root)
    assert [(p.source, p.label) for p in llmbar] == [("llmbar:LLMBar__Natural", 1.0), ("llmbar:LLMBar__Natural", 0.0),
                                                       ("llmbar:Processed__FairEval", 1.0)]
    table = P.summary(P.all_preferences(root))
    assert table.loc["vicuna_bench", "ties"] == 1 and table.loc["alpaca_eval", "pairs"] == 8
    assert table.loc["llmbar:LLMBar__Natural", "first wins %"] == 50.0


def test_folds_follow_the_prompt_across_sources(root):
    prefs = P.all_preferences(root)
    shared = P.shared_prompts(prefs)
    assert list(shared.values()) == [{"alpaca_eval", "vicuna_bench"}]  # "question 0?" == "Question   0?"
    for fold in range(3):
        train, test = P.split_by_prompt(prefs, fold, 3, seed=1)
        assert {p.prompt_key for p in train}.isdisjoint({p.prompt_key for p in test})
        assert len(train) + len(test) == len(prefs)
    # a prompt's fold does not depend on what else is loaded
    alone = {p.prompt_key: P.prompt_fold(p.prompt_key, 3, 1) for p in P.llmbar_preferences(root)}
    assert all(P.prompt_fold(k, 3, 1) == f for k, f in alone.items())
    assert P.fold_table(prefs, 3, 1).to_numpy().sum() == len(prefs)
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        P.prompt_fold("k", 1)
    with pytest.raises(ValueError, match="test_fold must be in 0..2"):
        P.split_by_prompt(prefs, 3, 3)


@pytest.mark.parametrize("change, message", [({"label": 2.0}, "label must be 1"), ({"weight": 0.0}, "weight must be positive"),
                                              ({"instruction": "  "}, "empty instruction")])
def test_a_bad_preference_is_refused(change, message):
    good = dict(source="s", pair_id="p", prompt_key="k", instruction="q", first="a", second="b",
                first_model="m", second_model="n", label=1.0)
    P.Preference(**good)
    P.Preference(**{**good, "first": ""})  # an empty answer is data: it usually loses
    with pytest.raises(DataError, match=message):
        P.Preference(**{**good, **change})
    with pytest.raises(DataError, match="empty instruction"):
        P.prompt_key(" \n")


def test_the_shared_real_data(shared_data):
    prefs = P.all_preferences(shared_data)
    table = P.summary(prefs)
    assert {"alpaca_eval", "alpaca_eval:implied", "vicuna_bench", "llmbar:LLMBar__Natural"} <= set(table.index)
    assert table.loc["alpaca_eval:implied", "decisive"] > 50_000  # every two models with different verdicts
    assert table.loc["alpaca_eval", "prompts"] > 790
    train, test = P.split_by_prompt(prefs, 0, 2)
    assert {p.prompt_key for p in train}.isdisjoint({p.prompt_key for p in test})
    assert 0.4 < len(test) / len(prefs) < 0.6


def test_length_agreement_reads_decisive_pairs_of_different_lengths():
    def pref(first: str, second: str, label: float) -> P.Preference:
        return P.Preference("s", first, P.prompt_key("q"), "q", first, second, "a", "b", label)

    prefs = [pref("one two three", "one", 1.0), pref("one two", "one", 0.0), pref("one", "two", 1.0),
             pref("one two", "one", P.TIE)]
    assert P.length_agreement(prefs) == 0.5  # equal lengths and the tie are left out
    assert np.isnan(P.length_agreement([]))
