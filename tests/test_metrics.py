"""blender_lib.metrics: each metric's sanity, the log-likelihood arithmetic, and score_candidates."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration, LlamaConfig, LlamaForCausalLM

from blender_lib import metrics
from blender_lib.metrics import MetricError
from blender_lib.models import LoadedModel, resolve_model_path

REFERENCE = "The cat sat on the mat and looked out of the window at the rain."
PARAPHRASE = "The cat was sitting on the mat, looking out of the window at the rain."
UNRELATED = "Quarterly revenue grew by twelve percent thanks to strong cloud sales."


# --------------------------------------------------------------------------------------------
# n-gram metrics


def test_bleu_is_100_for_identical_and_lower_for_unrelated() -> None:
    identical, close, unrelated = metrics.bleu([REFERENCE, PARAPHRASE, UNRELATED], [REFERENCE] * 3)
    assert identical == pytest.approx(100.0)
    assert identical > close > unrelated >= 0.0


def test_rouge_f_measures_with_stemming() -> None:
    identical, unrelated = metrics.rouge([REFERENCE, UNRELATED], [REFERENCE] * 2)
    assert identical == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert all(unrelated[name] < 0.2 for name in metrics.ROUGE_TYPES)
    (stemmed,) = metrics.rouge(["The cats were running"], ["The cat was runs"], rouge_types=["rouge1"])
    assert stemmed["rouge1"] == pytest.approx(0.75)  # the, cat(s), run(ning|s) match once stemmed


@pytest.mark.parametrize("metric", [metrics.bleu, metrics.rouge])
def test_ngram_metrics_reject_bad_pairs(metric) -> None:
    with pytest.raises(MetricError, match="2 hypotheses but 1 references"):
        metric(["a", "b"], ["a"])
    with pytest.raises(MetricError, match="hypothesis 1 is empty"):
        metric(["a", "  "], ["a", "b"])
    with pytest.raises(MetricError, match="reference 0 is empty"):
        metric(["a"], [""])
    with pytest.raises(MetricError, match="hypothesis 0 must be a string, got NoneType"):
        metric([None], ["a"])


def test_rouge_rejects_unsupported_types() -> None:
    with pytest.raises(MetricError, match=r"unsupported type\(s\) \['rouge4'\]"):
        metrics.rouge(["a"], ["a"], rouge_types=["rouge4"])


# --------------------------------------------------------------------------------------------
# BERTScore on the packaged MiniLM


@pytest.fixture(scope="module")
def bertscore() -> metrics.BertScore:
    return metrics.BertScore(batch_size=8, device="cpu")


def test_bertscore_ranks_identical_over_paraphrase_over_unrelated(bertscore) -> None:
    identical, close, unrelated = bertscore([REFERENCE, PARAPHRASE, UNRELATED], [REFERENCE] * 3)
    assert identical == pytest.approx(1.0, abs=1e-4)
    assert identical > close > unrelated
    assert bertscore.num_layers == 6 and bertscore([], []) == []


def test_bertscore_needs_num_layers_for_an_unknown_encoder(tmp_path) -> None:
    with pytest.raises(MetricError, match="pass num_layers"):
        metrics.BertScore(str(tmp_path))


# --------------------------------------------------------------------------------------------
# log-likelihood score: exact arithmetic on tiny random models, sanity on SmolLM2


@pytest.fixture(scope="module")
def bert_tokenizer():
    folder, _ = resolve_model_path("minilm-l6")
    return AutoTokenizer.from_pretrained(folder)


def _loaded(model, tokenizer, kind: str) -> LoadedModel:
    return LoadedModel(
        name=f"tiny-{kind}", path="", kind=kind, model=model.eval(), tokenizer=tokenizer,
        device=torch.device("cpu"), dtype=torch.float32,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_causal(bert_tokenizer) -> LoadedModel:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bert_tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, pad_token_id=0,
    )  # fmt: skip
    return _loaded(LlamaForCausalLM(config), bert_tokenizer, "causal")


@pytest.fixture(scope="module")
def tiny_seq2seq(bert_tokenizer) -> LoadedModel:
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=bert_tokenizer.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=512, pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=102,
    )  # fmt: skip
    return _loaded(BartForConditionalGeneration(config), bert_tokenizer, "seq2seq")


SOURCES = [
    "a short reference",
    "a much longer reference text with many more words in it than the others",
    "mid size one",
]
TARGETS = ["the first hypothesis is here", "short", "a third hypothesis of middling length"]


def _causal_reference_score(
    loaded: LoadedModel, scorer: metrics.LogLikelihoodScorer, source: str, target: str
) -> float:
    """The same quantity from the model's own loss on one unpadded sequence."""
    context, target_ids = scorer._causal_ids(source, target)
    ids = torch.tensor([context + target_ids])
    labels = torch.tensor([[-100] * len(context) + target_ids])
    with torch.inference_mode():
        return -float(loaded.model(input_ids=ids, labels=labels).loss)


