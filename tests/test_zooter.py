"""ZOOTER: reward sources, labels, tag enhancement, the router (trained for real on a tiny model),
routing, cost accounting and the bad-input errors.

Models built here are *locally built test models*: a tiny randomly initialised BERT (and a tiny
DeBERTa-v2 reward model) with a word-level vocabulary written by the test, so training takes
seconds. One slow test clusters with the packaged MiniLM.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from blender_lib import rerankers as RR
from blender_lib import selectors as S
from blender_lib import zooter as Z
from conftest import save_tiny_models

MODELS = ["alpha", "beta", "gamma"]
MATH = ["what is two plus three", "add seven and one", "what is nine minus four", "multiply six by two",
        "what is five plus five", "subtract three from eight"]
POEMS = ["write a poem about the sea", "compose a short poem about rain", "write a haiku about winter",
         "a poem about the moon please", "write verses about love", "compose a poem about trees"]
HELD_OUT = [("what is four plus six", "math"), ("add nine and two", "math"),
            ("write a haiku about rain", "poem"), ("compose verses about the sea", "poem")]


def example(ex_id: str, query: str, tag: str, bertscore: list[float], *, models: list[str] | None = None,
            n_tokens: list[int] | None = None) -> dict:
    models = models or MODELS
    n_tokens = n_tokens or [10 * (k + 1) for k in range(len(models))]
    return {"id": ex_id, "instruction": query, "input": "", "output": f"the answer to {query}", "tags": [tag],
            "cmp_results": {},
            "candidates": [{"model": m, "decoding_method": "greedy", "text": f"{m} answers {query}", "n_tokens": t,
                            "scores": {"bertscore": s, "bleu": 100 * s}}
                           for m, s, t in zip(models, bertscore, n_tokens)]}


def topic_examples(queries: list[tuple[str, str]], prefix: str) -> list[dict]:
    """alpha is best at math, gamma at poems, beta always in between; the margins vary by query."""
    out = []
    for n, (query, tag) in enumerate(queries):
        best, worst = 0.9 - 0.1 * (n % 3), 0.1 + 0.05 * (n % 2)
        out.append(example(f"{prefix}-{n}", query, tag, [best, 0.5, worst] if tag == "math" else [worst, 0.5, best]))
    return out


def train_examples() -> list[dict]:
    pairs = [p for m, q in zip(MATH, POEMS) for p in ((m, "math"), (q, "poem"))]
    return topic_examples(pairs, "train")


# --------------------------------------------------------------------------------------------
# locally built tiny test models


def vocab_words() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = {"?", ".", ","}
    for text in [*MATH, *POEMS, *(q for q, _ in HELD_OUT), *MODELS, "the answer to", "answers"]:
        words.update(text.lower().split())
    return specials + sorted(words)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT encoder and a tiny DeBERTa-v2 reward model (one logit), with a word vocabulary."""
    return save_tiny_models(tmp_path_factory.mktemp("tiny-zooter"), vocab_words(), ("encoder", "reward"))


def tiny_config(tiny_dirs, **overrides) -> Z.RouterConfig:
    values = dict(backbone=str(tiny_dirs["encoder"]), source_max_length=16, epochs=6, batch_size=4, lr=3e-3,
                  warmup_ratio=0.0, seed=0, bf16=False, device="cpu", head_dropout=0.0)
    return Z.RouterConfig(**{**values, **overrides})


# --------------------------------------------------------------------------------------------
# labels and entropy


