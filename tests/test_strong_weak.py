"""RouteLLM-style strong/weak data and the routers that score it (blender_lib.strong_weak)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_lib import strong_weak as SW
from blender_lib.data import DataError
from blender_lib.preferences import Preference, prompt_key


def write_csv(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)] + [",".join(f'"{v}"' for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_gsm8k_and_mmlu_load_correctness_and_answers(tmp_path):
    columns = ["prompt", SW.WEAK, SW.STRONG, f"{SW.WEAK}_response", f"{SW.STRONG}_response"]
    write_csv(tmp_path / "routellm" / "gsm8k_responses.csv", [["1+1?", "True", "True", "2", "2"], ["3*3?", "False", "True", "6", "9"]], columns)
    for subject, rows in (("anatomy", [["Bone?", "True", "False"]]), ("virology", [["Virus?", "False", "True"], ["Cell?", "True", "True"]])):
        write_csv(tmp_path / "routellm" / "mmlu_responses" / f"mmlu_{subject}.csv", rows, ["prompt", SW.WEAK, SW.STRONG])
    gsm8k = SW.load_gsm8k(tmp_path)
    assert gsm8k.weak.tolist() == [1.0, 0.0] and gsm8k.strong.tolist() == [1.0, 1.0] and gsm8k.weak_answers == ["2", "6"]
    mmlu = SW.load_mmlu(tmp_path)
    assert mmlu.tags == ["anatomy", "virology", "virology"] and mmlu.weak.tolist() == [1.0, 0.0, 1.0]
    sample = SW.load_mmlu(tmp_path, n=2, seed=0)
    assert len(sample.prompts) == 2 and set(sample.prompts) <= set(mmlu.prompts)
    examples = gsm8k.examples()
    assert [c["model"] for c in examples[1]["candidates"]] == [SW.WEAK, SW.STRONG]
    assert [c["scores"]["quality"] for c in examples[1]["candidates"]] == [0.0, 1.0]
    assert SW.oracle_router(gsm8k).tolist() == [0.0, 1.0]


def test_bad_correctness_values_and_missing_files_are_named(tmp_path):
    write_csv(tmp_path / "routellm" / "gsm8k_responses.csv", [["1+1?", "yes", "True", "2", "2"]],
              ["prompt", SW.WEAK, SW.STRONG, f"{SW.WEAK}_response", f"{SW.STRONG}_response"])
    with pytest.raises(DataError, match="gsm8k_responses.csv row 2: expected True or False, got 'yes'"):
        SW.load_gsm8k(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no mmlu_<subject>.csv"):
        SW.load_mmlu(tmp_path)
    with pytest.raises(ValueError, match="no published weak answers"):
        SW.cascade_confidence(SW.StrongWeakData("x", ["q"], np.array([1.0]), np.array([0.0]), "share"), lambda p, a: 0.0)


def test_mt_bench_scores_average_the_two_turns(tmp_path):
    judged = tmp_path / SW.MT_BENCH_JUDGMENTS
    judged.parent.mkdir(parents=True)
    judged.write_text("\n".join(json.dumps({"question_id": 81, "model": m, "score": s, "turn": t})
                                for m, t, s in ((SW.WEAK, 1, 6), (SW.WEAK, 2, 8), (SW.STRONG, 1, 9), (SW.STRONG, 2, 10))))
    (tmp_path / "mt_bench" / "question.jsonl").write_text(json.dumps({"question_id": 81, "turns": ["Write.", "Again."]}))
    data = SW.load_mt_bench_scores(tmp_path)
    assert data.prompts == ["Write."] and data.weak.tolist() == [7.0] and data.strong.tolist() == [9.5]
    judged.write_text(json.dumps({"question_id": 81, "model": "someone-else", "score": 5, "turn": 1}))
    with pytest.raises(DataError, match="line 1: model 'someone-else'"):
        SW.load_mt_bench_scores(tmp_path)


def test_a_reward_model_never_trains_on_the_routed_prompts():
    prefs = [Preference("s", str(k), prompt_key(q), q, "a", "b", "m1", "m2", 1.0) for k, q in enumerate(["Write.", "Sum 1+1?"])]
    kept = SW.exclude_prompts(prefs, ["  write. "])  # the same prompt, spaced and cased differently
    assert [p.instruction for p in kept] == ["Sum 1+1?"]
