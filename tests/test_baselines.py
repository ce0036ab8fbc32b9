"""Baseline selectors: random, best single, oracles, MLM-scoring, SimCLS, SummaReranker, reward models.

Models built here are *locally built test models*: tiny randomly initialised BERT / DeBERTa-v2
networks with a word-level vocabulary written by the test, so training and scoring take
milliseconds. SmolLM2 (the packaged offline LM) checks the causal paths.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_lib import examples as E
from blender_lib import rerankers as RR
from blender_lib import selectors as S
from blender_lib import training as T
from conftest import BAD_ANSWERS, FACTS, overlap_example, save_tiny_models

QUESTION = "What is the capital of France?"

example = overlap_example


def synthetic() -> list[dict]:
    """Good, partial and bad candidates; the good one is not always first."""
    out = []
    for n, (question, reference) in enumerate(FACTS[:10]):
        words = reference.split()
        texts = [reference.capitalize() + ".", " ".join(words[: len(words) // 2]), *BAD_ANSWERS]
        shift = n % len(texts)
        out.append(example(f"ex-{n}", question, reference, texts[shift:] + texts[:shift]))
    return out


# --------------------------------------------------------------------------------------------
# locally built tiny test models


def vocab_words() -> list[str]:
    words = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", "'"}
    for question, reference in FACTS:
        words.update(question.lower().replace("?", " ").split())
        words.update(reference.split())
    for text in BAD_ANSWERS + ["I don't know.", "Paris.", "Lyon is a city."]:
        words.update(text.lower().replace(".", " ").replace("'", " ").split())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return specials + sorted(words - set(specials))


def tiny_tokenizer():
    from transformers import BertTokenizerFast

    words = vocab_words()
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Three locally built test models: a BERT encoder, a BERT masked LM, a DeBERTa-v2 reward model."""
    return save_tiny_models(tmp_path_factory.mktemp("tiny"), vocab_words(), ("encoder", "mlm", "reward"))


# --------------------------------------------------------------------------------------------
# checks shared by every selector


def test_bad_inputs_are_clear_errors_naming_the_example():
    good = synthetic()[:2]
    empty_candidate = json.loads(json.dumps(good))
    empty_candidate[1]["candidates"][2]["text"] = "  "
    with pytest.raises(ValueError, match=r"example 'ex-1': candidate 2 \(m2\) is empty"):
        S.random_scores(empty_candidate)
    no_instruction = json.loads(json.dumps(good))
    no_instruction[0]["instruction"] = ""
    with pytest.raises(ValueError, match="'ex-0': the instruction is empty"):
        S.oracle_scores(no_instruction, "bleu")
    no_candidates = json.loads(json.dumps(good))
    no_candidates[0]["candidates"] = []
    with pytest.raises(ValueError, match="'ex-0' has no candidates"):
        S.single_model_scores(no_candidates, "m0")
    with pytest.raises(ValueError, match="not one example"):
        S.random_scores(good[0])


def test_unknown_metric_names_the_known_ones_and_gpt_rank_needs_verdicts():
    examples = synthetic()[:2]
    with pytest.raises(ValueError, match=r"unknown metric 'rogueL'.*\['bleu', 'rougeL'\]"):
        S.oracle_scores(examples, "rogueL")
    with pytest.raises(ValueError, match="unknown metric"):
        S.best_single_model(examples, by="bertscore")
    with pytest.raises(ValueError, match="no judge verdicts"):
        S.oracle_scores(examples, "gpt_rank")


def test_one_candidate_is_scored_like_any_other():
    single = [example("one", QUESTION, "paris", ["Paris."])]
    for scores in (S.random_scores(single), S.oracle_scores(single, "bleu"), S.single_model_scores(single, "m0")):
        assert len(scores) == 1 and scores[0].shape == (1,) and np.isfinite(scores[0]).all()
    assert E.metric_quality(single[0], ["bleu"]).tolist() == [1.0]
    assert S.evaluate_selection(single, S.random_scores(single), ["bleu"])["top1_mean_metric_rank"] == 1.0