def test_labels_sum_to_one_follow_the_temperature_and_ignore_the_reward_scale():
    rewards = np.array([[0.0, 1.0], [3.0, 1.0], [0.2, 0.5]])
    labels = Z.reward_labels(rewards, 1.0)
    assert np.allclose(labels.sum(axis=1), 1.0)
    # z-score of (0, 1) is (-1, 1): softmax gives 1 / (1 + e^2) and e^2 / (1 + e^2)
    assert labels[0] == pytest.approx([1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)])
    assert np.allclose(Z.reward_labels(100 * rewards + 7, 1.0), labels)  # per-query z-score: scale-free
    sharp, flat = Z.reward_labels(rewards, 0.25), Z.reward_labels(rewards, 4.0)
    assert (np.argmax(sharp, 1) == np.argmax(rewards, 1)).all()
    assert (sharp.max(1) > labels.max(1)).all() and (labels.max(1) > flat.max(1)).all()
    assert (Z.reward_entropy(sharp) < Z.reward_entropy(flat)).all()
    raw = Z.reward_labels(np.array([[0.0, math.log(3)]]), 1.0, normalize="none")
    assert raw[0] == pytest.approx([0.25, 0.75])


def test_equal_rewards_give_the_uniform_label_and_one_model_gets_all_the_mass():
    labels = Z.reward_labels(np.array([[2.0, 2.0, 2.0, 2.0], [1e6, 1e6, 1e6, 1e6]]), 0.1)
    assert np.isfinite(labels).all() and np.allclose(labels, 0.25)
    assert Z.reward_labels(np.array([[5.0], [-1.0]]), 1.0).tolist() == [[1.0], [1.0]]
    assert Z.reward_entropy(np.array([[1.0]])).tolist() == [0.0]


def test_entropy_on_hand_made_distributions_and_from_rewards():
    labels = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    assert Z.reward_entropy(labels) == pytest.approx([math.log(4), 0.0, math.log(2)])
    rewards = np.array([[1.0, 2.0, 4.0]])
    assert Z.reward_entropy(rewards, 0.7) == pytest.approx(Z.reward_entropy(Z.reward_labels(rewards, 0.7)))
    with pytest.raises(ValueError, match="must be distributions.*row 0"):
        Z.reward_entropy(rewards)  # rewards without a temperature are not labels


def test_label_inputs_are_checked():
    for bad in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            Z.reward_labels(np.ones((2, 3)), bad)
    with pytest.raises(ValueError, match=r"non-empty \[n_queries, N\] array"):
        Z.reward_labels(np.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"non-empty \[n_queries, N\] array"):
        Z.reward_labels(np.ones((0, 3)), 1.0)
    with pytest.raises(ValueError, match="query 1 has non-finite rewards"):
        Z.reward_labels(np.array([[1.0, 2.0], [np.nan, 1.0]]), 1.0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        Z.reward_labels(np.ones((1, 2)), 1.0, normalize="minmax")


# --------------------------------------------------------------------------------------------
# tags and label enhancement


def test_enhance_labels_beta_zero_is_identity_beta_one_the_tag_means_and_hand_checked_between():
    labels = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    tags = ["a", "a", "b", "b"]
    assert np.array_equal(Z.enhance_labels(labels, tags, 0.0), labels)
    assert np.allclose(Z.enhance_labels(labels, tags, 1.0), [[0.5, 0.5], [0.5, 0.5], [0.35, 0.65], [0.35, 0.65]])
    half = Z.enhance_labels(labels, tags, 0.5)
    assert np.allclose(half, [[0.75, 0.25], [0.25, 0.75], [0.425, 0.575], [0.275, 0.725]])
    assert np.allclose(Z.enhance_labels(labels, tags, 0.3).sum(1), 1.0)
    assert np.array_equal(Z.enhance_labels(labels, [0, 0, 1, 1], 0.5), half)  # int cluster ids work the same


def test_a_query_with_several_tags_takes_the_mean_of_its_tags_means_and_one_without_keeps_its_label():
    labels = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4]])
    tags = [["a"], ["a", "b"], "b", None]
    # mean(a) = rows 0, 1 = (.5, .5); mean(b) = rows 1, 2 = (.1, .9); row 1 shares ((.5,.5) + (.1,.9)) / 2
    out = Z.enhance_labels(labels, tags, 0.5)
    assert out[1] == pytest.approx([0.15, 0.85])
    assert out[0] == pytest.approx([0.75, 0.25]) and out[2] == pytest.approx([0.15, 0.85])
    assert out[3].tolist() == [0.6, 0.4]
    means = Z.tag_means(labels, tags)
    assert set(means) == {"a", "b"} and means["b"] == pytest.approx([0.1, 0.9])


