"""GPT-Rank: prompt, reply parsing, order debiasing, ranks, a real in-process judge and a real local server."""

from __future__ import annotations

import numpy as np
import pytest

from blender_lib import judge as J
from blender_lib.io import JsonlCache
from blender_lib.models import load_model, resolve_model_path


@pytest.mark.parametrize(
    "reply, label",
    [
        ("1. A is better", "A is better"),
        ("2. B is better", "B is better"),
        ("Answer: Same good", "Same good"),
        ("4. same bad", "Same bad"),
        ("3", "Same good"),
        ("B.", "B is better"),
        ("", None),
        ("I cannot decide.", None),
        ("A is better... no, B is better", None),  # two labels: ambiguous, never guessed
        ('{"truncated": ', None),
    ],
)
def test_parse_verdict(reply, label):
    assert J.parse_verdict(reply) == label


def test_prompt_rejects_empty_texts():
    assert "Candidate A: x" in J.judge_prompt("Do it", "", "x", "y")
    with pytest.raises(J.JudgeError, match="candidate B"):
        J.judge_prompt("Do it", "", "x", "  ")


def test_combining_both_orders_removes_position_bias():
    # The judge always prefers the first position: the two orders cancel into a tie.
    assert J.combine_verdicts("A is better", "A is better") == "Same good"
    # Consistent verdicts survive mirroring.
    assert J.combine_verdicts("A is better", "B is better") == "A is better"
    assert J.combine_verdicts("Same bad", "Same bad") == "Same bad"
    assert J.combine_verdicts(None, "B is better") == "A is better"
    assert J.combine_verdicts(None, None) is None


def test_gpt_rank_matrix_scores_and_shared_ranks():
    models = ["a", "b", "c"]
    cmp = {"a,b": "A is better", "a,c": "Same good", "b,c": "Same bad"}
    m = J.comparison_matrix(cmp, models)
    assert m[0, 1] == 1 and m[1, 0] == -1 and m[0, 2] == m[2, 0] == 0.5 and m[1, 2] == m[2, 1] == -0.5
    np.testing.assert_allclose(J.gpt_rank_scores(cmp, models), [1.5, -1.5, 0.0])
    assert list(J.ranks_from_scores(np.array([2.0, 2.0, 1.0, 0.0]))) == [1, 1, 3, 4]  # ties share the better rank
    with pytest.raises(J.JudgeError, match="not a candidate"):
        J.comparison_matrix({"a,z": "A is better"}, models)
    with pytest.raises(J.JudgeError, match="unknown comparison label"):
        J.comparison_matrix({"a,b": "A wins"}, models)


def _example(make_example, texts):
    return make_example("q1", models=["m1", "m2", "m3"], texts=texts)


def test_fewer_than_two_candidates_is_an_error(make_example, tmp_path):
    ex = make_example("solo", models=["m1"], texts=["only"])
    with pytest.raises(J.JudgeError, match="at least 2"):
        J.judge_examples([ex], J.LogProbJudge.__new__(J.LogProbJudge), JsonlCache.open(tmp_path / "j.jsonl"))


@pytest.mark.slow
def test_logprob_judge_judges_both_orders_and_resumes_from_cache(make_example, tmp_path):
    judge = J.LogProbJudge(load_model("smollm2-135m-instruct", device="cpu", dtype="bf16"), batch_size=4)
    ex = _example(make_example, ["Paris is the capital of France.", "I like turtles.", "Paris."])
    cache = JsonlCache.open(tmp_path / "judge.jsonl")
    stats = J.judge_examples([ex], judge, cache, progress=False)
    assert stats.requests == 6 and stats.from_cache == 0 and stats.unparseable == 0
    assert set(ex["cmp_results"]) == {"m1,m2", "m1,m3", "m2,m3"} and len(ex["cmp_results_raw"]) == 6
    assert set(ex["cmp_results"].values()) <= set(J.LABELS)
    again = _example(make_example, ["Paris is the capital of France.", "I like turtles.", "Paris."])
    stats = J.judge_examples([again], judge, JsonlCache.open(tmp_path / "judge.jsonl"), progress=False)
    assert stats.from_cache == 6 and again["cmp_results"] == ex["cmp_results"]
    assert sorted(J.gpt_ranks(ex).values())[0] == 1