# --------------------------------------------------------------------------------------------
# random, best single model, oracles, evaluation


def test_random_scores_are_seeded_per_example_id():
    examples = synthetic()
    a, b = S.random_scores(examples, seed=3), S.random_scores(examples, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = S.random_scores(examples, seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other))
    subset = S.random_scores(examples[5:1:-1], seed=3)  # other company, other order: same draws per id
    assert all(np.array_equal(x, a[k]) for x, k in zip(subset, range(5, 1, -1)))
    many = [dict(ex, id=f"{ex['id']}-{k}") for k in range(10) for ex in examples]
    picks = [int(np.argmax(s)) for s in S.random_scores(many, seed=0)]
    assert set(picks) == {0, 1, 2, 3}  # every position gets picked


def test_oracle_picks_the_metric_argmax_and_gpt_rank_picks_the_judged_best():
    examples = synthetic()
    for metric in ("bleu", "rougeL"):
        scores = S.oracle_scores(examples, metric)
        for ex, s in zip(examples, scores):
            values = [c["scores"][metric] for c in ex["candidates"]]
            assert values[int(np.argmax(s))] == max(values)
        assert S.evaluate_selection(examples, scores, [metric])["top1_mean_metric_rank"] == 1.0
    judged = example("j", QUESTION, "paris", ["A", "B", "C"], models=["x", "y", "z"],
                     cmp_results={"x,y": "B is better", "x,z": "Same bad", "y,z": "A is better"})
    ranks = S.oracle_scores([judged], "gpt_rank")[0]
    assert ranks.tolist() == [-2.0, -1.0, -2.0]  # y beats both; x and z both score -1.5 and share rank 2
    result = S.evaluate_selection([judged], [np.array([0.0, 1.0, 0.0])], ["gpt_rank"])
    assert result["top1_gpt_rank"] == 1.0  # reported as a rank, lower = better