def test_enhancement_inputs_are_checked():
    labels = np.array([[1.0, 0.0], [0.0, 1.0]])
    for beta in (-0.1, 1.5, float("nan"), None):
        with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\]"):
            Z.enhance_labels(labels, ["a", "b"], beta)
    with pytest.raises(ValueError, match="got 3 tag entries for 2 queries"):
        Z.enhance_labels(labels, ["a", "b", "c"], 0.3)
    with pytest.raises(ValueError, match="must be distributions"):
        Z.enhance_labels(np.array([[2.0, 3.0], [1.0, 0.0]]), ["a", "b"], 0.3)
    with pytest.raises(ValueError, match="a tag entry must be"):
        Z.enhance_labels(labels, [1.5, "b"], 0.3)


def test_data_tags_all_or_first_and_a_missing_tag_is_named():
    examples = train_examples()[:2]
    examples[1]["tags"] = ["poem", "creative", "poem"]
    assert Z.data_tags(examples) == [("math",), ("poem", "creative")]
    assert Z.data_tags(examples, "first") == [("math",), ("poem",)]
    examples[0]["tags"] = []
    with pytest.raises(ValueError, match="example 'train-0' has no tags; use cluster_tags"):
        Z.data_tags(examples)
    with pytest.raises(ValueError, match="which must be"):
        Z.data_tags(examples, "last")


def test_cluster_tags_are_deterministic_with_a_seed(tiny_dirs):
    from blender_lib.models import load_model

    encoder = load_model(str(tiny_dirs["encoder"]), kind="encoder", device="cpu", dtype="float32")
    texts = [*MATH, *POEMS]
    first = Z.cluster_tags(texts, 3, seed=1, encoder=encoder)
    assert first == Z.cluster_tags(texts, 3, seed=1, encoder=str(tiny_dirs["encoder"]))
    assert len(first) == len(texts) and set(first) == {0, 1, 2} and first[0] == 0  # numbered by first appearance
    assert Z.cluster_tags(texts, 1, encoder=encoder) == [0] * len(texts)
    for k in (0, len(texts) + 1, 2.5):
        with pytest.raises(ValueError, match="k must be an integer between 1 and the number of texts"):
            Z.cluster_tags(texts, k, encoder=encoder)
    with pytest.raises(ValueError, match="text 1 is empty"):
        Z.cluster_tags(["a poem", " "], 1, encoder=encoder)
    with pytest.raises(ValueError, match="no texts"):
        Z.cluster_tags([], 1, encoder=encoder)


@pytest.mark.slow
def test_cluster_tags_with_minilm_separate_two_clear_topics():
    math_queries = ["What is 12 times 7?", "Solve for x: 3x + 5 = 20.", "What is the square root of 144?",
                    "Compute 45 divided by 9."]
    poems = ["Write a poem about the ocean at night.", "Compose a short poem about autumn leaves.",
             "Write a sonnet about lost love.", "Write a haiku about snow falling."]
    tags = Z.cluster_tags(math_queries + poems, 2, seed=0)
    assert tags == [0] * 4 + [1] * 4


# --------------------------------------------------------------------------------------------
# reward sources


class LengthScorer(RR.TextScorer):
    """A stand-in reward: the number of words of the candidate."""

    label = "length"

    def score(self, sources, candidate_lists, *, progress=False):
        return [np.array([len(c.split()) for c in cands], dtype=float) for cands in candidate_lists]