@pytest.mark.slow
def test_local_server_binds_loopback_answers_and_always_stops(make_example, tmp_path):
    folder, _ = resolve_model_path("smollm2-135m-instruct")
    server = J.LocalJudgeServer(folder)
    with pytest.raises(RuntimeError, match="boom"):
        with server:
            assert server.base_url.startswith("http://127.0.0.1:")
            judge = J.OpenAIJudge(folder, base_url=server.base_url, max_tokens=4, max_concurrency=1)
            verdicts = judge.judge([J.judge_prompt("What is 2+2?", "", "4", "5")])
            assert len(verdicts) == 1 and isinstance(verdicts[0].raw, str) and not judge.failures
            process = server.process
            raise RuntimeError("boom")  # a failing cell: the server must still stop
    assert process.poll() is not None and server.process is None


def test_reliability_summary_says_noise_below_the_threshold():
    noisy = {"prefers reference (non-answer)": 0.1, "prefers reference (unrelated reference)": 0.15}
    assert "noise" in J.judge_reliability_summary(noisy)
    good = {"prefers reference (non-answer)": 0.95, "prefers reference (unrelated reference)": 0.9}
    assert "can be read as a quality signal" in J.judge_reliability_summary(good)


def test_known_answer_pairs_pit_the_reference_against_wrong_answers(make_example):
    examples = [make_example(f"e{i}", output=f"reference {i}") for i in range(4)]
    pairs = J.known_answer_pairs(examples, n=2, seed=0)
    assert len(pairs) == 4 and {p["kind"] for p in pairs} == {"non-answer", "unrelated reference"}
    for p in pairs:
        reference, wrong = p["candidates"]
        assert reference["text"] == p["output"] and wrong["text"] != p["output"]