def test_best_single_model_is_chosen_on_the_examples_given_not_on_test():
    models = ["alpha", "beta"]
    val = [example(f"v{n}", q, r, [r, "no idea"], models=models) for n, (q, r) in enumerate(FACTS[:3])]
    test = [example(f"t{n}", q, r, ["no idea", r], models=models) for n, (q, r) in enumerate(FACTS[3:6])]
    assert S.best_single_model(val, by="rougeL") == "alpha"
    assert S.best_single_model(test, by="rougeL") == "beta"
    chosen = S.single_model_scores(test, S.best_single_model(val, by="rougeL"))
    assert [int(np.argmax(s)) for s in chosen] == [0, 0, 0] and all(s.sum() == 1 for s in chosen)
    assert S.model_means(val, "rougeL")["alpha"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no candidate of model 'gamma'"):
        S.single_model_scores(test, "gamma")
    with pytest.raises(ValueError, match="needs validation examples"):
        S.best_single_model([], by="bleu")


def test_best_single_model_by_gpt_rank_takes_the_lowest_mean_rank():
    verdicts = {"x,y": "B is better", "x,z": "A is better", "y,z": "A is better"}
    val = [example(f"v{n}", QUESTION, "paris", ["a", "b", "c"], models=["x", "y", "z"], cmp_results=verdicts)
           for n in range(2)]
    assert S.model_means(val, "gpt_rank") == {"x": 2.0, "y": 1.0, "z": 3.0}
    assert S.best_single_model(val, by="gpt_rank") == "y"


def test_metric_quality_is_scale_free_and_averages_ties():
    ex = example("q", QUESTION, "paris", ["a", "b", "c"])
    for cand, (bleu, rouge) in zip(ex["candidates"], [(90.0, 0.1), (10.0, 0.3), (10.0, 0.2)]):
        cand["scores"] = {"bleu": bleu, "rougeL": rouge}
    # bleu ranks (worst = 1): 3, 1.5, 1.5 -> 1, .25, .25 ; rougeL: 1, 3, 2 -> 0, 1, .5
    assert E.metric_quality(ex, ["bleu", "rougeL"]) == pytest.approx([0.5, 0.625, 0.375])


def test_evaluate_selection_reports_the_top1_and_checks_shapes():
    examples = synthetic()[:3]
    worst = [-E.metric_values(ex, "rougeL") for ex in examples]
    result = S.evaluate_selection(examples, worst, ["rougeL"])
    assert result["top1_rougeL"] == pytest.approx(np.mean([min(E.metric_values(ex, "rougeL")) for ex in examples]))
    with pytest.raises(ValueError, match="scores for 2 examples but 3"):
        S.evaluate_selection(examples, worst[:2], ["rougeL"])
    with pytest.raises(ValueError, match="has 4 candidates but its scores have shape"):
        S.evaluate_selection(examples, [np.zeros(3)] * 3, ["rougeL"])


# --------------------------------------------------------------------------------------------
# losses and labels


def slow_simcls_loss(cos, quality, margin, gold=None, gold_weight=1.0):
    """Σ_{i<j} max(0, cos_j - cos_i + (j - i) margin) over candidates sorted best first, with loops."""
    order = sorted(range(len(cos)), key=lambda k: -quality[k])
    total = 0.0
    for i in range(len(cos)):
        for j in range(i + 1, len(cos)):
            if quality[order[i]] > quality[order[j]]:  # a tie carries no order
                total += max(0.0, cos[order[j]] - cos[order[i]] + (j - i) * margin)
    if gold is not None:
        total += gold_weight * np.mean([max(0.0, c - gold) for c in cos])
    return total


def test_simcls_loss_matches_a_loop_over_ranked_pairs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cos, quality = rng.uniform(-1, 1, 6), rng.choice([0.1, 0.4, 0.4, 0.7, 0.9, 1.0], 6)  # includes a tie
        got = RR.simcls_loss(torch.tensor(cos), torch.tensor(quality), 0.05, gold_cos=torch.tensor(0.3))
        assert got.item() == pytest.approx(slow_simcls_loss(cos, quality, 0.05, gold=0.3))
    ordered = torch.tensor([0.9, 0.5, 0.1])  # best first, gaps far above the margins: no loss
    assert RR.simcls_loss(ordered, torch.tensor([3.0, 2.0, 1.0]), 0.01).item() == 0.0
    assert RR.simcls_loss(ordered.flip(0), torch.tensor([3.0, 2.0, 1.0]), 0.01).item() == pytest.approx(
        0.41 + 0.82 + 0.41)  # reversed: every pair pays its gap plus its margin
    assert RR.simcls_loss(ordered, torch.tensor([1.0, 1.0, 1.0]), 0.01).item() == 0.0  # all tied: no order


def test_top_labels_mark_every_tied_best():
    table = np.array([[1.0, 0.2], [3.0, 0.2], [3.0, 0.1]])
    assert RR.top_labels(table).tolist() == [[0, 1], [1, 1], [1, 0]]


def test_sub_sampling_keeps_the_best_and_draws_the_rest_with_the_seed():
    quality = np.array([0.2, 0.9, 0.5, 0.1, 0.9, 0.4])
    draws = [RR.sub_sample(quality, 3, np.random.default_rng([0, e])) for e in range(20)]
    assert all(len(d) == 3 and 1 in d and d == sorted(d) for d in draws)  # the first of the tied best
    assert len({tuple(d) for d in draws}) > 3  # the others vary with the epoch
    assert RR.sub_sample(quality, 3, np.random.default_rng([0, 5])) == draws[5]
    assert RR.sub_sample(quality, None, np.random.default_rng(0)) == list(range(6))
    assert RR.sub_sample(quality[:2], 3, np.random.default_rng(0)) == [0, 1]
    with pytest.raises(ValueError, match="train_candidates must be >= 2"):
        RR.SimCLSConfig(train_candidates=1)


def test_configs_validate_and_keys_tell_the_kinds_apart():
    with pytest.raises(ValueError, match=r"unknown SimCLSConfig parameter\(s\) \['learning_rate'\]"):
        RR.SimCLSConfig.from_dict({"learning_rate": 1e-5})
    with pytest.raises(ValueError, match="metrics"):
        RR.SummaRerankerConfig(metrics=())
    assert RR.SimCLSConfig.from_dict({"metrics": ["bleu"]}).metrics == ("bleu",)
    shared = {"metrics": ("bleu",), "epochs": 1}
    assert RR.SimCLSConfig(**shared).key() != RR.SummaRerankerConfig(**shared).key()
    cfg = RR.SimCLSConfig()
    assert cfg.key(ignore=("epochs",)) == replace(cfg, epochs=5).key(ignore=("epochs",)) and cfg.key() != replace(
        cfg, epochs=5).key()
    folder = RR.cache_folder(cfg, synthetic())
    assert folder.name.startswith("simcls-") and folder == RR.cache_folder(replace(cfg, epochs=9), synthetic())
    assert folder != RR.cache_folder(cfg, synthetic()[:5])
    assert folder != RR.cache_folder(cfg, synthetic(), synthetic()[:2])  # validation picks the best epoch
    assert folder.parent == RR.cache_dir() / "baselines"


# --------------------------------------------------------------------------------------------
# MLM-scoring: the real pseudo-log-likelihood on a locally built masked LM


def slow_pll(model, tokenizer, text: str) -> np.ndarray:
    """One forward per masked token, no batching: Salazar et al.'s definition, token by token."""
    ids = tokenizer(text)["input_ids"]
    out = []
    for t in range(1, len(ids) - 1):  # [CLS] and [SEP] are not scored
        masked = list(ids)
        masked[t] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0, t]
        out.append(torch.log_softmax(logits, -1)[ids[t]].item())
    return np.array(out)