def test_reward_sources_give_n_by_models_arrays_in_candidate_order():
    examples = train_examples()[:3]
    rewards = Z.metric_rewards(examples, "bertscore")
    assert rewards.shape == (3, 3) and np.allclose(rewards[:2], [[0.9, 0.5, 0.1], [0.15, 0.5, 0.8]])
    assert Z.example_models(examples) == tuple(MODELS)
    lengths = Z.scorer_rewards(LengthScorer(), examples)
    assert lengths.shape == (3, 3)
    assert lengths[0].tolist() == [len(c["text"].split()) for c in examples[0]["candidates"]]
    source = Z.reward_source("metric:bleu")
    assert source.reads_reference and np.allclose(source(examples), 100 * rewards)
    assert Z.rmr_choices(rewards) == [0, 2, 0]
    assert Z.rmr_choices(np.array([[1.0, 3.0, 3.0]])) == [1]  # first of equals


def test_reward_sources_refuse_mixed_model_orders_and_bad_specs():
    examples = train_examples()[:3]
    examples[2]["candidates"] = examples[2]["candidates"][::-1]
    with pytest.raises(ValueError, match=r"example 'train-2' lists its candidates' models as \['gamma', 'beta', "
                                         r"'alpha'\], but example 'train-0'"):
        Z.metric_rewards(examples, "bertscore")
    with pytest.raises(ValueError, match="repeated model names"):
        Z.metric_rewards([example("d", "add seven and one", "math", [0.1, 0.2], models=["a", "a"])], "bertscore")
    with pytest.raises(ValueError, match="no examples"):
        Z.metric_rewards([], "bertscore")
    with pytest.raises(ValueError, match="not one example"):
        Z.metric_rewards(train_examples()[0], "bertscore")
    with pytest.raises(ValueError, match="unknown metric 'rouge9'"):
        Z.metric_rewards(train_examples()[:1], "rouge9")
    for spec in ("bleu", "metric:", "judge:gpt4", "pairranker"):
        with pytest.raises(ValueError, match="unknown reward spec"):
            Z.reward_source(spec)


def test_a_reward_model_spec_loads_a_scorer_and_scores_question_answer_pairs(tiny_dirs):
    examples = train_examples()[:2]
    source = Z.reward_source(f"scorer:{tiny_dirs['reward']}", device="cpu")
    rewards = source(examples)
    assert not source.reads_reference and rewards.shape == (2, 3) and np.isfinite(rewards).all()
    direct = RR.RewardModelScorer(str(tiny_dirs["reward"]), device="cpu")(examples)
    assert np.allclose(rewards, np.array(direct), atol=1e-6)


def test_pairranker_rewards_are_its_reference_rewards(tiny_dirs):
    from blender_lib.rankers import reference_rewards

    ranker = tiny_pairranker(tiny_dirs)
    examples = train_examples()[:2]
    rewards = Z.pairranker_rewards(ranker, examples)
    for ex, row in zip(examples, rewards):
        one = reference_rewards(ranker, ex["instruction"], [c["text"] for c in ex["candidates"]], ex["output"])
        assert np.allclose(row, one, atol=1e-5)
    assert np.allclose(Z.reward_source("pairranker", ranker=ranker)(examples), rewards, atol=1e-6)
    examples[1]["output"] = " "
    with pytest.raises(ValueError, match="example 'train-1' has no reference"):
        Z.pairranker_rewards(ranker, examples)


def tiny_pairranker(tiny_dirs):
    from blender_lib.rankers import PairRankerConfig, PairRankerModel

    config = PairRankerConfig(backbone=str(tiny_dirs["encoder"]), source_max_length=16, candidate_max_length=16,
                              bf16=False, device="cpu", seed=0)
    return PairRankerModel.from_backbone(config).eval()


