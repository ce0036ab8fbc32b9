"""Bring your own data (blender_lib.own_data): FastChat folders and long tables written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender_lib import own_data as OD
from blender_lib.data import EMPTY, DataError, validate_example


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_fastchat(root: Path, *, answers: dict[str, dict[int, list[str]]] | None = None,
                   singles: list[tuple[int, str, int, float]] = (), pairs: list[tuple[int, str, str, int, str, str]] = ()) -> Path:
    """question.jsonl (3 two-turn questions), model_answer/, model_judgment/ and reference_answer/."""
    _jsonl(root / "question.jsonl", [{"question_id": q, "category": "writing" if q < 3 else "math",
                                      "turns": [f"Question {q}?", f"Follow-up {q}?"]} for q in (1, 2, 3)])
    answers = answers or {
        "strong": {q: [f"strong answers {q}", f"strong follows {q}"] for q in (1, 2, 3)},
        "weak": {1: ["", ""], 2: ["weak answers 2", "weak follows 2"], 3: ["weak answers 3", "weak follows 3"]},
        "unscored": {q: [f"unscored answers {q}", f"u {q}"] for q in (1, 2)},  # no answer to question 3
    }
    for model, by_question in answers.items():
        _jsonl(root / "model_answer" / f"{model}.jsonl",
               [{"question_id": q, "model_id": model, "choices": [{"index": 0, "turns": turns}]} for q, turns in by_question.items()])
    _jsonl(root / "model_judgment" / "gpt-4_single.jsonl",
           [{"question_id": q, "model": m, "turn": t, "score": s, "judge": ["gpt-4", "single-v1"]} for q, m, t, s in singles])
    _jsonl(root / "model_judgment" / "gpt-4_pair.jsonl",
           [{"question_id": q, "model_1": a, "model_2": b, "turn": t, "g1_winner": g1, "g2_winner": g2} for q, a, b, t, g1, g2 in pairs])
    _jsonl(root / "reference_answer" / "gpt-4.jsonl", [{"question_id": 3, "choices": [{"turns": ["Four.", "Five."]}]}])
    return root


SINGLES = [(1, "strong", 1, 9), (1, "weak", 1, 1), (2, "strong", 1, 8), (2, "weak", 1, 6), (3, "strong", 1, 7),
           (3, "weak", 1, -1), (1, "strong", 2, 10)]
PAIRS = [(1, "strong", "unscored", 1, "model_1", "model_1"), (2, "strong", "unscored", 1, "model_1", "model_2"),
         (2, "weak", "unscored", 1, "error", "model_1")]


def test_a_fastchat_folder_keeps_empty_answers_ragged_candidates_and_unscored_models(tmp_path):
    folder = write_fastchat(tmp_path / "data" / "my_bench", singles=SINGLES, pairs=PAIRS)
    notes: OD.Notes = []
    examples = OD.load_fastchat(tmp_path / "data", score_key="gpt4_score", reference="gpt-4", notes=notes)  # finds my_bench
    assert [ex["id"] for ex in examples] == ["my_bench/1", "my_bench/2", "my_bench/3"]
    first = {c["model"]: c for c in examples[0]["candidates"]}
    assert first["weak"]["text"] == "" and first["weak"][EMPTY] and first["weak"]["scores"] == {"gpt4_score": 1.0}
    assert first["unscored"]["scores"] == {} and first["strong"]["scores"] == {"gpt4_score": 9.0}
    assert examples[0]["cmp_results"] == {"strong,unscored": "A is better"}
    assert examples[1]["cmp_results"] == {"strong,unscored": "Same good"}  # the two orders disagree: a tie; the error: none
    assert [c["model"] for c in examples[2]["candidates"]] == ["strong", "weak"]  # unscored never answered question 3
    assert examples[2]["candidates"][1]["scores"] == {}  # the judge gave no rating (-1)
    assert examples[2]["output"] == "Four." and not examples[0].get("has_reference", True)
    reasons = [r for _, r in notes]
    assert "unscored: no answer to turn 1 (absent from this example)" in reasons and "weak: empty answer (kept, marked empty)" in reasons
    assert any("the judge gave no rating" in r for r in reasons) and any("the judge erred" in r for r in reasons)
    assert OD.notes_table(notes).loc["no gpt4_score", "count"] == 3  # unscored on questions 1 and 2, weak on 3 (its -1)
    second = OD.load_fastchat(folder, turn=2, score_key="gpt4_score")
    assert second[0]["instruction"] == "Follow-up 1?" and second[0]["input"] == "Question 1?"
    assert second[0]["id"] == "my_bench/1/turn2" and {c["model"]: c["scores"] for c in second[0]["candidates"]}["strong"] == {"gpt4_score": 10.0}


def test_fastchat_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no question.jsonl"):
        OD.load_fastchat(tmp_path)
    folder = write_fastchat(tmp_path / "b", singles=[(1, "strong", 1, 11)])
    with pytest.raises(DataError, match=r"strong: score 11.0 is outside the likert-10 scale"):
        OD.load_fastchat(folder)
    OD.load_fastchat(folder, scale="float")  # any float is fine when the scale says so
    with pytest.raises(DataError, match=r"no answer file for \['nobody'\]"):
        OD.load_fastchat(folder, models=["nobody"])
    with pytest.raises(ValueError, match="unknown score scale 'stars'"):
        OD.load_fastchat(folder, scale="stars")
    _jsonl(folder / "model_judgment" / "odd.jsonl", [{"question_id": 1, "verdict": "good"}])
    with pytest.raises(DataError, match="odd.jsonl line 1: neither a single-answer judgment"):
        OD.load_fastchat(folder, scale="float")


def test_the_empty_mark_is_checked_by_the_schema(make_example):
    ex = make_example()
    ex["candidates"][0]["text"] = ""
    with pytest.raises(DataError, match="text is empty"):
        validate_example(ex)
    ex["candidates"][0][EMPTY] = True
    validate_example(ex)
    ex["candidates"][0]["text"] = "words"
    with pytest.raises(DataError, match="is marked empty but has a non-empty text"):
        validate_example(ex)


def test_a_long_table_groups_answers_by_prompt_with_missing_scores(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("prompt,model,answer,score\nWrite a poem.,a,Roses.,7\nWrite a poem.,b,,2\nWrite a poem.,c,Violets.,\n"
                    "Add 1+1.,a,2,10\nAdd 1+1.,b,3,1\nAlone?,a,yes,5\n", encoding="utf-8")
    notes: OD.Notes = []
    examples = OD.load_long_table(path, scores={"judge": "score"}, scale="likert-10", notes=notes)
    assert [ex["instruction"] for ex in examples] == ["Write a poem.", "Add 1+1."]
    poem = {c["model"]: c for c in examples[0]["candidates"]}
    assert poem["b"][EMPTY] and poem["b"]["scores"] == {"judge": 2.0} and poem["c"]["scores"] == {}
    assert ("answers/" + examples[0]["id"].split("/")[1], "c: no judge (kept, unscored)") in notes
    assert any("1 answer(s): skipped" in r for _, r in notes)  # "Alone?" has one answer
    matrix = OD.score_matrix(examples, "judge")
    assert OD.models_in(examples) == ["a", "b", "c"]
    assert np.array_equal(matrix, np.array([[7.0, 2.0, np.nan], [10.0, 1.0, np.nan]]), equal_nan=True)
    path.write_text("prompt,model,answer,score\nQ,a,x,1\nQ,a,y,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\['a'\] answer answers/.* more than once"):
        OD.load_long_table(path, scores={"judge": "score"})
    with pytest.raises(DataError, match=r"no column \['text'\]"):
        OD.load_long_table(path, answer="text")


def test_preferences_come_from_scores_and_verdicts_and_include_empty_answers(tmp_path):
    examples = OD.load_fastchat(write_fastchat(tmp_path, singles=SINGLES, pairs=PAIRS), score_key="s")
    prefs = OD.preferences_from_examples(examples, "s")
    by_id = {p.pair_id: p for p in prefs}
    empty = by_id[f"{examples[0]['source']}/1:strong|weak"]
    assert empty.label == 1.0 and empty.second == "" and empty.second_model == "weak"
    assert by_id[f"{examples[0]['source']}/2:strong,unscored:verdict"].label == 0.5
    assert len(prefs) == 2 + 2  # questions 1 and 2: one scored pair and one verdict each; question 3: weak is unscored


def test_win_rate_tables_show_each_scale_in_its_unit_and_count_unscored_picks(tmp_path):
    from blender_lib import analysis

    examples = OD.load_fastchat(write_fastchat(tmp_path, singles=SINGLES, pairs=PAIRS), score_key="s")
    # candidates in answer-file order: strong, unscored, weak (unscored is absent from question 3)
    weak = [2, 2, 1]
    table = analysis.win_rate_table(examples, {"first answer": [0, 0, 0], "second": weak}, key="s", scale="likert-10",
                                    against="first answer", n_boot=50)
    assert table.loc["first answer", "mean s (1-10)"] == pytest.approx(8.0)  # never x100
    assert table.loc["second", "mean s (1-10)"] == pytest.approx(3.5)  # weak's 1 and 6; its unrated 3 counts nowhere
    assert table.loc["second", "picks without a score"] == 1 and "gap to first answer (score)" in table.columns
    assert analysis.win_rate_vs_reference(examples, [0, 0, 0], key="s", scale="likert-10") == pytest.approx(8.0)
    assert analysis.candidate_win_rates(examples, key="s", scale="likert-10").to_dict() == {"strong": 8.0, "weak": 3.5}
    shares = [{**ex, "candidates": [{**c, "scores": {"p": 1.0}} for c in ex["candidates"]]} for ex in examples]
    assert analysis.win_rate_vs_reference(shares, [0, 0, 0], key="p") == 100.0  # a share shows as a percentage
    with pytest.raises(DataError, match="none of the 3 selected candidates has a score 'nothing'"):
        analysis.win_rate_vs_reference(examples, [0, 0, 0], key="nothing")


def test_written_fastchat_folders_load_back_the_same_examples(tmp_path):
    examples = OD.load_fastchat(write_fastchat(tmp_path / "in", singles=SINGLES), score_key="s", reference="gpt-4")
    extra = {"late": {examples[0]["id"]: "a late answer"}}
    folder = OD.write_fastchat(examples, tmp_path / "out", score_key="s", judge="gpt-4", extra_answers=extra)
    again = OD.load_fastchat(folder, score_key="s", reference="reference", source=examples[0]["source"])
    strip = lambda exs: [[(c["model"], c["text"], c["scores"]) for c in ex["candidates"]] for ex in exs]  # noqa: E731
    first = dict((m, (t, sc)) for m, t, sc in strip(again)[0])
    assert first["late"] == ("a late answer", {}) and [ex["output"] for ex in again] == [ex["output"] for ex in examples]
    assert [[c for c in ex if c[0] != "late"] for ex in strip(again)] == [sorted(ex) for ex in strip(examples)]


def test_a_fastchat_folder_with_empty_answers_and_an_unscored_model_trains_and_routes(tmp_path, monkeypatch):
    """The issue's acceptance case, end to end through the library: load, rank with the PairRanker head,
    route with the router head on the ragged rewards, and score both (a MOCK encoder embeds the texts)."""
    from test_reward_model import mock_embedder

    from blender_lib import analysis
    from blender_lib import frozen_heads as FH
    from blender_lib import reward_model as RM

    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    questions = range(1, 121)
    answers = {"strong": {q: [" ".join(["detailed"] * 12) + f" {q}"] for q in questions},
               "weak": {q: ["" if q % 3 == 0 else f"short {q}"] for q in questions},  # every third answer is empty
               "unscored": {q: [f"unjudged answer {q}"] for q in questions if q % 2}}  # answers half, never judged
    singles = [(q, "strong", 1, 8.0) for q in questions] + [(q, "weak", 1, 1.0 if q % 3 == 0 else 4.0) for q in questions]
    folder = write_fastchat(tmp_path / "bench", answers=answers, singles=singles)
    _jsonl(folder / "question.jsonl", [{"question_id": q, "category": "general", "turns": [f"Question {q}?"]} for q in questions])
    examples = OD.load_fastchat(folder, score_key="s")
    assert len(examples) == 120 and sum(c.get(EMPTY, False) for ex in examples for c in ex["candidates"]) == 40
    prefs = OD.preferences_from_examples(examples, "s")
    cache = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    RM.embed_missing(cache, RM.texts_to_embed(examples, prefs), mock_embedder, progress=False)
    settings = FH.HeadSettings(hidden=8, epochs=40, lr=1e-2, batch_size=16, dropout=0.0)
    ranked = FH.cross_validate_pair_head(examples, prefs, cache, features="text", settings=settings)
    models = OD.models_in(examples)
    routed = FH.cross_validate_router_head(examples, OD.score_matrix(examples, "s", models), cache, models=models,
                                           settings=FH.HeadSettings(hidden=0, epochs=60, lr=5e-2, batch_size=16, dropout=0.0))
    picked = {name: [ex["candidates"][k]["model"] for ex, k in zip(examples, chosen)]
              for name, chosen in (("ranker", ranked.bubble_selections), ("router", routed.choices))}
    assert not any(ex["candidates"][k].get(EMPTY, False) for ex, k in zip(examples, ranked.bubble_selections))  # empties lose
    assert picked["ranker"].count("strong") >= 90 and set(picked["router"]) == {"strong"}  # the unscored model: label 0
    table = analysis.win_rate_table(examples, {"ranker": ranked.bubble_selections, "router": routed.choices}, key="s",
                                    scale="likert-10", n_boot=50)
    assert table.loc["router", "mean s (1-10)"] == 8.0