def test_pseudo_log_likelihood_equals_a_slow_token_by_token_loop(tiny_dirs):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    texts = ["Paris is the capital of France.", "I don't know.", "Paris."]
    scorer = RR.PseudoLogLikelihoodScorer(str(tiny_dirs["mlm"]), length_normalized=False, batch_size=5, device="cpu")
    assert scorer.mode == "mlm" and "pseudo-log-likelihood" in scorer.label
    model = AutoModelForMaskedLM.from_pretrained(tiny_dirs["mlm"]).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dirs["mlm"])
    slow = [slow_pll(model, tok, t) for t in texts]
    got = scorer.score([QUESTION, QUESTION], [texts[:2], texts[2:]])
    assert np.allclose(np.concatenate(got), [s.sum() for s in slow], atol=1e-4)
    mean = RR.PseudoLogLikelihoodScorer(str(tiny_dirs["mlm"]), batch_size=1, device="cpu")
    assert np.allclose(mean.score([QUESTION], [texts])[0], [s.mean() for s in slow], atol=1e-4)
    short = RR.PseudoLogLikelihoodScorer(str(tiny_dirs["mlm"]), length_normalized=False, max_length=2, device="cpu")
    assert short.score([QUESTION], [texts[:1]])[0][0] != pytest.approx(got[0][0])  # truncated to 2 tokens


def test_an_encoder_without_its_mlm_head_is_refused():
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        RR.PseudoLogLikelihoodScorer("minilm-l6", device="cpu")


# --------------------------------------------------------------------------------------------
# causal stand-ins on SmolLM2 (the packaged offline instruct LM)


@pytest.fixture(scope="module")
def smollm2():
    from blender_lib.models import load_model

    return load_model("smollm2-135m-instruct", device="cpu", dtype="float32")


