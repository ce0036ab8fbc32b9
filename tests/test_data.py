"""blender_lib.data: schema validation, every source shape, cleaning, splits, save/load."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from blender_lib import data
from blender_lib.data import DataError
from blender_lib.paths import PROJECT_ROOT

# --------------------------------------------------------------------------------------------
# seed set and validation


def test_seed_instructions_load_into_the_schema() -> None:
    examples = data.load_seed_instructions()
    assert len(examples) == 420
    categories = Counter(ex["tags"][0] for ex in examples)
    assert set(categories) == {
        "open_qa", "closed_qa", "brainstorming", "classification", "information_extraction",
        "summarization", "rewriting", "creative_writing", "math", "coding",
    }  # fmt: skip
    first = examples[0]
    assert first["source"] == "seed" and first["candidates"] == [] and first["cmp_results"] == {}
    assert first["id"] == "seed-0001" and first["instruction"].startswith("Why does the sky")


def test_seed_file_with_a_missing_field_names_file_and_line(write_lines) -> None:
    good = {"id": "s1", "category": "math", "instruction": "Add 2 and 2.", "input": "", "output": "4"}
    path = write_lines("seed.jsonl", [good, {k: v for k, v in good.items() if k != "category"} | {"id": "s2"}])
    with pytest.raises(DataError, match=r"seed\.jsonl:2: missing field 'category'"):
        data.load_seed_instructions(path)


def test_a_valid_example_passes(make_example) -> None:
    ex = make_example(cmp_results={"model-a,model-b": "A is better"})
    ex["candidates"][0]["scores"] = {"bleu": 12.5, "rougeL": 0.3}
    assert data.validate_example(ex) is ex


def test_mixinstruct_convention_empty_instruction_with_input_is_valid(make_example) -> None:
    # The published MixInstruct puts the whole prompt in `input` for some sources.
    data.validate_example(make_example(instruction="", input="What is a skeptic?"))


def _set_candidate(ex: dict, key: str, value) -> dict:
    ex["candidates"][0][key] = value
    return ex


BAD_EXAMPLES = {
    "empty instruction": (lambda ex: ex | {"instruction": ""}, r"'ex-1'\.instruction is empty"),
    "whitespace instruction": (lambda ex: ex | {"instruction": "  \n"}, r"instruction is empty"),
    "empty reference": (lambda ex: ex | {"output": " "}, r"'ex-1'\.output \(the reference\) is empty"),
    "missing field": (lambda ex: {k: v for k, v in ex.items() if k != "output"}, r"lacks the field\(s\) \['output'\]"),
    "misspelt field": (
        lambda ex: {("instrucion" if k == "instruction" else k): v for k, v in ex.items()},
        r"lacks the field\(s\) \['instruction'\]",
    ),
    "unknown extra field": (lambda ex: ex | {"has_referense": False}, r"unknown field\(s\) \['has_referense'\]"),
    "wrong type": (lambda ex: ex | {"tags": "open_qa"}, r"'ex-1'\.tags must be a list"),
    "empty id": (lambda ex: ex | {"id": ""}, r"example id is empty"),
    "empty candidate text": (
        lambda ex: _set_candidate(ex, "text", ""),
        r"candidates\[0\] \(model 'model-a'\)\.text is empty",
    ),
    "candidate without model": (
        lambda ex: ex | {"candidates": [{"text": "x", "decoding_method": "greedy", "scores": {}}]},
        r"candidates\[0\] lacks the field 'model'",
    ),
    "non-numeric score": (
        lambda ex: _set_candidate(ex, "scores", {"bleu": "high"}),
        r"scores\['bleu'\] must be a finite number",
    ),
    "infinite score": (
        lambda ex: _set_candidate(ex, "scores", {"bartscore": float("-inf")}),
        r"scores\['bartscore'\] must be a finite number, got -inf",
    ),
    "candidate not a dict": (lambda ex: ex | {"candidates": ["text"]}, r"candidates\[0\] must be a dict, got str"),
    "duplicate candidate models": (
        lambda ex: ex | {"candidates": ex["candidates"] + [dict(ex["candidates"][0])]},
        r"several candidates named \['model-a'\]",
    ),
    "comma in model name": (lambda ex: _set_candidate(ex, "model", "a,b"), r"contains a comma"),
    "bad cmp label": (lambda ex: ex | {"cmp_results": {"model-a,model-b": "A wins"}}, r"is not one of"),
    "cmp key naming a non-candidate": (
        lambda ex: ex | {"cmp_results": {"model-a,model-z": "A is better"}},
        r"names \['model-z'\], which are not candidates",
    ),
    "cmp key without comma": (
        lambda ex: ex | {"cmp_results": {"model-a": "Same good"}},
        r"must look like 'modelA,modelB'",
    ),
    "no reference flag with an output": (
        lambda ex: ex | {"has_reference": False},
        r"has_reference=False but a non-empty output",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EXAMPLES))
def test_bad_examples_are_rejected_naming_id_and_field(case: str, make_example) -> None:
    corrupt, message = BAD_EXAMPLES[case]
    with pytest.raises(DataError, match=message):
        data.validate_example(corrupt(make_example()))


def test_duplicate_ids_are_rejected(make_example) -> None:
    with pytest.raises(DataError, match="duplicate example id 'ex-1'"):
        data.validate_examples([make_example(), make_example()])


# --------------------------------------------------------------------------------------------
# reading JSON / JSONL


def test_read_jsonl_reports_a_malformed_line_as_file_and_line(write_lines) -> None:
    path = write_lines("rows.jsonl", [{"a": 1}, "", '{"a": 2,', "[1, 2]", {"a": 3}])
    with pytest.raises(DataError, match=r"rows\.jsonl:3: "):
        data.read_jsonl(path)
    rows, skipped = data.read_jsonl(path, on_error="skip")
    assert rows == [{"a": 1}, {"a": 3}]  # the blank line 2 is not a record
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{path}:3: ") and skipped[1] == f"{path}:4: expected a JSON object, got list"


def test_read_json_array_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "rows.json"
    good.write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert data.read_jsonl(good) == ([{"a": 1}, {"a": 2}], [])
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1},\n{"a": ]')
    with pytest.raises(DataError, match=r"broken\.json:2: invalid JSON"):
        data.read_jsonl(broken)
    not_array = tmp_path / "object.json"
    not_array.write_text('{"a": 1}')
    with pytest.raises(DataError, match="expected a JSON array of objects, got a dict"):
        data.read_jsonl(not_array)
    with pytest.raises(DataError, match="data file not found"):
        data.read_jsonl(tmp_path / "absent.jsonl")


# --------------------------------------------------------------------------------------------
# local files in every shape

SHAPE_ROWS = {
    "alpaca": {"instruction": "Name a color.", "input": "", "output": "Blue."},
    "dolly": {
        "instruction": "Summarise.",
        "context": "A long text.",
        "response": "Short.",
        "category": "summarization",
    },
    "gpt4all": {"prompt": "Say hi.", "response": "Hi!", "source": "unified_chip2"},
    "sharegpt": {
        "id": "abc",
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "Tell a joke."},
            {"from": "human", "value": "Please?"},
            {"from": "gpt", "value": "Why did the chicken cross the road?"},
            {"from": "human", "value": "Another."},
        ],
    },
    "alpaca_eval": {"instruction": "Write a haiku.", "output": "Old pond...", "generator": "gpt4", "dataset": "vicuna"},
    "mt_bench": {"question_id": 101, "category": "reasoning", "turns": ["Q1?", "Q2?"], "reference": ["A1.", "A2."]},
    "mixinstruct": {
        "id": "unified_chip2/69962",
        "instruction": "",
        "input": "What is a skeptic?",
        "output": "Someone who questions.",
        "candidates": [
            {
                "decoding_method": "top_p_sampling",
                "model": "m1",
                "text": "A doubter.",
                "scores": {"bleu": 5.6},
                "extra": 1,
            },
            {"decoding_method": "top_p_sampling", "model": "m2", "text": "A denier.", "scores": {"bleu": 1.0}},
        ],
        "cmp_results": json.dumps({"m1,m2": "A is better"}),
    },
}

EXPECTED = {
    "alpaca": {"instruction": "Name a color.", "input": "", "output": "Blue.", "tags": [], "id": "alpaca/0"},
    "dolly": {"input": "A long text.", "output": "Short.", "tags": ["summarization"]},
    "gpt4all": {"instruction": "Say hi.", "output": "Hi!", "tags": ["unified_chip2"]},
    "sharegpt": {"id": "sharegpt/abc", "instruction": "Tell a joke.", "output": "Why did the chicken cross the road?"},
    "alpaca_eval": {"output": "Old pond...", "tags": ["vicuna"], "meta": {"generator": "gpt4"}},
    "mt_bench": {"id": "mt_bench/101", "instruction": "Q1?", "output": "A1.", "tags": ["reasoning"]},
    "mixinstruct": {"id": "unified_chip2/69962", "source": "unified_chip2", "cmp_results": {"m1,m2": "A is better"}},
}


@pytest.mark.parametrize("shape", sorted(SHAPE_ROWS))
@pytest.mark.parametrize("given", ["auto", "explicit"])
def test_load_local_maps_each_shape(shape: str, given: str, write_lines) -> None:
    path = write_lines(f"{shape}.jsonl", [SHAPE_ROWS[shape]])
    (example,) = data.load_local(path, shape=shape if given == "explicit" else "auto")
    for key, value in EXPECTED[shape].items():
        assert example[key] == value, key
    assert example.get("has_reference", True)


def test_mixinstruct_keeps_extra_candidate_keys_and_reads_dict_or_null_cmp(write_lines) -> None:
    with_dict = SHAPE_ROWS["mixinstruct"] | {"cmp_results": {"m1,m2": "Same bad"}}
    with_null = SHAPE_ROWS["mixinstruct"] | {"id": "unified_chip2/2", "cmp_results": "null"}
    first, second = data.load_local(write_lines("mix.jsonl", [with_dict, with_null]))
    assert first["candidates"][0]["extra"] == 1
    assert first["cmp_results"] == {"m1,m2": "Same bad"} and second["cmp_results"] == {}


def test_question_only_rows_are_flagged_not_given_a_fake_reference(write_lines) -> None:
    no_reference = {"question_id": 81, "category": "writing", "turns": ["Write a blog post."]}
    turn_two_only = {"question_id": 82, "category": "extraction", "turns": ["T1", "T2"], "reference": ["", "R2"]}
    question, second = data.load_local(write_lines("q.jsonl", [no_reference, turn_two_only]))
    assert question["output"] == "" and question["has_reference"] is False
    assert question["meta"] == {"question_id": 81, "n_turns": 1}
    assert second["output"] == "" and second["has_reference"] is False
    ae = write_lines("ae.jsonl", [{"instruction": "Hi?", "dataset": "oasst", "reference_x": "Hello."}])
    assert data.load_local(ae)[0]["has_reference"] is False
    assert data.load_local(ae, reference_field="reference_x")[0]["output"] == "Hello."


def test_a_missing_reference_is_an_error_where_the_shape_has_one(write_lines) -> None:
    path = write_lines("alpaca.jsonl", [SHAPE_ROWS["alpaca"], SHAPE_ROWS["alpaca"] | {"output": ""}])
    with pytest.raises(DataError, match=r"alpaca\.jsonl:2: example 'alpaca/1'\.output \(the reference\) is empty"):
        data.load_local(path)


def test_unknown_shape_lists_the_known_ones(write_lines) -> None:
    path = write_lines("odd.jsonl", [{"question": "Why?", "answer": "Because."}])
    with pytest.raises(DataError, match=r"unknown data shape: keys \['answer', 'question'\].*alpaca \(instruction"):
        data.load_local(path)
    with pytest.raises(DataError, match="unknown shape 'vicuna'"):
        data.load_local(path, shape="vicuna")


def test_ambiguous_shape_asks_for_an_explicit_one(write_lines) -> None:
    path = write_lines("both.jsonl", [{"instruction": "x", "input": "", "output": "y", "dataset": "d"}])
    with pytest.raises(DataError, match=r"ambiguous data shape.*\['alpaca', 'alpaca_eval'\]"):
        data.load_local(path)
    assert data.load_local(path, shape="alpaca")[0]["output"] == "y"


def test_wrong_field_names_with_an_explicit_shape_name_the_field(write_lines) -> None:
    path = write_lines("dolly.jsonl", [{"instruction": "x", "context": "", "answer": "y"}])
    with pytest.raises(DataError, match=r"dolly\.jsonl:1: missing field 'response' for the dolly shape"):
        data.load_local(path, shape="dolly")


def test_sharegpt_without_a_reply_raises_or_is_skipped_with_a_warning(write_lines) -> None:
    no_reply = {"id": "z", "conversations": [{"from": "human", "value": "Hello?"}]}
    path = write_lines("chats.jsonl", [SHAPE_ROWS["sharegpt"], no_reply])
    with pytest.raises(DataError, match=r"chats\.jsonl:2: the conversation has no assistant turn"):
        data.load_local(path)
    with pytest.warns(UserWarning, match=r"skipped 1 row\(s\):\n  .*chats\.jsonl:2"):
        kept = data.load_local(path, on_error="skip")
    assert [ex["id"] for ex in kept] == ["sharegpt/abc"]


def test_duplicate_ids_in_a_file_are_rejected(write_lines) -> None:
    path = write_lines("dup.jsonl", [SHAPE_ROWS["sharegpt"], SHAPE_ROWS["sharegpt"]])
    with pytest.raises(DataError, match="duplicate example id 'sharegpt/abc'"):
        data.load_local(path)


def test_real_alpaca_eval_and_mt_bench_files_load(shared_data: Path) -> None:
    eval_set = shared_data / "alpaca_eval" / "eval_set_805.jsonl"
    questions = shared_data / "mt_bench" / "question.jsonl"
    for path in (eval_set, questions):
        if not path.is_file():
            pytest.skip(f"{path} is absent from the shared data folder")
    alpaca = data.load_local(eval_set, reference_field="reference_gpt4_1106_preview")
    assert len(alpaca) == 805 and all(ex["output"] for ex in alpaca)
    assert alpaca[0]["id"] == "alpaca_eval/0" and alpaca[0]["tags"] == ["helpful_base"]
    assert not any(ex.get("has_reference", True) for ex in data.load_local(eval_set)[:5])
    mt = data.load_local(questions)
    assert len(mt) == 80 and mt[0]["id"] == "mt_bench/81" and mt[0]["tags"] == ["writing"]
    with_reference = [ex for ex in mt if ex.get("has_reference", True)]
    assert 0 < len(with_reference) < 80 and all(ex["output"] for ex in with_reference)


# --------------------------------------------------------------------------------------------
# Hugging Face sources: the mappings offline, on small in-memory datasets

HUB_ROWS = {
    "vicgalle/alpaca-gpt4": [SHAPE_ROWS["alpaca"] | {"text": "### Instruction ..."}],
    "databricks/databricks-dolly-15k": [SHAPE_ROWS["dolly"]],
    "nomic-ai/gpt4all_prompt_generations": [SHAPE_ROWS["gpt4all"]],
    "anon8231489123/ShareGPT_Vicuna_unfiltered": [SHAPE_ROWS["sharegpt"]],
    "llm-blender/mix-instruct": [SHAPE_ROWS["mixinstruct"]],
}


@pytest.mark.parametrize("dataset_id", sorted(HUB_ROWS))
def test_hub_source_mappings_on_in_memory_datasets(dataset_id: str) -> None:
    dataset = datasets.Dataset.from_list(HUB_ROWS[dataset_id])
    hub = data.HUB_SOURCES[dataset_id]
    (example,), skipped = data.examples_from_rows(dataset, hub.shape, source=hub.source)
    assert skipped == []
    assert example["source"] == ("unified_chip2" if hub.shape == "mixinstruct" else hub.source)
    assert example["output"] and example["instruction"] + example["input"]


def test_mixinstruct_rows_with_bad_candidates_name_the_row(write_lines) -> None:
    path = write_lines("mix.jsonl", [SHAPE_ROWS["mixinstruct"] | {"candidates": ["just text"]}])
    with pytest.raises(DataError, match=r"mix\.jsonl:1: example 'unified_chip2/69962'\.candidates\[0\] must be a dict"):
        data.load_local(path)


def test_mix_instruct_arrow_struct_gaps_are_restored() -> None:
    # Arrow unifies the candidates' score dicts: a score that one candidate lacks comes back as None.
    dataset = datasets.Dataset.from_list(HUB_ROWS["llm-blender/mix-instruct"])
    assert dataset[0]["candidates"][1]["scores"] == {"bleu": 1.0}  # same key set here, so craft a gap:
    row = dataset[0]
    row["candidates"][1]["scores"] = {"bleu": 1.0, "bleurt": None}
    (example,), _ = data.examples_from_rows([row], "mixinstruct")
    assert example["candidates"][1]["scores"] == {"bleu": 1.0}


def test_load_hf_passes_the_source_defaults_to_load_dataset(monkeypatch) -> None:
    calls = []

    def fake_load_dataset(dataset_id, split, **kwargs):
        calls.append((dataset_id, split, kwargs))
        return datasets.Dataset.from_list(HUB_ROWS[dataset_id])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = data.load_hf("anon8231489123/ShareGPT_Vicuna_unfiltered", split="train[:10]")
    assert calls == [
        (
            "anon8231489123/ShareGPT_Vicuna_unfiltered",
            "train[:10]",
            {"data_files": "ShareGPT_V3_unfiltered_cleaned_split.json"},
        )
    ]
    assert examples[0]["id"] == "sharegpt/abc"


def test_load_hf_unknown_id_lists_known_ids() -> None:
    with pytest.raises(
        DataError, match=r"no built-in field mapping for the dataset 'someone/data'.*databricks/databricks-dolly-15k"
    ):
        data.load_hf("someone/data")
    with pytest.raises(DataError, match="unknown shape 'csv'"):
        data.load_hf("someone/data", shape="csv")


def test_load_hf_without_network_says_so() -> None:
    with pytest.raises(DataError, match=r"could not load 'vicgalle/alpaca-gpt4'.*needs internet"):
        data.load_hf("vicgalle/alpaca-gpt4", split="train[:5]")


# --------------------------------------------------------------------------------------------
# cleaning


def test_deduplicate_on_normalised_instruction_and_input(make_example) -> None:
    a = make_example("a", instruction="What is  AI?")
    b = make_example("b", instruction="what is ai? ")
    c = make_example("c", instruction="What is AI?", input="In one line.")
    kept, removed = data.deduplicate([a, b, c])
    assert [ex["id"] for ex in kept] == ["a", "c"] and removed == 1


def test_filter_by_length_reports_each_skip(make_example) -> None:
    short = make_example("short", output="Yes.")
    long_prompt = make_example("long_prompt", instruction="word " * 30)
    long_output = make_example("long_output", output="word " * 50)
    ok = make_example("ok", output="Paris is the capital.")
    kept, skipped = data.filter_by_length(
        [short, long_prompt, long_output, ok], max_instruction_words=20, max_output_words=40, min_output_words=2
    )
    assert [ex["id"] for ex in kept] == ["ok"]
    assert dict(skipped) == {
        "short": "output has 1 words < min_output_words=2",
        "long_prompt": "instruction+input has 30 words > max_instruction_words=20",
        "long_output": "output has 50 words > max_output_words=40",
    }
    assert data.filter_by_length([short, long_output])[0] == [short, long_output]  # no limits given
    with pytest.raises(ValueError, match="max_output_words must be a non-negative integer"):
        data.filter_by_length([ok], max_output_words=-1)


# --------------------------------------------------------------------------------------------
# splits


@pytest.fixture(scope="module")
def seed_examples() -> list[dict]:
    return data.load_seed_instructions()


def test_default_split_sizes_are_disjoint_and_stratified(seed_examples) -> None:
    splits = data.split_examples(seed_examples, seed=0)
    assert {name: len(part) for name, part in splits.items()} == {"train": 300, "val": 30, "test": 70}
    ids = [ex["id"] for part in splits.values() for ex in part]
    assert len(ids) == len(set(ids))
    # 420 seeds = 42 per category: every category gets 7 +- 1 of the 70 test examples.
    test_counts = Counter(ex["tags"][0] for ex in splits["test"])
    assert len(test_counts) == 10 and all(6 <= n <= 8 for n in test_counts.values()), test_counts


def test_split_is_seeded(seed_examples) -> None:
    first = data.split_examples(seed_examples, seed=1)
    again = data.split_examples(list(seed_examples), seed=1)
    other = data.split_examples(seed_examples, seed=2)
    assert first == again and first["test"] != other["test"]


def test_split_is_the_same_under_any_hash_seed() -> None:
    script = (
        "from blender_lib import data; s = data.split_examples(data.load_seed_instructions(), seed=3); "
        "print(','.join(ex['id'] for ex in s['test']))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": hash_seed},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1 and len(next(iter(outputs)).split(",")) == 70


def test_split_fractions_use_every_example(seed_examples) -> None:
    splits = data.split_examples(seed_examples[:101], {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    assert sum(len(p) for p in splits.values()) == 101 and len(splits["train"]) == 81


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"train": 400, "test": 100}, "need 500 examples but only 420"),
        ({"train": 0.8, "test": 0.3}, "fractions sum to 1.1000 > 1"),
        ({"train": 300, "test": 0.1}, "all counts .* or all fractions"),
        ({"train": -1}, "non-negative number"),
        ({"train/x": 10}, "letters, digits or underscores"),
    ],
)
def test_bad_split_sizes(seed_examples, sizes, message) -> None:
    with pytest.raises(ValueError, match=message):
        data.split_examples(seed_examples, sizes)


# --------------------------------------------------------------------------------------------
# save / load and the analysis table


def _scored_splits(make_example) -> dict[str, list[dict]]:
    scored = make_example("t1", cmp_results={"model-a,model-b": "Same good"})
    scored["candidates"][0]["scores"] = {"bleu": 10.0, "rougeL": 0.25}
    scored["candidates"][1]["scores"] = {"bleu": 3.0}
    question = make_example("q1", output="", has_reference=False, candidates=[], meta={"question_id": 7})
    return {"train": [scored], "test": [question, make_example("t2")]}


def test_save_and_load_splits_round_trip(tmp_path: Path, make_example) -> None:
    splits = _scored_splits(make_example)
    data.save_splits(splits, tmp_path / "mini")
    assert sorted(p.name for p in (tmp_path / "mini").iterdir()) == ["hf", "splits.json", "test.jsonl", "train.jsonl"]
    assert data.load_splits(tmp_path / "mini") == splits
    hf = datasets.load_from_disk(str(tmp_path / "mini" / "hf"))
    assert set(hf) == {"train", "test"} and hf["test"].num_rows == 2
    assert json.loads(hf["train"][0]["cmp_results"]) == {"model-a,model-b": "Same good"}
    assert hf["test"][0]["has_reference"] is False and json.loads(hf["test"][0]["meta"]) == {"question_id": 7}
    data.save_splits(splits, tmp_path / "mini")  # saving again replaces the copy cleanly
    assert data.load_splits(tmp_path / "mini") == splits


def test_load_splits_detects_a_truncated_file(tmp_path: Path, make_example) -> None:
    data.save_splits(_scored_splits(make_example), tmp_path)
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(test_file.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl holds 1 examples but splits\.json says 2"):
        data.load_splits(tmp_path)
    with pytest.raises(DataError, match="no splits found"):
        data.load_splits(tmp_path / "empty")


def test_save_splits_rejects_a_leak_between_splits_and_invalid_examples(tmp_path: Path, make_example) -> None:
    with pytest.raises(DataError, match="'x' is in both split 'train' and 'test'"):
        data.save_splits({"train": [make_example("x")], "test": [make_example("x")]}, tmp_path)
    with pytest.raises(DataError, match="instruction is empty"):
        data.save_splits({"train": [make_example(instruction="")]}, tmp_path)
    assert not (tmp_path / "train.jsonl").exists()


def test_to_dataframe_has_one_row_per_candidate(make_example) -> None:
    splits = _scored_splits(make_example)
    frame = data.to_dataframe(splits["train"] + splits["test"])
    assert len(frame) == 4  # 2 + 0 + 2 candidates
    first = frame.iloc[0]
    assert (first["id"], first["model"], first["bleu"], first["rougeL"]) == ("t1", "model-a", 10.0, 0.25)
    assert first["text_words"] == 3 and first["text_chars"] == len("Answer from model-a.")
    assert list(data.to_dataframe([])).count("model") == 1


def test_seeded_rows_are_a_fixed_sorted_subset_or_everything():
    from blender_lib.data import seeded_rows

    rows = seeded_rows(10, 4, seed=3)
    assert rows == sorted(rows) and len(set(rows)) == 4 and rows == seeded_rows(10, 4, seed=3)
    assert rows != seeded_rows(10, 4, seed=4)
    assert seeded_rows(5, None) == seeded_rows(5, 5) == seeded_rows(5, 9) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="k must be a positive integer or None"):
        seeded_rows(5, 0)
