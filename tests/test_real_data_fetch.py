"""Downloading the public data into the loaders' layout (blender_lib.real_data_fetch).

No network here: the sources are local folders laid out like the upstream repositories, read
through the same ``datasets`` download manager that fetches the URLs online (it returns a local
path as it is). The loaders of ``real_data`` then read what was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blender_lib import real_data as R
from blender_lib import real_data_fetch as F

REF = F.ALPACA_REFERENCE
PROMPTS = [("What is 2+2?", "vicuna"), ("Name a colour.", "koala"), ("Say hi.", "selfinstruct")]


def _json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def upstream_alpaca_eval(root: Path, prefs: dict[str, list[int]]) -> Path:
    """tatsu-lab/alpaca_eval's layout: results/<model>/model_outputs.json and
    results/<model>/alpaca_eval_gpt4/annotations.json, plus the AlpacaEval 1 leaderboard."""
    def outputs(model: str) -> list[dict]:
        return [{"instruction": q, "output": f"{model} on {q}", "generator": model, "dataset": d} for q, d in PROMPTS]

    _json(root / "results" / REF / "model_outputs.json", outputs(REF))
    for model, ps in prefs.items():
        # the same outputs in another order, and one for an instruction AlpacaEval does not have
        _json(root / "results" / model / "model_outputs.json",
              outputs(model)[::-1] + [{"instruction": "not an AlpacaEval prompt", "output": "x", "generator": model}])
        _json(root / "results" / model / "alpaca_eval_gpt4" / "annotations.json",
              [{"instruction": q, "output_1": f"{REF} on {q}", "generator_1": REF, "dataset": d,
                "output_2": f"{model} on {q}", "generator_2": model, "annotator": "alpaca_eval_gpt4",
                "preference": p, "price_per_example": 0.02} for (q, d), p in zip(PROMPTS, ps)])
    board = root / "src" / "alpaca_eval" / "leaderboards" / "data_AlpacaEval" / "alpaca_eval_gpt4_leaderboard.csv"
    board.parent.mkdir(parents=True)
    board.write_text(",win_rate,n_total\nstrong,66.7,3\nweak,0.0,3\n", encoding="utf-8")
    return root


def test_alpaca_eval_per_model_files_become_the_loaders_two_files(tmp_path):
    source = upstream_alpaca_eval(tmp_path / "upstream", {"strong": [2, 2, 1], "weak": [1, 1, 1]})
    dest = tmp_path / "data"
    counts = F.fetch_alpaca_eval(dest, ["strong", "weak"], source=str(source))
    assert counts == {"prompts": 3, "unmatched_outputs": 2, "judgments": 6, "unmatched_judgments": 0}
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(dest, ["strong", "weak"], skipped=skipped)
    assert [ex["instruction"] for ex in examples] == [q for q, _ in PROMPTS] and not skipped
    assert [ex["tags"] for ex in examples] == [[d] for _, d in PROMPTS]
    assert examples[0]["output"] == f"{REF} on What is 2+2?"  # the reference answer
    assert [c["text"] for c in examples[1]["candidates"]] == ["strong on Name a colour.", "weak on Name a colour."]
    assert [[c["scores"][R.PREF_SCORE] for c in ex["candidates"]] for ex in examples] == [[1, 0], [1, 0], [0, 0]]
    board = R.alpaca_eval_models(dest)
    assert board.loc["strong", "win_rate"] == pytest.approx(200 / 3)
    assert board.loc["strong", "published_win_rate"] == pytest.approx(66.7)


def test_flask_llmbar_and_mt_bench_files_land_where_the_loaders_read(tmp_path):
    up = tmp_path / "upstream"
    flask = up / "flask"
    _jsonl(flask / "evaluation_set" / "flask_evaluation.jsonl",
           [{"idx": 1, "instruction": "Rewrite this.", "answer": "Done.", "task": "Self-instruct",
             "skill": ["Readability"], "domain": ["Humanities"], "difficulty": "simple lifestyle knowledge"}])
    _jsonl(flask / "evaluation_set" / "flask_hard_evaluation.jsonl", [])
    _jsonl(flask / "model_output" / "outputs" / "gpt4.jsonl", [{"question_id": 1, "text": "gpt4 on 1"}])
    llmbar = up / "llmbar" / "Dataset"
    pair = [{"input": "Say hi.", "output_1": "Hi!", "output_2": "Bye.", "label": 1}]
    _json(llmbar / "LLMBar" / "Natural" / "dataset.json", pair)
    _json(llmbar / "Processed" / "LLMEval^2" / "dataset.json", pair)
    mt = up / "mt_bench"
    _jsonl(mt / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": ["Write.", "Again."]}])
    _jsonl(mt / "reference_answer" / "gpt-4.jsonl", [])
    _jsonl(up / "answers" / "gpt-4.jsonl", [{"question_id": 81, "model_id": "gpt-4", "choices": [{"turns": ["A", "B"]}]}])
    dest = tmp_path / "data"

    F.fetch_flask(dest, ["gpt4"], source=str(flask))
    F.fetch_llmbar(dest, ["LLMBar__Natural", "Processed__LLMEval2"], source=str(up / "llmbar"))
    F.fetch_mt_bench(dest, ["gpt-4"], source=str(mt), answers_source=str(up / "answers"))

    assert [ex["tags"][0] for ex in R.load_flask(dest, ["gpt4"])] == ["skill:Readability"]
    assert R.llmbar_subsets(dest) == ["LLMBar__Natural", "Processed__LLMEval2"]
    assert len(R.load_llmbar(dest)) == 2
    [question] = R.load_mt_bench(dest, ["gpt-4"], reference=None)
    assert question["instruction"] == "Write." and question["candidates"][0]["text"] == "A"


def test_fetching_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="could not download AlpacaEval model outputs from"):
        F.fetch_alpaca_eval(tmp_path / "data", ["absent-model"], source=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="is the reference"):
        F.fetch_alpaca_eval(tmp_path / "data", [REF, "x"])
    with pytest.raises(ValueError, match="unknown LLMBar subsets"):
        F.fetch_llmbar(tmp_path / "data", ["LLMBar__Typo"])
    with pytest.raises(ValueError, match="unknown datasets"):
        F.fetch_public_data(tmp_path / "data", ["alpaca"])
    source = upstream_alpaca_eval(tmp_path / "bad", {"m": [2, 2, 2]})
    _json(source / "results" / "m" / "alpaca_eval_gpt4" / "annotations.json", {"not": "a list"})
    with pytest.raises(ValueError, match="is not a JSON list of objects"):
        F.fetch_alpaca_eval(tmp_path / "data", ["m"], source=str(source))


def test_urls_quote_what_upstream_paths_hold():
    assert F._url("https://example.org/repo/main", "Dataset/Processed/LLMEval^2/dataset.json") == \
        "https://example.org/repo/main/Dataset/Processed/LLMEval%5E2/dataset.json"
    assert F._url("/some/folder", "a/b.json") == "/some/folder/a/b.json"