def test_logprob_judge_batches_by_length_and_keeps_each_verdict_with_its_prompt():
    """Verdicts come back in the prompts' order although batches are formed by length, and left
    padding (with position ids counting real tokens) leaves each prompt's option log-probabilities
    as if it were judged alone (float32, so the comparison can be tight)."""
    import json

    import torch

    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    prompts = [J.judge_prompt("What is 2+2?", "", "4", "The answer is five, as everyone knows well."),
               J.judge_prompt("Name a colour.", "", "Blue.", "Green."),
               J.judge_prompt("Capital of France?", "Answer in one word.", "Paris", "Lyon is the capital city of "
                              "France and its largest city by far, on the Rhone."),
               J.judge_prompt("Say hi.", "", "hi", "hello")]
    alone = [J.LogProbJudge(loaded, batch_size=1).judge([p])[0] for p in prompts]
    mixed = J.LogProbJudge(loaded, batch_size=3).judge(prompts)
    assert [v.label for v in mixed] == [v.label for v in alone]
    for a, b in zip(alone, mixed):
        np.testing.assert_allclose(json.loads(a.raw)["option_logprobs"], json.loads(b.raw)["option_logprobs"], atol=2e-3)
    # the last-position logits the judge keeps are those of the full forward pass
    judge = J.LogProbJudge(loaded, batch_size=1)
    ids = loaded.tokenizer(judge.render(prompts[1]), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        full = torch.log_softmax(loaded.model(**ids).logits[0, -1].float(), dim=-1)[judge.option_ids]
    np.testing.assert_allclose(full.numpy(), json.loads(alone[1].raw)["option_logprobs"], atol=1e-3)


def test_table2_counts_ties_as_the_paper_did_and_as_the_correction_does():
    from blender_lib import judge as J

    cmp = {"ranker-pick,vicuna-13b-1.1": "Same bad", "oasst-sft-4-pythia-12b-epoch-3.5,ranker-pick": "B is better",
           "vicuna-13b-1.1,oasst-sft-4-pythia-12b-epoch-3.5": "Same good"}
    assert J.at_least_as_good(cmp, "ranker-pick", "vicuna-13b-1.1", "original") == 1.0  # a tie is ">="
    assert J.at_least_as_good(cmp, "ranker-pick", "vicuna-13b-1.1", "corrected") == 0.0  # "Same bad" counts nothing
    assert J.at_least_as_good(cmp, "ranker-pick", "oasst-sft-4-pythia-12b-epoch-3.5") == 1.0  # B is the pick: a win
    assert J.at_least_as_good(cmp, "oasst-sft-4-pythia-12b-epoch-3.5", "vicuna-13b-1.1", "corrected") == 0.5
    assert J.at_least_as_good(cmp, "vicuna-13b-1.1", "vicuna-13b-1.1", "corrected") == 0.5
    assert J.at_least_as_good(cmp, "other", "vicuna-13b-1.1") is None
    models = ["ranker-pick", "vicuna-13b-1.1", "oasst-sft-4-pythia-12b-epoch-3.5"]
    ex = {"candidates": [{"model": m} for m in models], "cmp_results": cmp}
    # GPT-Rank scores: pick -0.5 + 1 = 0.5; vicuna -0.5 + 0.5 = 0; oasst -1 + 0.5 = -0.5 -> ranks 1, 2, 3
    unjudged = {"candidates": ex["candidates"], "cmp_results": {}}
    original = J.table2_row([ex, ex, unjudged], [0, 1, 2])
    assert original == {"GPT-Rank": 1.5, ">= Vic %": 100.0, ">= OA %": 100.0, "Top-1 %": 50.0, "Top-2 %": 100.0,
                        "Top-3 %": 100.0, "judged examples": 2.0}
    corrected = J.table2_row([ex, ex], [0, 1], rule="corrected")
    assert corrected[">= Vic %"] == 25.0 and corrected[">= OA %"] == 75.0  # (0 + 0.5) / 2 and (1 + 0.5) / 2
    with pytest.raises(ValueError, match="rule must be one of"):
        J.at_least_as_good(cmp, "a", "b", "fixed")


def test_table2_judge_columns_show_both_tie_rules_for_the_bases_in_the_pool_only():
    from blender_lib import judge as J

    cmp = {"ranker-pick,vicuna-13b-1.1": "Same bad", "oasst-sft-4-pythia-12b-epoch-3.5,ranker-pick": "B is better",
           "vicuna-13b-1.1,oasst-sft-4-pythia-12b-epoch-3.5": "Same good"}
    models = ["ranker-pick", "vicuna-13b-1.1", "oasst-sft-4-pythia-12b-epoch-3.5"]
    ex = {"candidates": [{"model": m} for m in models], "cmp_results": cmp}
    table = J.table2_judge_columns([ex, ex], {"pick": [0, 0], "vicuna": [1, 1]})
    assert list(table.columns) == ["GPT-Rank", ">= Vic %", ">= Vic % (corrected)", ">= OA %", ">= OA % (corrected)",
                                   "Top-1 %", "Top-2 %", "Top-3 %", "judged examples"]
    assert table.loc["pick", ">= Vic %"] == 100.0 and table.loc["pick", ">= Vic % (corrected)"] == 0.0  # "Same bad"
    assert table.loc["vicuna", ">= Vic % (corrected)"] == 50.0 and table.loc["vicuna", "GPT-Rank"] == 2.0
    # our own pool has neither base: GPT-Rank and Top-k only
    ours = {"candidates": [{"model": "a"}, {"model": "b"}], "cmp_results": {"a,b": "A is better"}}
    assert list(J.table2_judge_columns([ours], {"first": [0]}).columns) == ["GPT-Rank", "Top-1 %", "Top-2 %", "Top-3 %",
                                                                            "judged examples"]


def test_make_judge_names_its_backend_and_refuses_an_unknown_one() -> None:
    from blender_lib.judge import LazyJudge, make_judge

    judge, close = make_judge("openai", "gpt-4o-mini", "http://127.0.0.1:9/v1")
    assert isinstance(judge, LazyJudge) and judge.name == "openai:gpt-4o-mini"  # the name keys the verdict cache
    close()
    with pytest.raises(ValueError, match=r"unknown judge backend 'gpt4'; known: \['logprob', 'served', 'openai'\]"):
        make_judge("gpt4", "x")