def test_cached_rewards_compute_once_per_name_and_data(tmp_path):
    examples = train_examples()[:3]
    calls = []

    def compute(exs):
        calls.append(len(exs))
        return Z.metric_rewards(exs, "bertscore")

    first = Z.cached_rewards("metric:bertscore", examples, compute, root=tmp_path)
    again = Z.cached_rewards("metric:bertscore", examples, compute, root=tmp_path)
    assert np.array_equal(first, again) and calls == [3]
    Z.cached_rewards("metric:bertscore", examples[:2], compute, root=tmp_path)
    Z.cached_rewards("other", examples, compute, root=tmp_path)
    assert calls == [3, 2, 3]
    with pytest.raises(ValueError, match="got rewards for 2 queries but 3 examples"):
        Z.cached_rewards("bad", examples, lambda exs: np.zeros((2, 3)), root=tmp_path)


# --------------------------------------------------------------------------------------------
# the router: configuration, bad inputs, a real tiny training run


def test_router_config_validates_and_round_trips():
    config = Z.RouterConfig(models=["a", "b"])
    assert config.models == ("a", "b") and config.KIND == "router"
    assert Z.RouterConfig.from_dict({**vars(config), "models": ["a", "b"]}) == config
    assert config.key() != replace(config, models=("b", "a")).key()
    with pytest.raises(ValueError, match="at least two models"):
        Z.RouterConfig(models=("a",))
    with pytest.raises(ValueError, match="distinct non-empty names"):
        Z.RouterConfig(models=("a", "a"))
    with pytest.raises(ValueError, match=r"unknown RouterConfig parameter\(s\) \['metrics'\]"):
        Z.RouterConfig.from_dict({"metrics": ["bertscore"]})  # a router learns from labels, not metric columns
    with pytest.raises(ValueError, match=r"unknown RouterConfig parameter\(s\) \['beta'\]"):
        Z.RouterConfig.from_dict({"beta": 0.3})