def slow_target_logprobs(loaded, context: list[int], target: list[int]) -> np.ndarray:
    ids = torch.tensor([context + target])
    with torch.no_grad():
        log_probs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), -1)
    return np.array([log_probs[len(context) + k - 1, t].item() for k, t in enumerate(target)])


@pytest.mark.slow
def test_causal_lm_scoring_is_the_candidate_log_likelihood_and_says_it_is_a_stand_in(smollm2):
    scorer = RR.PseudoLogLikelihoodScorer(smollm2, batch_size=2)
    assert scorer.mode == "causal" and "stand-in for MLM-scoring" in scorer.label
    texts = ["The capital of France is Paris.", "Paris.", "banana the of of purple"]
    got = scorer.score([QUESTION], [texts])[0]
    tok = smollm2.tokenizer
    start = [tok.eos_token_id] if tok.bos_token_id is None else [tok.bos_token_id]
    slow = [slow_target_logprobs(smollm2, start, tok(t, add_special_tokens=False)["input_ids"]).mean() for t in texts]
    assert np.allclose(got, slow, atol=1e-4)
    assert got[0] > got[2]  # fluent text is likelier than word salad


@pytest.mark.slow
def test_lm_reward_scores_the_answer_given_the_chat_prompt(smollm2):
    scorer = RR.LMRewardScorer(smollm2, batch_size=4)
    assert "stand-in for a reward model" in scorer.label
    answers = ["The capital of France is Paris.", "Bananas are yellow fruits that grow in bunches."]
    got = scorer.score([QUESTION], [answers])[0]
    context = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                                    add_generation_prompt=True, tokenize=True)["input_ids"]
    slow = [slow_target_logprobs(smollm2, list(context), smollm2.tokenizer(a, add_special_tokens=False)["input_ids"])
            .mean() for a in answers]
    assert np.allclose(got, slow, atol=1e-4)
    assert got[0] > got[1]  # the answer to the question is likelier than an unrelated one
    one = scorer([example("e", QUESTION, "paris", answers[:1])])
    assert one[0].shape == (1,) and one[0][0] == pytest.approx(got[0], abs=1e-4)


# --------------------------------------------------------------------------------------------
# a pointwise reward model (a locally built DeBERTa-v2 with one logit)


def test_reward_model_scores_question_answer_pairs(tiny_dirs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    scorer = RR.RewardModelScorer(str(tiny_dirs["reward"]), batch_size=2, device="cpu")
    answers = ["Paris.", "I don't know.", "Lyon is a city."]
    got = scorer.score([QUESTION], [answers])[0]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dirs["reward"]).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dirs["reward"])
    with torch.no_grad():
        direct = [model(**tok(QUESTION, a, return_tensors="pt")).logits[0, 0].item() for a in answers]
    assert np.allclose(got, direct, atol=1e-5)
    assert len(set(np.round(got, 6))) == 3  # a real function of the answer
    examples = [example("e", QUESTION, "paris", answers), example("one", QUESTION, "paris", answers[:1])]
    from_examples = scorer(examples)
    assert np.allclose(from_examples[0], got, atol=1e-5) and from_examples[1].shape == (1,)
    with pytest.raises(ValueError, match="candidate 1 of input 0 is empty"):
        scorer.score([QUESTION], [["Paris.", ""]])


def test_a_classifier_with_two_outputs_is_not_a_reward_model(tiny_dirs, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_dirs["reward"])
    config.num_labels = 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="has 2 outputs; a reward model has one logit"):
        RR.RewardModelScorer(str(tmp_path / "two"), device="cpu")


# --------------------------------------------------------------------------------------------
# trained baselines on a locally built tiny BERT: learning, best-on-val, reload, resume


def tiny_config(cls, tiny_dirs, **overrides):
    values = dict(backbone=str(tiny_dirs["encoder"]), metrics=("bleu", "rougeL"), source_max_length=16,
                  candidate_max_length=16, epochs=1, batch_size=2, lr=3e-3, warmup_ratio=0.0, seed=0, bf16=False,
                  device="cpu")
    return cls(**{**values, **overrides})


