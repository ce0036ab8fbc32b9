"""The Bradley-Terry reward model on cached embeddings (blender_lib.reward_model)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from blender_lib import reward_model as RM
from blender_lib.preferences import Preference, prompt_fold, prompt_key


def mock_embedder(texts: list[str]) -> np.ndarray:
    """A MOCK encoder (seeded by each text's hash): these tests are about caching and training, not the
    encoder; the real one is exercised by test_real_encoder_embeddings."""
    rows = [np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).normal(size=8) for t in texts]
    return np.stack(rows).astype(np.float32)


def length_preferences(n_prompts: int = 60) -> list[Preference]:
    """Per prompt, three answers of 2, 6 and 12 words: the longer one always wins."""
    prefs = []
    for q in range(n_prompts):
        answers = {m: " ".join([f"w{q}"] * words) for m, words in (("short", 2), ("mid", 6), ("long", 12))}
        for a, b in (("long", "short"), ("short", "mid"), ("mid", "long"), ("long", "mid")):
            prefs.append(Preference("test", f"{q}/{a}/{b}", prompt_key(f"question {q}"), f"question {q}", answers[a],
                                    answers[b], a, b, float(len(answers[a]) > len(answers[b]))))
    return prefs


def pool_examples(n_prompts: int = 60) -> list[dict]:
    out = []
    for q in range(n_prompts):
        cands = [{"model": m, "text": " ".join([f"w{q}"] * words), "scores": {"win": float(m == "long")}}
                 for m, words in (("short", 2), ("mid", 6), ("long", 12))]
        out.append({"id": str(q), "instruction": f"question {q}", "candidates": cands})
    return out


@pytest.fixture
def cache(tmp_path):
    cache = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    texts = RM.texts_to_embed(pool_examples(), length_preferences())
    assert RM.embed_missing(cache, texts, mock_embedder, chunk=50, progress=False) == len(texts)
    return cache


def test_the_embedding_cache_persists_and_resumes(tmp_path):
    texts = [f"text {k}" for k in range(7)]
    cache = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    calls: list[int] = []

    def failing(batch: list[str]) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted after the first chunk was saved
        return mock_embedder(batch)

    with pytest.raises(KeyboardInterrupt):
        RM.embed_missing(cache, texts, failing, chunk=3, progress=False)
    reopened = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    assert len(reopened.vectors) == 3 and len(reopened.missing(texts)) == 4
    assert RM.embed_missing(reopened, texts, mock_embedder, chunk=3, progress=False) == 4
    again = RM.EmbeddingCache.open("mock", 8, root=tmp_path)
    assert again.missing(texts) == [] and np.allclose(again["text 5"], mock_embedder(["text 5"])[0])
    with pytest.raises(KeyError, match="call embed_missing first"):
        again["never embedded"]


def test_features_by_set(cache):
    for features, extra in (("text", 0), ("text+model", 4), ("text+model+length", 8)):
        phi = RM.Featurizer(cache, ("a", "b", "long", "mid"), features)
        vector = phi("question 0", "w0 w0", "long")
        assert vector.shape == (8 + 8 + RM.SURFACE + extra,)
    phi = RM.Featurizer(cache, ("a", "b", "long", "mid"), "text+model")
    assert phi("question 0", "w0 w0", "someone else")[-4:].sum() == 0  # an unknown model has no identity column
    with pytest.raises(ValueError, match="features must be one of"):
        RM.Featurizer(cache, (), "everything")


def test_the_model_learns_a_preference_and_records_its_curve(cache):
    prefs = length_preferences()
    train = [p for p in prefs if prompt_fold(p.prompt_key, 2) == 0]
    held = [p for p in prefs if prompt_fold(p.prompt_key, 2) == 1]
    model = RM.train_reward_model(train, RM.Featurizer(cache, (), "text"), RM.TrainingSettings(epochs=40, batch_size=16, lr=3e-2),
                                  validation=held)
    seen = [point["pairs seen"] for point in model.curve]
    assert seen == sorted(seen) and model.train_pairs == len(train)
    assert model.curve[-1]["held-out pairwise accuracy"] > 0.95
    first, second = RM.Featurizer(cache, (), "text").pair_matrices(held)
    import torch
    assert RM.pairwise_accuracy(model.linear, first, second, torch.tensor([p.label for p in held])) > 0.95
    with pytest.raises(ValueError, match="no decisive training pair"):
        RM.train_reward_model([], RM.Featurizer(cache, (), "text"))


def test_cross_validation_never_trains_on_a_scored_prompt(cache, monkeypatch):
    pool, prefs = pool_examples(), length_preferences()
    trained_on: list[set[str]] = []
    real_train = RM.train_reward_model

    def spying(pairs, featurizer, settings=RM.TrainingSettings(), **kw):
        trained_on.append({p.prompt_key for p in pairs})
        return real_train(pairs, featurizer, settings, **kw)

    monkeypatch.setattr(RM, "train_reward_model", spying)
    cv = RM.cross_validate_reward_model(pool, prefs, cache, folds=2, seed=0, score_key="win",
                                        settings=RM.TrainingSettings(epochs=20, batch_size=16, lr=3e-2))
    assert len(cv.scores) == len(pool) and set(cv.features) == {0, 1}
    assert len(trained_on) == 2 * (len(RM.FEATURES) + 1)  # three candidates chosen on validation, one final, per fold
    for fold in (0, 1):
        scored = {prompt_key(ex["instruction"]) for ex in pool if RM.example_fold(ex, 2, 0) == fold}
        for keys in trained_on[fold * 4:(fold + 1) * 4]:
            assert keys.isdisjoint(scored)
    picks = [int(np.argmax(s)) for s in cv.scores]
    assert np.mean([k == 2 for k in picks]) > 0.9  # the longest, the winner here


@pytest.mark.slow
def test_real_encoder_embeddings():
    vectors = RM.encoder_embedder("minilm-l6", 64)(["a short answer", "another one, a little longer"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)