def test_train_router_refuses_bad_inputs_before_training(tiny_dirs, tmp_path):
    train = train_examples()[:4]
    labels = Z.reward_labels(Z.metric_rewards(train, "bertscore"), 1.0)
    config = tiny_config(tiny_dirs)
    with pytest.raises(ValueError, match=r"labels have shape \(3, 3\), expected \(4, 3\)"):
        Z.train_router(train, [], labels[:3], None, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="must be distributions"):
        Z.train_router(train, [], Z.metric_rewards(train, "bertscore"), None, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="validation examples need labels_val"):
        Z.train_router(train, train[:2], labels, None, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"config.models \['x', 'y'\] differ"):
        Z.train_router(train, [], labels, None, replace(config, models=("x", "y")), tmp_path, progress=False)
    single = [example(f"s{n}", q, "math", [0.5], models=["solo"]) for n, q in enumerate(MATH[:2])]
    with pytest.raises(ValueError, match="one model .* a router needs at least two"):
        Z.train_router(single, [], np.ones((2, 1)), None, config, tmp_path, progress=False)
    with pytest.raises(TypeError, match="needs a RouterConfig"):
        Z.train_router(train, [], labels, None, RR.SimCLSConfig(), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_router_folder_is_keyed_by_the_labels(tiny_dirs):
    train = train_examples()
    labels = Z.reward_labels(Z.metric_rewards(train, "bertscore"), 1.0)
    config = tiny_config(tiny_dirs)
    folder = Z.router_folder(train, [], labels, None, config)
    assert folder.name.startswith("router-") and folder == Z.router_folder(train, [], labels.copy(), None, config)
    tags = Z.data_tags(train)
    assert folder != Z.router_folder(train, [], Z.enhance_labels(labels, tags, 0.3), None, config)
    assert folder == Z.router_folder(train, [], labels, None, replace(config, epochs=9))  # more epochs resume there
    assert folder != Z.router_folder(train, train[:2], labels, labels[:2], config)  # validation picks the epoch


def mean_kl(router: Z.RouterModel, examples: list[dict], labels: np.ndarray) -> float:
    probs = router.probabilities([ex["instruction"] for ex in examples])
    return float(np.mean(np.sum(labels * (np.log(labels) - np.log(probs)), axis=1)))


@pytest.fixture(scope="module")
def router_run(tiny_dirs, tmp_path_factory):
    train = train_examples()
    val = topic_examples(HELD_OUT, "val")
    rewards = Z.metric_rewards(train, "bertscore")
    labels = Z.enhance_labels(Z.reward_labels(rewards, 0.5), Z.data_tags(train), 0.3)
    labels_val = Z.reward_labels(Z.metric_rewards(val, "bertscore"), 0.5)
    config = tiny_config(tiny_dirs)
    out = tmp_path_factory.mktemp("router")
    report = Z.train_router(train, val, labels, labels_val, config, out, progress=False)
    return {"train": train, "val": val, "labels": labels, "labels_val": labels_val, "config": config, "out": out,
            "report": report}


def test_router_training_lowers_the_kl_and_routes_each_topic_to_its_best_model(router_run):
    run = router_run
    report = run["report"]
    assert report.kind == "router" and report.epochs_completed == 6 and report.train_inputs == 12
    assert report.config["models"] == tuple(MODELS)
    fresh = Z.RouterModel.from_backbone(replace(run["config"], models=tuple(MODELS)))
    trained = Z.RouterModel.from_pretrained(Path(run["out"]) / "epoch-6" / "model", device="cpu")
    before, after = mean_kl(fresh, run["train"], run["labels"]), mean_kl(trained, run["train"], run["labels"])
    assert after < 0.5 * before, (before, after)
    assert report.train_loss[-1] < report.train_loss[0]
    expected = {"math": "alpha", "poem": "gamma"}
    routes = trained.route([ex["instruction"] for ex in run["train"]])
    assert routes == [expected[ex["tags"][0]] for ex in run["train"]]
    best = Z.RouterModel.from_pretrained(report.best_dir, device="cpu")
    assert report.val[report.best_epoch - 1]["top1_mean_metric_rank"] == 1.0
    assert best.route([q for q, _ in HELD_OUT]) == [expected[t] for _, t in HELD_OUT]  # unseen queries too
    assert trained.route_one(MATH[0]) == "alpha" and best.route([]) == []


def test_a_reloaded_router_routes_identically_and_plugs_into_the_selection_tools(router_run):
    report, val = router_run["report"], router_run["val"]
    a = Z.RouterModel.from_pretrained(report.best_dir, device="cpu")
    b = Z.RouterModel.from_pretrained(report.best_dir, device="cpu")
    queries = [ex["instruction"] for ex in val]
    assert np.array_equal(a.probabilities(queries), b.probabilities(queries))
    assert a.route(queries) == b.route(queries)
    probs = a.probabilities(queries)
    assert np.allclose(probs.sum(1), 1.0) and np.array_equal(a.probabilities(queries[::-1]), probs[::-1])
    scores = Z.router_scores(a, val)
    best = np.mean([max(c["scores"]["bertscore"] for c in ex["candidates"]) for ex in val])
    assert S.evaluate_selection(val, scores, ["bertscore"])["top1_bertscore"] == pytest.approx(best)  # all to the best
    assert Z.routed_choices(a, val) == [0, 0, 2, 2]
    shuffled = [dict(ex, candidates=ex["candidates"][::-1]) for ex in val]  # matched by name, not position
    assert Z.routed_choices(a, shuffled) == [2, 2, 0, 0]
    assert np.allclose(Z.router_scores(a, shuffled)[0], scores[0][::-1])
    other = [example("o", MATH[0], "math", [0.1, 0.2], models=["alpha", "delta"])]
    with pytest.raises(ValueError, match=r"example 'o' has candidates of \['alpha', 'delta'\], but the router"):
        Z.routed_choices(a, other)
    with pytest.raises(ValueError, match="query 1 is empty"):
        a.route(["add seven and one", " "])


def test_a_second_call_resumes_and_the_best_epoch_is_the_best_on_validation(router_run):
    run = router_run
    report = run["report"]
    again = Z.train_router(run["train"], run["val"], run["labels"], run["labels_val"], run["config"], run["out"],
                           progress=False)
    assert (again.resumed_from_epoch, again.train_seconds, again.train_loss) == (6, 0.0, report.train_loss)
    ranks = [v["top1_mean_metric_rank"] for v in report.val]
    assert report.best_epoch == 1 + int(np.argmin(ranks))
    with pytest.raises(ValueError, match="other settings or data"):
        Z.train_router(run["train"], run["val"], Z.reward_labels(Z.metric_rewards(run["train"], "bertscore"), 2.0),
                       run["labels_val"], run["config"], run["out"], progress=False)


def test_beta_sweep_trains_one_router_per_beta_in_the_cache(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path))
    train = train_examples()[:4]
    labels = Z.reward_labels(Z.metric_rewards(train, "bertscore"), 1.0)
    config = tiny_config(tiny_dirs, epochs=1)
    reports = Z.beta_sweep(train, [], labels, None, Z.data_tags(train), [0.0, 1.0], config, progress=False)
    assert list(reports) == [0.0, 1.0] and reports[0.0].best_dir != reports[1.0].best_dir
    assert all(Path(r.best_dir).is_relative_to(tmp_path) for r in reports.values())
    again = Z.beta_sweep(train, [], labels, None, Z.data_tags(train), [1.0], config, progress=False)
    assert again[1.0].resumed_from_epoch == 1
    with pytest.raises(ValueError, match="beta must be"):
        Z.beta_sweep(train, [], labels, None, Z.data_tags(train), [0.3, 2.0], config, progress=False)