def training_loss(model, examples) -> float:
    """The training objective over the given examples, in eval mode (no dropout)."""
    inputs, _ = E.training_inputs(examples, model.config.metrics, what="baseline training")
    items = [model.make_item(i) for i in inputs]
    model.eval()
    with torch.no_grad():
        return float(model(**model.collate([(it, list(range(len(it.quality)))) for it in items])))


@pytest.fixture(scope="module")
def simcls_run(tiny_dirs, tmp_path_factory):
    examples = synthetic()
    train, val = examples[:8], examples[8:]
    config = tiny_config(RR.SimCLSConfig, tiny_dirs)
    out = tmp_path_factory.mktemp("simcls")
    first = RR.train_simcls(train, val, config, out, progress=False)
    second = RR.train_simcls(train, val, replace(config, epochs=3), out, progress=False)
    third = RR.train_simcls(train, val, replace(config, epochs=3), out, progress=False)
    yield {"out": out, "train": train, "val": val, "config": config, "reports": (first, second, third)}
    shutil.rmtree(out, ignore_errors=True)


def test_chunked_encoding_equals_one_padded_pass(tiny_dirs):
    model = RR.SimCLSModel.from_backbone(tiny_config(RR.SimCLSConfig, tiny_dirs)).eval()
    texts = ["paris", "the sky is blue on a clear day", "a spider has eight legs", "honey", "water is made of"]
    batch = model.pad([model._frame(model.tokens(t, 16)) for t in sorted(texts, key=len)])
    with torch.no_grad():
        model.CHUNK = 2
        chunked = model.pooled(batch["input_ids"], batch["attention_mask"])
        model.CHUNK = 100
        whole = model.pooled(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(chunked, whole, atol=1e-5)
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'cls'"):
        RR.SimCLSConfig(pooling="max")


def test_simcls_training_lowers_its_margin_loss_on_the_training_data(simcls_run, tiny_dirs):
    fresh = RR.SimCLSModel.from_backbone(simcls_run["config"])
    trained = RR.SimCLSModel.from_pretrained(simcls_run["out"] / "epoch-3" / "model", device="cpu")
    before, after = training_loss(fresh, simcls_run["train"]), training_loss(trained, simcls_run["train"])
    assert after < 0.5 * before, (before, after)
    again = RR.SimCLSModel.from_backbone(simcls_run["config"])  # the seed fixes the fresh model too
    assert training_loss(again, simcls_run["train"]) == before


def test_simcls_best_epoch_reloads_to_identical_scores(simcls_run):
    report = simcls_run["reports"][1]
    best = RR.SimCLSScorer(report.best_dir, device="cpu")
    val = simcls_run["val"]
    assert S.evaluate_selection(val, best(val), ["bleu", "rougeL"]) == pytest.approx(report.val[report.best_epoch - 1])
    same = RR.SimCLSScorer(simcls_run["out"] / f"epoch-{report.best_epoch}" / "model", device="cpu")
    assert all(np.array_equal(a, b) for a, b in zip(best(val), same(val)))
    ranks = [v["top1_mean_metric_rank"] for v in report.val]
    assert report.best_epoch == 1 + int(np.argmin(ranks))  # best on validation, earlier epoch on a tie
    cos = best.score([QUESTION], [["Paris.", "Paris.", "I don't know."]])[0]
    assert cos[0] == cos[1] and np.all(np.abs(cos) <= 1 + 1e-6)  # identical texts, identical scores


def test_simcls_resumes_after_the_last_completed_epoch(simcls_run):
    first, second, third = simcls_run["reports"]
    assert (first.epochs_completed, first.resumed_from_epoch) == (1, 0)
    assert (second.epochs_completed, second.resumed_from_epoch) == (3, 1)
    assert second.train_loss[0] == first.train_loss[0] and len(second.train_loss) == 3
    assert (third.resumed_from_epoch, third.train_seconds, third.train_loss) == (3, 0.0, second.train_loss)
    names = {p.name for p in simcls_run["out"].iterdir()}
    assert not [n for n in names if n.endswith((".partial", ".old"))]
    assert {"epoch-3", f"epoch-{second.best_epoch}", "best", T.STATE_FILE} == names
    with pytest.raises(ValueError, match="other settings"):
        RR.train_simcls(simcls_run["train"], simcls_run["val"], replace(simcls_run["config"], lr=1e-4),
                       simcls_run["out"], progress=False)


def test_a_simcls_run_is_reproducible_and_a_killed_run_resumes_to_the_same_weights(tiny_dirs, tmp_path, monkeypatch):
    train = synthetic()[:4]
    config = tiny_config(RR.SimCLSConfig, tiny_dirs, epochs=2)
    whole = RR.train_simcls(train, [], config, tmp_path / "whole", progress=False)
    resample = T.Shuffled.resample

    def killed_in_epoch_two(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        resample(self, epoch)

    monkeypatch.setattr(T.Shuffled, "resample", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        RR.train_simcls(train, [], config, tmp_path / "killed", progress=False)
    monkeypatch.setattr(T.Shuffled, "resample", resample)
    resumed = RR.train_simcls(train, [], config, tmp_path / "killed", progress=False)
    assert resumed.resumed_from_epoch == 1 and resumed.train_loss == pytest.approx(whole.train_loss, abs=1e-6)
    a = RR.SimCLSScorer(whole.best_dir, device="cpu")(train)
    b = RR.SimCLSScorer(resumed.best_dir, device="cpu")(train)
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(a, b))


def test_summareranker_learns_which_candidate_is_best_and_reloads(tiny_dirs, tmp_path):
    examples = synthetic()
    train, val = examples[:8], examples[8:]
    config = tiny_config(RR.SummaRerankerConfig, tiny_dirs, epochs=2)
    fresh = RR.SummaRerankerModel.from_backbone(config)
    report = RR.train_summareranker(train, val, config, tmp_path / "sr", progress=False)
    assert report.epochs_completed == 2 and len(report.val) == 2 and report.train_inputs == 8
    trained = RR.SummaRerankerModel.from_pretrained(tmp_path / "sr" / "epoch-2" / "model", device="cpu")
    assert training_loss(trained, train) < training_loss(fresh, train)
    scorer = RR.SummaRerankerScorer(report.best_dir, device="cpu")
    scores = scorer(train)
    assert all(((s > 0) & (s < 1)).all() for s in scores)
    assert S.evaluate_selection(train, scores, ["rougeL"])["top1_mean_metric_rank"] < 2.0  # it learned the good ones
    again = RR.SummaRerankerScorer(RR.SummaRerankerModel.from_pretrained(report.best_dir, device="cpu"))
    assert all(np.array_equal(a, b) for a, b in zip(scores, again(train)))
    with pytest.raises(ValueError, match="holds a 'summareranker' model, not a 'simcls' one"):
        RR.SimCLSScorer(report.best_dir)
    with pytest.raises(TypeError, match="needs a SummaRerankerConfig"):
        RR.train_summareranker(train, val, RR.SimCLSConfig(), tmp_path / "x", progress=False)


def test_train_or_load_trains_once_in_the_folder_keyed_by_both_splits(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    examples = synthetic()
    train, val = examples[:8], examples[8:]
    config = tiny_config(RR.SummaRerankerConfig, tiny_dirs)
    scorer, report = RR.train_or_load(train, val, config, progress=False)
    assert Path(report.best_dir).parent == RR.cache_folder(config, train, val) and report.resumed_from_epoch == 0
    again, loaded = RR.train_or_load(train, val, config, progress=False)
    assert loaded.resumed_from_epoch == 1 and loaded.items_trained == 0  # found finished, nothing retrained
    assert isinstance(again, RR.SummaRerankerScorer)
    assert all(np.array_equal(a, b) for a, b in zip(scorer(val), again(val)))
    RR.train_or_load(train, val[:1], config, progress=False)  # another validation split: another run
    assert len(list((tmp_path / "cache" / "baselines").iterdir())) == 2
    with pytest.raises(TypeError, match="needs a SimCLSConfig or a SummaRerankerConfig"):
        RR.train_or_load(train, val, RR.RerankerConfig(), progress=False)


def test_training_skips_inputs_with_nothing_to_order_and_refuses_empty_data(tiny_dirs, tmp_path):
    config = tiny_config(RR.SimCLSConfig, tiny_dirs)
    dup = example("dup", QUESTION, "paris", ["Paris.", "Paris."])
    with pytest.warns(UserWarning, match="skipped 1 training input.*'dup' has 1 distinct"):
        inputs, skipped = E.training_inputs([*synthetic()[:2], dup], config.metrics, what="baseline training")
    assert (len(inputs), skipped) == (2, 1)
    with pytest.raises(ValueError, match="nothing to learn from"):
        RR.train_simcls([dup], [], config, tmp_path / "none", progress=False)
    with pytest.raises(FileNotFoundError, match="no saved baseline model"):
        RR.SimCLSScorer(tmp_path / "absent")


def test_reward_scorer_picks_the_stand_in_for_a_causal_lm_and_names_an_unknown_model():
    assert isinstance(RR.reward_scorer("smollm2-135m-instruct"), RR.LMRewardScorer)
    with pytest.raises(ValueError, match="unknown reward model 'no-such/reward-model'"):
        RR.reward_scorer("no-such/reward-model")


def test_publishing_the_best_epoch_copies_once_and_redoes_a_stale_or_cut_publish(tmp_path):
    from blender_lib import persistence as P

    for epoch in (1, 2):
        (tmp_path / f"epoch-{epoch}" / "model").mkdir(parents=True)
        (tmp_path / f"epoch-{epoch}" / "model" / "weights.txt").write_text(f"epoch {epoch}")
    best = tmp_path / "best"
    assert P.publish_best(tmp_path, 1, "model") and (best / "weights.txt").read_text() == "epoch 1"
    written = (best / "weights.txt").stat().st_mtime_ns
    assert not P.publish_best(tmp_path, 1, "model")  # loading a finished run writes nothing
    assert (best / "weights.txt").stat().st_mtime_ns == written
    assert P.publish_best(tmp_path, 1, "model", force=True)  # a call that trained publishes again
    assert P.publish_best(tmp_path, 2, "model") and (best / "weights.txt").read_text() == "epoch 2"  # stale
    (best / P.PUBLISHED_FILE).unlink()  # a best/ from before the marker existed, or a cut publish
    assert P.publish_best(tmp_path, 2, "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "epoch-1", "epoch-2"]  # no staging left


def test_selector_ids_have_a_family_a_table2_group_and_a_label():
    import pandas as pd

    assert S.selector_family("oracle:bertscore") == "oracle" and S.selector_family("random") == "random"
    assert [S.selector_group(i) for i in ("oracle:gpt_rank", "reference:bleu", "pairranker:bubble", "pairrm",
                                          "simcls", "best_single")] == ["oracle", "oracle", "PairRanker", "PairRanker",
                                                                        "baseline", "baseline"]
    for bad in ("", " random", None):
        with pytest.raises(ValueError, match="selector id"):
            S.selector_family(bad)
    table = pd.DataFrame({"bertscore": [0.5, 0.6]}, index=["random", "pairranker:max_logits"])
    shown = S.labelled(table, {"random": "Random", "pairranker:max_logits": "PairRanker (max-logits)"})
    assert list(shown.index) == ["Random", "PairRanker (max-logits)"] and list(table.index)[0] == "random"
    with pytest.raises(KeyError, match=r"no label for selector id\(s\) \['pairranker:max_logits'\]"):
        S.labelled(table, {"random": "Random"})