def test_causal_score_is_the_mean_target_log_likelihood_in_any_batch(tiny_causal) -> None:
    scorer = metrics.LogLikelihoodScorer(tiny_causal, batch_size=3)
    batched = scorer(TARGETS, SOURCES)  # hyps, refs: direction ref->hyp scores TARGETS given SOURCES
    expected = [_causal_reference_score(tiny_causal, scorer, s, t) for s, t in zip(SOURCES, TARGETS, strict=True)]
    assert batched == pytest.approx(expected, abs=1e-4)
    assert metrics.LogLikelihoodScorer(tiny_causal, batch_size=1)(TARGETS, SOURCES) == pytest.approx(batched, abs=1e-4)
    reverse = metrics.LogLikelihoodScorer(tiny_causal, direction="hyp->ref")(TARGETS, SOURCES)
    expected_reverse = [
        _causal_reference_score(tiny_causal, scorer, t, s) for s, t in zip(SOURCES, TARGETS, strict=True)
    ]
    assert reverse == pytest.approx(expected_reverse, abs=1e-4)


def test_bf16_model_scores_close_to_fp32(tiny_causal) -> None:
    fp32 = metrics.LogLikelihoodScorer(tiny_causal)(TARGETS, SOURCES)
    bf16_model = copy.deepcopy(tiny_causal.model).to(torch.bfloat16)
    bf16 = _loaded(bf16_model, tiny_causal.tokenizer, "causal")
    assert metrics.LogLikelihoodScorer(bf16)(TARGETS, SOURCES) == pytest.approx(fp32, abs=0.05)


def test_causal_prompt_and_truncation(tiny_causal, bert_tokenizer) -> None:
    scorer = metrics.LogLikelihoodScorer(tiny_causal, max_length=4)
    context, target = scorer._causal_ids("one two three four five six", "alpha beta gamma delta epsilon")
    assert len(target) == 4
    # [CLS] is the tokenizer's leading special token; the source is cut to 4 tokens inside the prompt.
    assert bert_tokenizer.decode(context) == "[CLS] text : one two three four paraphrase :"


def test_seq2seq_score_matches_the_model_loss(tiny_seq2seq) -> None:
    scorer = metrics.LogLikelihoodScorer(tiny_seq2seq, batch_size=2)
    batched = scorer(TARGETS, SOURCES)
    tokenizer = tiny_seq2seq.tokenizer
    for source, target, score in zip(SOURCES, TARGETS, batched, strict=True):
        enc, tgt = tokenizer(source, return_tensors="pt"), tokenizer(target, return_tensors="pt")
        with torch.inference_mode():
            loss = tiny_seq2seq.model(input_ids=enc["input_ids"], labels=tgt["input_ids"]).loss
        assert score == pytest.approx(-float(loss), abs=1e-4)


def test_loglik_rejects_bad_settings(tiny_causal) -> None:
    with pytest.raises(MetricError, match="direction must be"):
        metrics.LogLikelihoodScorer(tiny_causal, direction="both")
    with pytest.raises(MetricError, match="exactly once"):
        metrics.LogLikelihoodScorer(tiny_causal, prompt_template="Reference: {reference}")
    with pytest.raises(MetricError, match="2 hypotheses but 1 references"):
        metrics.LogLikelihoodScorer(tiny_causal)(["a", "b"], ["a"])
    encoder = _loaded(torch.nn.Linear(1, 1), None, "encoder")
    with pytest.raises(MetricError, match="needs a causal or seq2seq LM"):
        metrics.LogLikelihoodScorer(encoder)


@pytest.fixture(scope="module")
def smollm_scorer() -> metrics.LogLikelihoodScorer:
    return metrics.LogLikelihoodScorer(device="cpu", batch_size=4)


@pytest.mark.slow
def test_smollm_loglik_prefers_identical_and_paraphrase_over_unrelated(smollm_scorer) -> None:
    identical, close, unrelated = smollm_scorer([REFERENCE, PARAPHRASE, UNRELATED], [REFERENCE] * 3)
    assert all(score <= 0 for score in (identical, close, unrelated))
    assert identical > close > unrelated


# --------------------------------------------------------------------------------------------
# BLEURT


@pytest.mark.skipif(importlib.util.find_spec("bleurt") is not None, reason="bleurt is installed here")
def test_bleurt_refuses_clearly_when_unavailable(make_example) -> None:
    with pytest.raises(
        metrics.MetricUnavailableError, match=r"BLEURT is not available.*bleurt-pytorch.*evaluate\.load"
    ):
        metrics.Bleurt()
    examples = [make_example()]
    before = copy.deepcopy(examples)
    with pytest.raises(metrics.MetricUnavailableError):
        metrics.score_candidates(examples, ("bleu", "bleurt"), progress=False)
    assert examples == before  # nothing was written


# --------------------------------------------------------------------------------------------
# score_candidates