# --------------------------------------------------------------------------------------------
# cost accounting and the entropy analysis


def test_cost_table_on_hand_made_numbers():
    examples = [example("c0", MATH[0], "math", [0.9, 0.5, 0.1], n_tokens=[10, 20, 30]),
                example("c1", POEMS[0], "poem", [0.1, 0.5, 0.9], n_tokens=[40, 0, 60])]
    params = {"alpha": 1e6, "beta": 2e6, "gamma": 3e6}
    speed = {"alpha": 0.1, "beta": 0.2, "gamma": 0.3}
    table = Z.cost_table(examples, {"ZOOTER": [0, 2], "RMR": Z.ALL, "best single": [1, 1]}, parameters=params,
                         extra_parameters={"ZOOTER": 100, "RMR": 500}, seconds_per_token=speed,
                         extra_seconds={"ZOOTER": 0.01, "RMR": 2.0})
    assert list(table.index) == ["ZOOTER", "RMR", "best single"]
    assert table.loc["ZOOTER"].to_dict() == pytest.approx({
        "LLM calls / query": 1, "generated tokens / query": (10 + 60) / 2,
        "parameters touched / query": (1e6 + 3e6) / 2 + 100, "seconds / query": (10 * 0.1 + 60 * 0.3) / 2 + 0.01})
    assert table.loc["RMR"].to_dict() == pytest.approx({
        "LLM calls / query": 3, "generated tokens / query": (60 + 100) / 2, "parameters touched / query": 6e6 + 500,
        "seconds / query": (10 * 0.1 + 20 * 0.2 + 30 * 0.3 + 40 * 0.1 + 0 + 60 * 0.3) / 2 + 2.0})
    assert table.loc["best single", "generated tokens / query"] == 10.0
    plain = Z.cost_table(examples, {"random": np.array([2, 0])})
    assert list(plain.columns) == ["LLM calls / query", "generated tokens / query"]
    assert plain.loc["random", "generated tokens / query"] == 35.0


