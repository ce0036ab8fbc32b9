"""PairRanker's head and ZOOTER's router head on cached embeddings (blender_lib.frozen_heads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_reward_model import length_preferences, mock_embedder, pool_examples

from blender_lib import analysis
from blender_lib import frozen_heads as FH
from blender_lib import reward_model as RM
from blender_lib.preferences import Preference

SMALL = FH.HeadSettings(hidden=8, epochs=25, lr=1e-2, batch_size=32, dropout=0.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))  # trained heads are cached here
    cache = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    RM.embed_missing(cache, RM.texts_to_embed(pool_examples(), length_preferences()), mock_embedder, progress=False)
    return cache


def featurizer(cache) -> RM.Featurizer:
    return RM.Featurizer(cache, ("long", "mid", "short"), "text")


def test_the_pair_head_is_antisymmetric_and_learns_which_answer_wins(cache):
    trained = FH.train_pair_head(length_preferences(), featurizer(cache), SMALL, curve_pairs=length_preferences(10))
    ex = pool_examples(1)[0]
    m = trained.example_matrices([ex])[0]
    assert m.shape == (3, 3) and np.allclose(m, -m.T, atol=1e-5) and np.allclose(np.diag(m), 0, atol=1e-5)
    assert m[2, 0] > 0 and m[2, 1] > 0 and m[1, 0] > 0  # long > mid > short, as every judgment says
    report = trained.report
    assert 1 <= report.best_epoch <= SMALL.epochs and report.best_validation == 1.0
    assert report.curve and report.curve[-1]["held-out"] == 1.0 and not report.loaded


def test_the_pair_head_is_cached_by_settings_and_data(cache):
    first = FH.train_pair_head(length_preferences(), featurizer(cache), SMALL)
    again = FH.train_pair_head(length_preferences(), featurizer(cache), SMALL)
    assert again.report.loaded and again.report.best_epoch == first.report.best_epoch
    ex = pool_examples(1)[0]
    assert np.allclose(again.example_matrices([ex])[0], first.example_matrices([ex])[0])
    flipped = [Preference(p.source, p.pair_id, p.prompt_key, p.instruction, p.first, p.second, p.first_model, p.second_model,
                          1.0 - p.label) for p in length_preferences()]
    retrained = FH.train_pair_head(flipped, featurizer(cache), SMALL)
    assert not retrained.report.loaded
    assert retrained.example_matrices([ex])[0][0, 2] > 0  # now the short answer wins


def test_the_pair_head_needs_pairs_to_fit_and_to_validate(cache):
    with pytest.raises(ValueError, match="need decisive pairs both to fit and to validate"):
        FH.train_pair_head(length_preferences(1), featurizer(cache), SMALL)


def test_cross_validated_pair_head_picks_by_max_logits_and_bubble(cache):
    pool, prefs = pool_examples(200), length_preferences(200)  # enough prompts to learn past the mock embeddings' noise
    RM.embed_missing(cache, RM.texts_to_embed(pool, prefs), mock_embedder, progress=False)
    cv = FH.cross_validate_pair_head(pool, prefs, cache, features="text", folds=2, settings=SMALL, curve_pairs=50)
    assert len(cv.matrices) == len(pool) and set(cv.reports) == {0, 1}
    # held-out prompts, random (mock) embeddings: the length feature must carry nearly every pick
    assert np.mean(np.array(cv.max_logits_selections) == 2) >= 0.9 and np.mean(np.array(cv.bubble_selections) == 2) >= 0.9
    assert set(cv.curve_table()["fold"]) == {"0", "1"}


def test_fit_keeps_the_epoch_with_the_best_validation_score():
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    x, y = torch.randn(16, 2), torch.randn(16)
    snapshots, scores = [], iter([0.1, 0.9, 0.2, 0.3])

    def validate() -> float:
        snapshots.append(net.weight.detach().clone())
        return next(scores)

    report = FH.fit(net, lambda rows: ((net(x[rows]).squeeze(-1) - y[rows]) ** 2).mean(), 16,
                    FH.HeadSettings(epochs=4, batch_size=4, lr=0.1), validate=validate)
    assert report.best_epoch == 2 and report.best_validation == 0.9
    assert torch.equal(net.weight, snapshots[1]) and not torch.equal(net.weight, snapshots[-1])


def routing_pool(n: int = 80) -> tuple[list[dict], np.ndarray, RM.EmbeddingCache]:
    """Queries of two kinds whose embeddings say which kind they are; model 'a' wins kind 0, 'b' kind 1."""
    rng = np.random.default_rng(0)
    pool, rewards, vectors = [], [], []
    for q in range(n):
        kind = q % 2
        pool.append({"id": str(q), "instruction": f"query {q}",
                     "candidates": [{"model": m, "text": f"{m} answers {q}", "scores": {}} for m in ("a", "b")]})
        rewards.append([1.0, 0.0] if kind == 0 else [0.0, 1.0])
        vectors.append(np.eye(4)[kind] * 3 + rng.normal(scale=0.3, size=4))
    return pool, np.array(rewards), np.stack(vectors).astype(np.float32)


def test_the_router_head_routes_each_kind_of_query_to_its_model(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    pool, rewards, vectors = routing_pool()
    cache = RM.EmbeddingCache.open("mock", 4, root=tmp_path)
    cache.add([ex["instruction"] for ex in pool], vectors)
    settings = FH.HeadSettings(epochs=60, batch_size=16, lr=5e-2, weight_decay=0.0)
    routed = FH.cross_validate_router_head(pool, rewards, cache, settings=settings)
    assert routed.choices == [q % 2 for q in range(len(pool))]
    assert routed.probabilities.shape == (len(pool), 2) and np.allclose(routed.probabilities.sum(axis=1), 1)
    assert FH.cross_validate_router_head(pool, rewards, cache, settings=settings).reports[0].loaded
    # the same rewards given per fold (as a reward model trained without that fold gives them)
    assert FH.cross_validate_router_head(pool, {0: rewards, 1: rewards}, cache, settings=settings).choices == routed.choices


def test_the_router_head_names_bad_rewards_and_uneven_pools(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    pool, rewards, vectors = routing_pool(10)
    cache = RM.EmbeddingCache.open("mock", 4, root=tmp_path)
    cache.add([ex["instruction"] for ex in pool], vectors)
    with pytest.raises(ValueError, match=r"rewards \(fold 0\) must have shape \(10, 2\)"):
        FH.cross_validate_router_head(pool, rewards[:5], cache)
    pool[3]["candidates"].reverse()
    with pytest.raises(ValueError, match=r"differ between examples \(a ragged pool\): pass models="):
        FH.cross_validate_router_head(pool, rewards, cache)


def test_the_router_head_routes_a_ragged_pool_among_the_models_that_answered(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    pool, rewards, vectors = routing_pool()
    cache = RM.EmbeddingCache.open("mock", 4, root=tmp_path)
    cache.add([ex["instruction"] for ex in pool], vectors)
    # model "b" (which wins kind-1 queries) did not answer query 1, a kind-1 query; "c" answered only some, unscored
    del pool[1]["candidates"][1]
    rewards[1, 1] = np.nan
    for q in (0, 1, 2):
        pool[q]["candidates"].append({"model": "c", "text": "c", "scores": {}})
    ragged = np.column_stack([rewards, np.full(len(pool), np.nan)])
    settings = FH.HeadSettings(epochs=60, batch_size=16, lr=5e-2, weight_decay=0.0)
    routed = FH.cross_validate_router_head(pool, ragged, cache, settings=settings, models=["a", "b", "c"])
    assert routed.choices[3] == 1 and routed.choices[2] == 0  # kind 1 to b, kind 0 to a, as before
    assert routed.choices[1] == 0 and routed.probabilities[1, 1] == 0.0  # b is absent there: a, then c
    assert np.allclose(routed.probabilities.sum(axis=1), 1)
    labels = FH.router_labels(ragged[:3], 1.0, None, 0.0)
    assert labels[1].tolist() == [1.0, 0.0, 0.0] and labels[0, 2] == 0.0
    with pytest.raises(ValueError, match="score a model on an example it did not answer"):
        FH.cross_validate_router_head(pool, np.nan_to_num(ragged), cache, settings=settings, models=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"models \['c'\] answer some examples but are not among"):
        FH.cross_validate_router_head(pool, ragged[:, :2], cache, settings=settings, models=["a", "b"])


def test_agreement_reads_a_pair_matrix_as_the_pairwise_verdict():
    ex = {"id": "x", "instruction": "q", "candidates": [{"model": m, "text": m, "scores": {"win": w}} for m, w in (("a", 1.0), ("b", 0.0), ("c", 0.0))]}
    # a pair matrix that prefers a to b (right) and c to a (wrong); b vs c is a gold tie and is left out
    m = np.array([[0.0, 2.0, -1.0], [-2.0, 0.0, 0.5], [1.0, -0.5, 0.0]])
    found = analysis.preference_agreement([ex], [m], gold="win")
    assert (found["n_pairs"], found["n_agree"], found["n_gold_ties"]) == (2, 1, 1)
    gap = analysis.paired_agreement_gap([ex], [m], [np.array([3.0, 1.0, 2.0])], gold="win", n_boot=10)
    assert gap[0] == pytest.approx(-50.0)  # the vector orders both decisive pairs right, the matrix one
    with pytest.raises(ValueError, match=r"or a pair matrix of 3 x 3"):
        analysis.preference_agreement([ex], [np.zeros((2, 2))], gold="win")


def test_the_backbone_benchmark_reads_back_as_a_table(tmp_path):
    row = {name: 1.0 for name in FH.BACKBONE_COLUMNS}
    stored = {"prompts": 7, "variants": [{"encoder": "minilm-l6", "max_length": 128, **row, "variant seconds": 3.0},
                                         {"encoder": "minilm-l6", "max_length": 256, **row, "variant seconds": 4.0}]}
    path = tmp_path / "reward_backbones.json"
    path.write_text(json.dumps(stored))
    table, prompts = FH.backbone_comparison(path)
    assert prompts == 7 and list(table.index) == [("minilm-l6", 128), ("minilm-l6", 256)]
    assert list(table.columns) == list(FH.BACKBONE_COLUMNS)  # timings of the run itself are left out
    with pytest.raises(FileNotFoundError, match="bench_reward_backbones.py"):
        FH.backbone_comparison(tmp_path / "absent.json")


def test_comparisons_cover_every_known_pair_with_ties_as_halves():
    quality = np.array([[1.0, 0.0, np.nan], [0.5, 0.5, 1.0]])
    rows = FH.comparisons(quality, [0, 1])
    assert rows.tolist() == [[0, 0, 1, 1.0], [1, 0, 1, 0.5], [1, 0, 2, 0.0], [1, 1, 2, 0.0]]
    assert FH.comparisons(quality, [0, 1], ties=False).tolist() == [[0, 0, 1, 1.0], [1, 0, 2, 0.0], [1, 1, 2, 0.0]]


def test_the_mf_router_learns_which_model_wins_each_kind_of_query_from_a_third_models_comparisons(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    pool, rewards, vectors = routing_pool()
    prompts = [ex["instruction"] for ex in pool]
    cache = RM.EmbeddingCache.open("mock", 4, root=tmp_path)
    cache.add(prompts, vectors)
    # model 0 wins kind-0 queries, model 1 kind-1; a third model always sits in between
    quality = np.column_stack([rewards, np.full(len(pool), 0.5)])
    settings = FH.HeadSettings(hidden=0, epochs=40, batch_size=16, lr=2e-2, weight_decay=0.0, dropout=0.0)
    routed = FH.cross_validate_mf_router(prompts, quality, ["a", "b", "c"], cache, settings=settings, dim=8)
    p = routed.win_probability("b", "a")
    kinds = np.arange(len(pool)) % 2
    assert (p[kinds == 1] > 0.5).all() and (p[kinds == 0] < 0.5).all()
    assert routed.train_comparisons[0] > 0 and FH.cross_validate_mf_router(prompts, quality, ["a", "b", "c"], cache,
                                                                          settings=settings, dim=8).reports[0].loaded
    # without the two models' own comparisons, the third model's alone still order them on each kind
    blind = quality.copy()
    blind[:, 1] = np.where(kinds == 1, 1.0, 0.0)
    blind[:, 0] = np.nan
    only_c = FH.cross_validate_mf_router(prompts, blind, ["a", "b", "c"], cache, settings=settings, dim=8)
    assert (np.diff(only_c.scores[:, 1:], axis=1)[kinds == 1] < 0).all()  # b above c where b wins
    with pytest.raises(ValueError, match=r"quality must have shape \(80, 3\)"):
        FH.cross_validate_mf_router(prompts, quality[:, :2], ["a", "b", "c"], cache)
    with pytest.raises(ValueError, match="comparisons; the router needs both"):
        FH.cross_validate_mf_router(prompts, np.full(quality.shape, np.nan), ["a", "b", "c"], cache)
