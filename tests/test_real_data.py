"""Real-data loaders (AlpacaEval, MT-Bench, FLASK, LLMBar) and their seeded samples.

Most tests build a tiny folder with the real layout in ``tmp_path``, so they run on a machine without
the data; the ones marked by the ``shared_data`` fixture read ``../shared/data`` and skip without it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blender_lib import analysis
from blender_lib import real_data as R
from blender_lib import zooter
from blender_lib.data import DataError, make_example, validate_examples

REF = "ref-model"


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ann(prompt: int, model: str, pref: Any, *, generator: str | None = None, config: str = R.ALPACA_ANNOTATOR,
         reference: str = REF) -> dict:
    return {"id": prompt, "annotator_config": config, "annotator": config, "generator_1": reference,
            "generator_2": generator or model, "preference": pref, "file_model": model}


# Four prompts. Prompt 2: "weak" has an empty output; prompt 3: "weak"'s annotation failed.
PREFS = {  # model -> preference per prompt 0..3 (AlpacaEval coding: 1 ref better, 2 model better)
    "strong": [2.0, 2.0, 2.0, 1.5],
    "mid": [2.0, 1.0, 0.0, 2.0],
    "weak": [1.0, 1.0, 1.0, None],
}


def write_alpaca(root: Path, *, prefs: dict[str, list[Any]] = PREFS, extra_rows: list[dict] = ()) -> Path:
    folder = root / "alpaca_eval"
    rows = []
    for k in range(4):
        outputs = {REF: f"reference answer {k}", **{m: f"{m} answers {k}" for m in prefs}, "unjudged": f"u {k}"}
        if k == 2:
            outputs["weak"] = "   "
        rows.append({"id": k, "instruction": f"question {k}?", "dataset": "koala" if k % 2 else "vicuna",
                     "outputs": outputs})
    _jsonl(folder / R.ALPACA_WIDE_FILE, rows + list(extra_rows))
    anns = [_ann(k, m, p) for m, ps in prefs.items() for k, p in enumerate(ps)]
    anns += [_ann(k, "other", 2.0, config="weighted_alpaca_eval_gpt4_turbo", reference="gpt4_1106_preview")
             for k in range(4)]
    _jsonl(folder / R.ALPACA_ANNOTATIONS_FILE, anns)
    (folder / "leaderboards").mkdir()
    (folder / "leaderboards" / "data_AlpacaEval__alpaca_eval_gpt4_leaderboard.csv").write_text(
        ",win_rate,n_total\nstrong,87.5,4\nmid,62.5,4\nabsent,10.0,4\n", encoding="utf-8")
    return root


def write_mt_bench(root: Path) -> Path:
    folder = root / "mt_bench"
    questions = [{"question_id": q, "category": cat, "turns": [f"first {q}", f"second {q}"]}
                 for q, cat in ((81, "writing"), (101, "reasoning"), (102, "reasoning"))]
    questions[1]["reference"] = ["short ref", "short ref 2"]
    _jsonl(folder / "question.jsonl", questions)

    def answer(model: str, q: int, turns: list[str]) -> dict:
        return {"question_id": q, "model_id": model, "answer_id": "x", "choices": [{"index": 0, "turns": turns}]}

    _jsonl(folder / "reference_answer" / "gpt-4.jsonl", [answer("gpt-4", 101, ["ref 101", "ref 101 b"])])
    _jsonl(folder / "model_answer" / "a.jsonl", [answer("a", q, [f"a{q}", f"a{q} b"]) for q in (81, 101, 102)])
    _jsonl(folder / "model_answer" / "b.jsonl", [answer("b", q, [f"b{q}" if q != 102 else "", f"b{q} b"])
                                                 for q in (81, 101, 102)])
    return root


def write_flask(root: Path, *, nested: bool = False) -> Path:
    folder = root / "flask"
    main = [
        {"idx": 1, "instruction": "Rewrite this.", "answer": "Done.", "task": "Self-instruct",
         "skill": ["Readability", "Conciseness", "Comprehension"], "domain": ["Humanities"],
         "difficulty": "simple lifestyle knowledge"},
        {"idx": 2, "instruction": "Prove it.", "answer": "QED.", "task": "theoremqa",
         "skill": ["Logical Correctness", "Factuality", "Comprehension"], "domain": ["-1", "Math"], "difficulty": -1},
        {"idx": 3, "instruction": "No outputs for me.", "answer": "A.", "task": "Koala",
         "skill": ["Factuality", "Completeness", "Comprehension"], "domain": ["Culture"],
         "difficulty": "expert level knowledge"},
    ]
    hard = [{**main[1], "idx": 1, "difficulty": "expert level knowledge"},
            {**main[0], "idx": 2, "instruction": "Not in the main set."}]
    _jsonl(folder / "evaluation_set" / "flask_evaluation.jsonl", main)
    _jsonl(folder / "evaluation_set" / "flask_hard_evaluation.jsonl", hard)
    out = folder / "model_output" / ("outputs" if nested else "")
    _jsonl(out / "gpt4.jsonl", [{"question_id": q, "text": f"gpt4 on {q}"} for q in (1, 2)])
    _jsonl(out / "davinci_003.jsonl", [{"question_id": 1, "text": ""}, {"question_id": 2, "text": "d on 2"}])
    return root


def write_llmbar(root: Path) -> Path:
    folder = root / "llmbar"
    folder.mkdir(parents=True)
    natural = [{"input": "Say hi.", "output_1": "Hi!", "output_2": "Bye.", "label": 1},
               {"input": "Add 2+2.", "output_1": "5", "output_2": "4", "label": 2},
               {"input": "Same?", "output_1": "yes", "output_2": "yes", "label": 1}]
    (folder / "LLMBar__Natural.json").write_text(json.dumps(natural), encoding="utf-8")
    (folder / "Processed__FairEval.json").write_text(json.dumps(natural[:1]), encoding="utf-8")
    return root


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for write in (write_alpaca, write_mt_bench, write_flask, write_llmbar):
        write(root)
    return root


# --------------------------------------------------------------------------------------------
# where the data lives


def test_data_root_explicit_env_and_missing(tmp_path, monkeypatch, fake_root):
    assert R.data_root(fake_root) == fake_root
    with pytest.raises(R.RealDataNotFound, match="real-data folder not found"):
        R.data_root(tmp_path / "nope")
    monkeypatch.setenv(R.SHARED_DATA_ENV_VAR, str(fake_root))
    assert R.data_root() == fake_root
    monkeypatch.setenv(R.SHARED_DATA_ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(R.RealDataNotFound, match="is not a folder"):
        R.data_root()
    monkeypatch.delenv(R.SHARED_DATA_ENV_VAR)
    monkeypatch.setattr(R.paths, "shared_data_dir", lambda: None)
    fetched = tmp_path / "fetched"
    monkeypatch.setattr(R.paths, "fetched_data_dir", lambda: fetched)
    with pytest.raises(FileNotFoundError) as err:
        R.data_root()
    for source in ("tatsu-lab/alpaca_eval", "lm-sys/FastChat", "kaistAI/FLASK", "princeton-nlp/LLMBar",
                   "blender-book fetch-data", str(fetched)):
        assert source in str(err.value)
    fetched.mkdir()
    assert R.find_data_root() is None  # a folder without a manifest is not a finished download
    (fetched / R.paths.FETCH_MANIFEST).write_text('{"format": 1, "datasets": {}}')
    assert R.data_root() == R.find_data_root() == fetched  # the last fallback: what fetch-data downloaded


def test_missing_dataset_folder_and_file_say_how_to_get_them(tmp_path):
    root = write_llmbar(tmp_path)
    with pytest.raises(R.RealDataNotFound, match="(?s)alpaca_eval is missing.*blender-book fetch-data.*tatsu-lab/alpaca_eval"):
        R.load_alpaca_eval(root)
    (root / "alpaca_eval").mkdir()
    with pytest.raises(R.RealDataNotFound, match="model_outputs_wide_57models.jsonl is missing"):
        R.load_alpaca_eval(root)
    with pytest.raises(R.RealDataNotFound, match="(?s)mt_bench is missing.*FastChat"):
        R.load_mt_bench(root)


# --------------------------------------------------------------------------------------------
# AlpacaEval on a synthetic folder


@pytest.mark.parametrize("pref, prob", [(1, 0.0), (2.0, 1.0), (1.5, 0.5), (0, 0.5), (1.25, 0.25), (None, None),
                                        (float("nan"), None)])
def test_pref_to_prob(pref, prob):
    assert R.pref_to_prob(pref) == prob


@pytest.mark.parametrize("pref", [3.0, 0.5, -1, "2", True])
def test_pref_to_prob_rejects_unknown_codes(pref):
    with pytest.raises(DataError, match="preference"):
        R.pref_to_prob(pref)


def test_derived_cmp_results():
    got = R.derived_cmp_results(["w1", "l1", "w2", "l2", "d"], [1.0, 0.0, 0.9, 0.2, 0.5])
    assert got == {"w1,l1": "A is better", "w1,w2": "Same good", "w1,l2": "A is better",
                   "l1,w2": "B is better", "l1,l2": "Same bad", "w2,l2": "A is better"}  # nothing with the draw


def test_load_alpaca_eval_builds_valid_examples(fake_root):
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(fake_root, ["mid", "strong"], skipped=skipped)
    assert validate_examples(examples) == examples
    assert [ex["id"] for ex in examples] == [f"alpaca_eval/{k}" for k in range(4)] and skipped == []
    first = examples[0]
    assert first["output"] == "reference answer 0" and first["instruction"] == "question 0?"
    assert first["tags"] == ["vicuna"] and first["source"] == "alpaca_eval"
    assert [c["model"] for c in first["candidates"]] == ["mid", "strong"]
    assert {c["decoding_method"] for c in first["candidates"]} == {"published"}
    prefs = [[c["scores"]["gpt4_pref"] for c in ex["candidates"]] for ex in examples]
    assert prefs == [[1.0, 1.0], [0.0, 1.0], [0.5, 1.0], [1.0, 0.5]]
    assert [ex["cmp_results"] for ex in examples] == [{"mid,strong": "Same good"}, {"mid,strong": "B is better"},
                                                      {}, {}]
    assert first["meta"] == {"alpaca_eval_id": 0, "annotator": "alpaca_eval_gpt4", "reference_model": REF}
    assert all(ex["cmp_results"] == {} for ex in R.load_alpaca_eval(fake_root, ["mid", "strong"], derive_cmp=False))


def test_load_alpaca_eval_counts_and_reports_skips(fake_root):
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(fake_root, ["strong", "weak"], skipped=skipped)
    assert [ex["id"] for ex in examples] == ["alpaca_eval/0", "alpaca_eval/1"]
    assert skipped == [("alpaca_eval/2", "weak: empty output"),
                       ("alpaca_eval/3", "weak: alpaca_eval_gpt4 annotation failed (null preference)")]
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 prompts:\n  1 x weak: empty output"):
        R.load_alpaca_eval(fake_root, ["strong", "weak"])


def test_load_alpaca_eval_skips_missing_annotation_and_empty_reference(tmp_path):
    prefs = {**PREFS, "mid": [2.0, 1.0, 0.0]}  # no judgment of prompt 3
    root = write_alpaca(tmp_path, prefs=prefs, extra_rows=[
        {"id": 9, "instruction": "q9", "dataset": "oasst", "outputs": {REF: "", "mid": "m", "strong": "s"}}])
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(root, ["mid"], skipped=skipped)
    assert len(examples) == 3
    assert skipped == [("alpaca_eval/3", "mid: no alpaca_eval_gpt4 annotation"),
                       ("alpaca_eval/9", f"reference {REF}: empty output; mid: no alpaca_eval_gpt4 annotation")]


def test_load_alpaca_eval_limit_and_default_models(fake_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        examples = R.load_alpaca_eval(fake_root, limit=1)
    assert len(examples) == 1
    assert [c["model"] for c in examples[0]["candidates"]] == ["mid", "strong", "weak"]  # judged ones, sorted
    with pytest.raises(ValueError, match="limit"):
        R.load_alpaca_eval(fake_root, limit=0)


def test_load_alpaca_eval_bad_models(fake_root):
    with pytest.raises(DataError, match=r"unknown AlpacaEval models \['gpt-7'\]; available .*'strong'"):
        R.load_alpaca_eval(fake_root, ["strong", "gpt-7"])
    with pytest.raises(DataError, match=r"\['unjudged'\] have outputs but no 'alpaca_eval_gpt4' judgments"):
        R.load_alpaca_eval(fake_root, ["unjudged"])
    with pytest.raises(DataError, match="chosen more than once"):
        R.load_alpaca_eval(fake_root, ["mid", "mid"])
    with pytest.raises(DataError, match="list of names"):
        R.load_alpaca_eval(fake_root, "mid")


def test_load_alpaca_eval_bad_annotator_and_reference(fake_root):
    with pytest.raises(DataError, match=r"no annotations by the annotator config 'gpt5'.*alpaca_eval_gpt4"):
        R.load_alpaca_eval(fake_root, ["mid"], annotator="gpt5")
    with pytest.raises(DataError, match="no annotations against the reference 'claude'"):
        R.load_alpaca_eval(fake_root, ["mid"], reference_model="claude")


def test_load_alpaca_eval_duplicate_ids_and_bad_fields(tmp_path):
    root = write_alpaca(tmp_path / "dup", extra_rows=[{"id": 1, "instruction": "again", "dataset": "x", "outputs": {}}])
    with pytest.raises(DataError, match=r"duplicate id 1 \(.*:2 and .*:5\)"):
        R.load_alpaca_eval(root, ["mid"])
    root = write_alpaca(tmp_path / "bad", extra_rows=[{"id": 7, "instruction": "no dataset", "outputs": {}}])
    with pytest.raises(DataError, match=r"wide_57models.jsonl:5: missing field 'dataset'"):
        R.load_alpaca_eval(root, ["mid"])


def test_mislabelled_annotations_are_dropped_and_models_table(tmp_path):
    root = write_alpaca(tmp_path)
    path = root / "alpaca_eval" / R.ALPACA_ANNOTATIONS_FILE
    # An annotation file of "copycat" that judges "strong"'s outputs (as upstream falcon-7b's does falcon-40b's).
    extra = [_ann(k, "copycat", 2.0, generator="strong") for k in range(4)]
    path.write_text(path.read_text() + "".join(json.dumps(r) + "\n" for r in extra))
    table = R.alpaca_eval_models(root)
    assert table.loc["copycat", "n_mislabelled"] == 4 and table.loc["copycat", "n_annotated"] == 0
    strong, weak = table.loc["strong"], table.loc["weak"]
    assert strong["win_rate"] == pytest.approx(87.5) and strong["published_win_rate"] == pytest.approx(87.5)
    assert (strong["n_wins"], strong["n_losses"], strong["n_draws"]) == (3, 0, 1) and strong["full_coverage"]
    assert weak["n_failed"] == 1 and weak["n_usable"] == 2 and not weak["full_coverage"]
    assert math.isnan(weak["published_win_rate"])
    assert table.loc["unjudged", "has_outputs"] and math.isnan(table.loc["unjudged", "win_rate"])
    assert list(table.index[:3]) == ["strong", "mid", "weak"]


def test_suggested_alpaca_pool(tmp_path):
    prefs = {f"m{k}": [2.0] * k + [1.0] * (4 - k) for k in range(5)}  # win rates 0, 25, ..., 100
    prefs["gappy"] = [2.0, 2.0, None, 2.0]
    root = write_alpaca(tmp_path, prefs=prefs)
    assert R.suggested_alpaca_pool(root, n=3) == ["m4", "m2", "m0"]
    assert R.suggested_alpaca_pool(root, n=3) == R.suggested_alpaca_pool(root, n=3)
    assert R.suggested_alpaca_pool(root, n=2, max_win_rate=60, exclude=["m0"]) == ["m2", "m1"]
    with pytest.raises(DataError, match="only 5 models have full coverage"):
        R.suggested_alpaca_pool(root, n=6)


# --------------------------------------------------------------------------------------------
# MT-Bench, FLASK, LLMBar on synthetic folders


def test_load_mt_bench(fake_root):
    skipped: list[tuple[str, str]] = []
    examples = R.load_mt_bench(fake_root, ["a", "b"], skipped=skipped)
    assert [ex["id"] for ex in examples] == ["mt_bench/81", "mt_bench/101"]
    assert skipped == [("mt_bench/102", "b: empty output")]
    by_id = {ex["id"]: ex for ex in examples}
    assert by_id["mt_bench/101"]["output"] == "ref 101" and by_id["mt_bench/101"]["tags"] == ["reasoning"]
    assert by_id["mt_bench/81"].get("has_reference") is False and by_id["mt_bench/81"]["output"] == ""
    assert [c["text"] for c in by_id["mt_bench/81"]["candidates"]] == ["a81", "b81"]
    second = R.load_mt_bench(fake_root, ["a", "b"], turn=2)
    assert second[0]["id"] == "mt_bench/81/turn2" and second[0]["instruction"] == "second 81"
    assert second[0]["input"] == "first 81" and second[1]["output"] == "ref 101 b"
    assert R.load_mt_bench(fake_root, ["a"], reference="question")[1]["output"] == "short ref"
    questions = R.mt_bench_questions(fake_root)  # the one reader of question.jsonl (strong_weak reads it too)
    assert sorted(questions) == [81, 101, 102] and questions[101].row["category"] == "reasoning"
    assert all(ex.get("has_reference") is False for ex in R.load_mt_bench(fake_root, ["a"], reference=None))


def test_load_mt_bench_errors(fake_root):
    with pytest.raises(DataError, match=r"unknown MT-Bench models \['c'\]; available .*\['a', 'b'\]"):
        R.load_mt_bench(fake_root, ["c"])
    with pytest.raises(ValueError, match="turn"):
        R.load_mt_bench(fake_root, turn=3)
    path = fake_root / "mt_bench" / "model_answer" / "a.jsonl"
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="duplicate question_id 81"):
        R.load_mt_bench(fake_root, ["a"])


@pytest.mark.parametrize("nested", [False, True])
def test_load_flask(tmp_path, nested):
    root = write_flask(tmp_path, nested=nested)
    assert R.flask_models(root) == ["davinci_003", "gpt4"]
    skipped: list[tuple[str, str]] = []
    examples = R.load_flask(root, ["gpt4"], skipped=skipped)
    assert [ex["id"] for ex in examples] == ["flask/1", "flask/2"]
    assert skipped == [("flask/3", "no model has an output for it")]
    assert examples[0]["tags"] == ["skill:Readability", "skill:Conciseness", "skill:Comprehension",
                                   "domain:Humanities", "difficulty:simple lifestyle knowledge"]
    assert examples[1]["tags"] == ["skill:Logical Correctness", "skill:Factuality", "skill:Comprehension",
                                   "domain:Math"]  # -1 marks an unknown domain / difficulty
    assert examples[0]["output"] == "Done." and examples[0]["meta"]["task"] == "Self-instruct"
    assert R.tags_with_prefix(examples) == [("skill:Readability", "skill:Conciseness", "skill:Comprehension"),
                                            ("skill:Logical Correctness", "skill:Factuality", "skill:Comprehension")]
    skipped = []
    assert [ex["id"] for ex in R.load_flask(root, skipped=skipped)] == ["flask/2"]
    assert skipped[0] == ("flask/1", "davinci_003: empty output")


def test_load_flask_hard_joins_outputs_by_instruction(fake_root):
    skipped: list[tuple[str, str]] = []
    examples = R.load_flask(fake_root, ["gpt4"], which="hard", skipped=skipped)
    assert [ex["id"] for ex in examples] == ["flask_hard/1"]
    assert examples[0]["candidates"][0]["text"] == "gpt4 on 2" and examples[0]["source"] == "flask_hard"
    assert skipped == [("flask_hard/2", "not in the main evaluation set, whose idx the outputs follow")]
    with pytest.raises(ValueError, match="which"):
        R.load_flask(fake_root, which="easy")
    with pytest.raises(DataError, match="no tag starting with 'task:'"):
        R.tags_with_prefix(examples, "task:")


def test_with_flask_tags_matches_instructions_across_datasets(fake_root):
    examples = [{"id": "a/1", "instruction": "  Prove\n it. ", "tags": ["vicuna"]},
                {"id": "a/2", "instruction": "Not a FLASK instruction.", "tags": ["koala"]},
                {"id": "a/3", "instruction": "Rewrite this.", "tags": ["koala", "skill:Readability"]}]
    skipped: list[tuple[str, str]] = []
    tagged = R.with_flask_tags(examples, fake_root, skipped=skipped)
    assert [ex["id"] for ex in tagged] == ["a/1", "a/3"] and skipped == [("a/2", "instruction not in FLASK")]
    assert tagged[0]["tags"] == ["vicuna", "skill:Logical Correctness", "skill:Factuality", "skill:Comprehension",
                                 "domain:Math"]  # its own tags first, FLASK's after, none twice
    assert tagged[1]["tags"][:3] == ["koala", "skill:Readability", "skill:Conciseness"]
    assert examples[0]["tags"] == ["vicuna"]  # copies: the caller's examples are not changed
    assert [t[0] for t in zooter.data_tags(tagged, "first")] == ["vicuna", "koala"]
    with pytest.warns(UserWarning, match="skipped 1 of 3 prompts"):
        R.with_flask_tags(examples, fake_root)


def test_an_instruction_flask_lists_twice_gets_the_tags_of_both(tmp_path):
    root = write_flask(tmp_path)
    path = root / "flask" / "evaluation_set" / "flask_evaluation.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    _jsonl(path, rows + [{**rows[0], "idx": 9, "skill": ["Harmlessness"], "domain": ["Culture"]}])
    tags = R.flask_tags_by_instruction(root)["Rewrite this."]
    assert tags.count("skill:Readability") == 1 and "skill:Harmlessness" in tags and "domain:Culture" in tags


def test_load_llmbar(fake_root):
    assert R.llmbar_subsets(fake_root) == ["LLMBar__Natural", "Processed__FairEval"]
    skipped: list[tuple[str, str]] = []
    examples = R.load_llmbar(fake_root, skipped=skipped)
    assert [ex["id"] for ex in examples] == ["llmbar/LLMBar__Natural/0", "llmbar/LLMBar__Natural/1",
                                             "llmbar/Processed__FairEval/0"]
    assert skipped == [("llmbar/LLMBar__Natural/2", "output_1 and output_2 are identical")]
    assert [ex["cmp_results"] for ex in examples[:2]] == [{"output_1,output_2": "A is better"},
                                                          {"output_1,output_2": "B is better"}]
    assert examples[1]["source"] == "LLMBar__Natural" and examples[1].get("has_reference") is False
    assert [c["model"] for c in examples[1]["candidates"]] == ["output_1", "output_2"]
    assert len(R.load_llmbar(fake_root, ["Processed__FairEval", "LLMBar__Natural"], limit=1)) == 2
    with pytest.raises(DataError, match=r"unknown LLMBar subsets \['Natural'\]"):
        R.load_llmbar(fake_root, ["Natural"])
    (fake_root / "llmbar" / "Bad.json").write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b",
                                                                 "label": 3}]))
    with pytest.raises(DataError, match=r"Bad.json\[0\]: label must be 1 or 2"):
        R.load_llmbar(fake_root, ["Bad"])


# --------------------------------------------------------------------------------------------
# examples as load_alpaca_eval makes them (the analysis and cross-validation tests use them too)


def hand_examples() -> list[dict]:
    """Two AlpacaEval-like prompts, candidates a, b, c: verdicts against the reference, derived cmp_results."""
    def cand(model: str, pref: float) -> dict:
        return {"model": model, "decoding_method": "published", "text": f"{model} text", "scores": {"gpt4_pref": pref}}

    models, prefs = ["a", "b", "c"], [[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]]
    return [{"id": f"h{k}", "instruction": "q", "input": "", "output": "r", "source": "test", "tags": ["t"],
             "candidates": [cand(m, p) for m, p in zip(models, ps)], "cmp_results": R.derived_cmp_results(models, ps)}
            for k, ps in enumerate(prefs)]


def verdict_pool(n: int = 12, models: tuple[str, ...] = ("a", "b", "c", "d")) -> list[dict]:
    """n prompts; model 'b' wins most often, 'd' writes the longest answers; seeded verdicts."""
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        probs = [float(rng.random() < p) for p in (0.5, 0.9, 0.3, 0.6)][: len(models)]
        out.append(make_example(
            id=f"p{k}", instruction=f"question {k}", output=f"reference {k}", source="test", tags=[f"t{k % 2}"],
            candidates=[{"model": m, "decoding_method": "published", "text": " ".join([m] * (j + 1 + k % 3)),
                         "scores": {"gpt4_pref": p}} for j, (m, p) in enumerate(zip(models, probs))],
            cmp_results=R.derived_cmp_results(models, probs)))
    return out


def test_prompt_subset():
    examples = verdict_pool(12)
    subset = R.prompt_subset(examples, 5, seed=1)
    assert len(subset) == 5 and subset == R.prompt_subset(examples, 5, seed=1)
    assert [ex["id"] for ex in subset] == [ex["id"] for ex in examples if ex in subset]  # original order
    assert R.prompt_subset(examples, None) == examples and R.prompt_subset(examples, 99) == examples
    with pytest.raises(ValueError, match="positive integer or None"):
        R.prompt_subset(examples, 0)


# --------------------------------------------------------------------------------------------
# the real data (skips without ../shared/data)


ALPACA_POOL = ["gpt4", "claude", "tulu-2-dpo-7b", "vicuna-13b", "alpaca-7b"]


def test_real_alpaca_eval_counts_and_skips(shared_data):
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(shared_data, ALPACA_POOL, skipped=skipped)
    assert len(examples) + len(skipped) == 805
    assert [reason for _, reason in skipped] == ["reference text_davinci_003: empty output"] * 2
    assert {len(ex["candidates"]) for ex in examples} == {5}
    assert {ex["tags"][0] for ex in examples} == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    prefs = np.array([analysis.candidate_scores(ex) for ex in examples])
    assert set(np.unique(prefs)) <= {0.0, 0.5, 1.0}
    # the derived cmp_results agree with the per-candidate preferences they come from
    assert analysis.preference_agreement(examples, list(prefs))["agreement"] == 1.0


@pytest.mark.parametrize("annotator", ["alpaca_eval_gpt4", "weighted_alpaca_eval_gpt4_turbo"])
def test_real_alpaca_eval_win_rates_match_the_published_leaderboard(shared_data, annotator):
    table = R.alpaca_eval_models(shared_data, annotator=annotator)
    both = table.dropna(subset=["win_rate", "published_win_rate"])
    assert len(both) >= 24
    assert (both["win_rate"] - both["published_win_rate"]).abs().max() < 1.0
    if annotator == "alpaca_eval_gpt4":
        assert table.loc["gpt4", "win_rate"] == pytest.approx(95.28, abs=0.01)
        assert table.loc["alpaca-7b", "win_rate"] == pytest.approx(26.46, abs=0.01)
        assert table.loc["falcon-7b-instruct", "n_mislabelled"] == 805  # a copy of falcon-40b's judgments
        assert table[table["has_outputs"] & (table["n_annotated"] > 0)].shape[0] == 24


def test_real_suggested_pool_and_its_win_rates(shared_data):
    pool = R.suggested_alpaca_pool(shared_data, n=10)
    assert len(set(pool)) == 10 and pool == R.suggested_alpaca_pool(shared_data, n=10)
    table = R.alpaca_eval_models(shared_data)
    rates = table.loc[pool, "win_rate"]
    assert table.loc[pool, "full_coverage"].all() and list(rates) == sorted(rates, reverse=True)
    assert rates.max() - rates.min() > 50
    examples = R.load_alpaca_eval(shared_data, pool, limit=100, skipped=[])
    singles = analysis.candidate_win_rates(examples)
    oracle = analysis.win_rate_vs_reference(examples, analysis.oracle_selections(examples))
    assert oracle >= singles.max() and len(singles) == 10


def test_real_mt_bench(shared_data):
    assert len(R.mt_bench_models(shared_data)) == 31
    examples = R.load_mt_bench(shared_data, ["gpt-4", "vicuna-13b-v1.3", "alpaca-13b"])
    assert len(examples) == 80
    assert sum(ex.get("has_reference", True) for ex in examples) == 30
    assert {ex["tags"][0] for ex in examples} == {"writing", "roleplay", "reasoning", "math", "coding",
                                                  "extraction", "stem", "humanities"}
    skipped: list[tuple[str, str]] = []
    assert len(R.load_mt_bench(shared_data, skipped=skipped)) == 79
    assert skipped == [("mt_bench/127", "llama-13b: empty output")]


def test_real_flask(shared_data):
    assert len(R.flask_models(shared_data)) == 15
    skipped: list[tuple[str, str]] = []
    examples = R.load_flask(shared_data, ["gpt4", "alpaca_13b", "llama2_chat_70b"], skipped=skipped)
    assert len(examples) == 1700 and len(skipped) == 40
    skills = {t for tags in R.tags_with_prefix(examples) for t in tags}
    assert len(skills) == 12 and "skill:Logical Correctness" in skills
    skipped = []
    assert len(R.load_flask(shared_data, skipped=skipped)) == 1678  # + 22 empty davinci_003 outputs


def test_real_llmbar(shared_data):
    skipped: list[tuple[str, str]] = []
    examples = R.load_llmbar(shared_data, skipped=skipped)
    sizes = {s: sum(ex["source"] == s for ex in examples) for s in R.llmbar_subsets(shared_data)}
    assert sizes == {"LLMBar__Adversarial__GPTInst": 92, "LLMBar__Adversarial__GPTOut": 47,
                     "LLMBar__Adversarial__Manual": 46, "LLMBar__Adversarial__Neighbor": 134,
                     "LLMBar__Natural": 100, "Processed__FairEval": 66, "Processed__LLMEval2": 198,
                     "Processed__MT-Bench": 200}
    assert [ex_id.split("/")[1] for ex_id, _ in skipped] == ["Processed__LLMEval2"] * 2
    lengths = [np.array([len(c["text"]) for c in ex["candidates"]], dtype=float) for ex in examples]
    agreement = analysis.preference_agreement(examples, lengths)
    assert agreement["n_pairs"] + agreement["n_method_ties"] == 883 and 0 < agreement["agreement"] < 1