def test_cost_table_refuses_bad_inputs():
    examples = [example("c0", MATH[0], "math", [0.9, 0.5, 0.1])]
    with pytest.raises(ValueError, match=r"parameters has no entry for model\(s\) \['gamma'\]"):
        Z.cost_table(examples, {"RMR": Z.ALL}, parameters={"alpha": 1, "beta": 2})
    with pytest.raises(ValueError, match="'ZOOTER' chose candidate 3 for example 'c0', which has 3"):
        Z.cost_table(examples, {"ZOOTER": [3]})
    with pytest.raises(ValueError, match="'ZOOTER' chose for 2 examples, expected 1"):
        Z.cost_table(examples, {"ZOOTER": [0, 1]})
    with pytest.raises(ValueError, match=r"extra_parameters names methods \['zooter'\]"):
        Z.cost_table(examples, {"ZOOTER": [0]}, parameters={m: 1 for m in MODELS}, extra_parameters={"zooter": 1})
    with pytest.raises(ValueError, match="must be a list of candidate indices or 'all'"):
        Z.cost_table(examples, {"RMR": "every"})
    with pytest.raises(ValueError, match="no examples"):
        Z.cost_table([], {"RMR": Z.ALL})
    del examples[0]["candidates"][1]["n_tokens"]
    with pytest.raises(ValueError, match=r"example 'c0', candidate 1 \(beta\) has no valid n_tokens"):
        Z.cost_table(examples, {"RMR": Z.ALL})


def test_entropy_vs_quality_lists_each_routed_answer():
    examples = [example("e0", MATH[0], "math", [0.9, 0.5, 0.1]), example("e1", POEMS[0], "poem", [0.3, 0.3, 0.3])]
    labels = Z.reward_labels(Z.metric_rewards(examples, "bertscore"), 1.0)
    table = Z.entropy_vs_quality(examples, labels, [0, 2])
    assert table["model"].tolist() == ["alpha", "gamma"] and table["bertscore"].tolist() == [0.9, 0.3]
    assert table["entropy"].iloc[1] == pytest.approx(math.log(3)) and table["entropy"].iloc[0] < math.log(3)
    with pytest.raises(ValueError, match="got 2 examples, 2 label rows and 1 choices"):
        Z.entropy_vs_quality(examples, labels, [0])


def test_tag_table_lists_tags_by_size_with_their_mean_labels():
    labels = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    table = Z.tag_table(labels, ["a", "b", "b"], ["m1", "m2"])
    assert list(table.index) == ["b (2)", "a (1)"] and list(table.columns) == ["m1", "m2"]
    np.testing.assert_allclose(table.loc["b (2)"], [0.25, 0.75])
    with pytest.raises(ValueError, match="3 model names"):
        Z.tag_table(labels, ["a", "b", "b"], ["m1", "m2", "m3"])


def test_choose_beta_takes_the_smallest_of_tied_best_and_split_tags_keeps_parts_apart():
    assert Z.choose_beta({0.0: 1.8, 0.1: 1.7, 0.3: 1.7 + 1e-12, 0.5: 2.0}) == (0.1, [0.1, 0.3])
    assert Z.choose_beta({0.7: 1.5, 0.3: 1.5}) == (0.3, [0.3, 0.7])  # smallest, whatever the order given
    with pytest.raises(ValueError, match="no betas"):
        Z.choose_beta({})
    parts = [train_examples()[:3], train_examples()[3:5]]
    tags = Z.split_tags("data", parts)
    assert [len(t) for t in tags] == [3, 2] and tags[0] == Z.data_tags(parts[0])
    with pytest.raises(ValueError, match=r"tags must be one of \['data', 'cluster'\], got 'kmeans'"):
        Z.split_tags("kmeans", parts)


def test_a_reward_source_names_its_kind_and_model():
    source = Z.reward_source("metric:bleu")
    assert (source.kind, source.model, source.reads_reference) == ("metric", None, True)