def _examples(make_example) -> list[dict]:
    return [
        make_example(
            "e1", models=("copy", "para", "other"), texts=(REFERENCE, PARAPHRASE, UNRELATED), output=REFERENCE
        ),
        make_example(
            "e2",
            models=("copy", "other"),
            texts=("Paris is in France.", "Bananas are yellow."),
            output="Paris is in France.",
        ),
    ]


def test_score_candidates_fills_every_metric_in_place(make_example, bertscore, tiny_causal) -> None:
    examples = _examples(make_example)
    examples[0]["candidates"][0]["scores"] = {"logprobs": -1.0}  # existing scores are kept
    returned = metrics.score_candidates(
        examples, bertscore=bertscore, loglik=metrics.LogLikelihoodScorer(tiny_causal), progress=False
    )
    assert returned is examples
    for ex in examples:
        for cand in ex["candidates"]:
            assert set(metrics.DEFAULT_METRICS) <= set(cand["scores"])
    assert examples[0]["candidates"][0]["scores"]["logprobs"] == -1.0
    assert examples[1]["candidates"][0]["scores"]["bleu"] == pytest.approx(100.0)


@pytest.mark.slow
def test_every_default_metric_scores_a_copy_above_an_unrelated_answer(make_example, bertscore, smollm_scorer) -> None:
    examples = metrics.score_candidates(
        _examples(make_example), bertscore=bertscore, loglik=smollm_scorer, progress=False
    )
    for ex in examples:
        copy_scores, other_scores = ex["candidates"][0]["scores"], ex["candidates"][-1]["scores"]
        for name in metrics.DEFAULT_METRICS:
            assert copy_scores[name] > other_scores[name], (ex["id"], name)


def test_score_candidates_names_the_example_and_model_of_an_empty_candidate(make_example) -> None:
    examples = [make_example("e9", texts=("fine", " "))]
    with pytest.raises(MetricError, match=r"example 'e9': the candidate of model 'model-b' has an empty text"):
        metrics.score_candidates(examples, ("bleu",), progress=False)


def test_score_candidates_needs_a_reference(make_example) -> None:
    question = make_example("q", output="", has_reference=False)
    with pytest.raises(MetricError, match=r"example 'q' has no reference"):
        metrics.score_candidates([question], ("rouge1",), progress=False)


def test_score_candidates_rejects_unknown_metrics_and_a_bare_string(make_example) -> None:
    with pytest.raises(MetricError, match=r"unknown metric\(s\) \['meteor'\]"):
        metrics.score_candidates([make_example()], ("bleu", "meteor"), progress=False)
    with pytest.raises(MetricError, match="got the string 'bleu'"):
        metrics.score_candidates([make_example()], "bleu", progress=False)


def test_a_scorer_returning_the_wrong_number_of_scores_writes_nothing(make_example) -> None:
    examples = _examples(make_example)
    before = copy.deepcopy(examples)
    with pytest.raises(MetricError, match=r"bertscore: the scorer returned 1 scores for 5 candidates"):
        metrics.score_candidates(examples, ("bleu", "bertscore"), bertscore=lambda h, r: [0.5], progress=False)
    assert examples == before


# --------------------------------------------------------------------------------------------
# score_with_cache: the build's scoring, computing only what its disk cache lacks


def test_score_with_cache_computes_only_missing_triples_and_keys_models_into_the_cache(make_example, tmp_path) -> None:
    from blender_lib.io import JsonlCache

    settings = metrics.MetricSettings(("bleu", "rougeL"))
    assert settings.metric_id("bertscore") == "bertscore:minilm-l6"  # the key older caches were written with
    assert settings.metric_id("bartscore") == "bartscore:smollm2-135m-instruct:ref->hyp"
    examples = [make_example("a", texts=["Paris is the capital of France.", "Lyon."])]
    cache = JsonlCache.open(tmp_path / "scores.jsonl")
    computed, _ = metrics.score_with_cache(examples, settings, cache)
    assert computed == 4
    scores = [dict(c["scores"]) for c in examples[0]["candidates"]]
    assert scores[0]["bleu"] == pytest.approx(100.0) and scores[0]["rougeL"] == pytest.approx(1.0)
    fresh = [make_example("a", texts=["Paris is the capital of France.", "Lyon."])]
    again, _ = metrics.score_with_cache(fresh, settings, JsonlCache.open(tmp_path / "scores.jsonl"))
    assert again == 0 and [c["scores"] for c in fresh[0]["candidates"]] == scores  # read back, not recomputed
    assert metrics.score_candidates(fresh, ("bleu", "rougeL"), progress=False)[0]["candidates"][1]["scores"] == \
        pytest.approx(scores[1])  # the in-memory path gives the same numbers
    with pytest.raises(metrics.MetricError, match="'bleurt' is not supported by the build"):
        metrics.score_with_cache(fresh, metrics.MetricSettings(("bleurt",)), cache)
