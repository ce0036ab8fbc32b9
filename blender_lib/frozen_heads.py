"""PairRanker's pairwise comparison and ZOOTER's router, as small heads on frozen, cached embeddings.

A cross-encoder PairRanker or a fine-tuned router does not learn on a 2-core CPU at the scale where it
learns (chapter 6's first attempts: 40 and 400 prompts, one epoch). Both heads here keep the papers'
interfaces and losses but read the embeddings that :mod:`blender_lib.reward_model` computes once per
text and caches, so they train on every judgment of the training prompts in about a minute.

**PairRanker head.** A logit for "answer a beats answer b" on instruction x, from both answers:

    f(x, a, b) = w . (phi_a - phi_b) + g([phi_a, phi_b]) - g([phi_b, phi_a])

``phi`` is the reward model's feature vector (:class:`reward_model.Featurizer`). The linear part *is*
the Bradley-Terry reward model; ``g``, a one-hidden-layer MLP over both answers' features, adds what
depends on the pair. ``f`` is antisymmetric by construction (f(x, a, b) = -f(x, b, a)), trained with
PairRanker's pairwise logistic loss, and aggregated as PairRanker is: max-logits over the full N x N
matrix, or one bubble pass (N - 1 comparisons). It is *not* a cross-encoder: the encoder never reads the
two answers together, only the head does.

**Router head.** ZOOTER's router maps the query alone to a distribution over the N models and is
trained with KL divergence to the per-query reward distribution (optionally tag-enhanced,
:func:`zooter.enhance_labels`). Here the query's frozen embedding feeds a linear softmax layer.

Both pick their epoch on validation prompts carved out of the training prompts (best-on-validation),
record a learning curve on the held-out fold (it decides nothing), and are cached by a key of their
settings and a fingerprint of their training data, so a rerun loads instead of training.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import paths
from .preferences import Preference, decisive, prompt_fold, prompt_key
from .rankers import bubble_winner, max_logits
from .analysis import selections_from_scores
from .reward_model import (INNER_SEED_OFFSET, EmbeddingCache, Featurizer, FitReport, curve_pairs_of_fold, example_fold, fit,
                           logit_accuracy, models_of)
from .zooter import enhance_labels, kl_loss, reward_labels


def inner_validation(key: str, seed: int) -> bool:
    """Whether a training prompt (by its key) is an inner validation prompt: a seeded fifth of them (the
    heads keep most prompts to train on)."""
    return prompt_fold(key, 5, seed + INNER_SEED_OFFSET) == 0


@dataclass(frozen=True)
class HeadSettings:
    """The PairRanker head's defaults (chosen on chapter 6's inner validation prompts: a wider pair
    term, 256 units, or smaller batches overfit within 3 epochs and picked worse answers)."""

    hidden: int = 64
    epochs: int = 15
    lr: float = 3e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    batch_size: int = 2048
    seed: int = 0


ROUTER_SETTINGS = HeadSettings(hidden=0, epochs=200, lr=1e-3, weight_decay=0.1, dropout=0.0, batch_size=64)


def data_fingerprint(rows: Sequence[Any]) -> str:
    """A short hash of the training rows' text (any repr-stable values): the cache key's data part."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _cache_file(kind: str, key: Mapping[str, Any]):
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    folder = paths.cache_dir() / "frozen_heads" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.pt"


def _save(path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save leaves no half file


def _load_or_fit(path, net: nn.Module, train: Callable[[], FitReport]) -> FitReport:
    """The cached parameters and report at ``path`` when there are some, else ``train()``'s, then cached."""
    if path.exists():
        saved = torch.load(path, weights_only=False)
        net.load_state_dict(saved["state"])
        return FitReport(**{**saved["report"], "loaded": True})
    report = train()
    _save(path, {"state": net.state_dict(), "report": asdict(report)})
    return report


# -- the PairRanker head -----------------------------------------------------------------------------

class PairHead(nn.Module):
    """f(a, b) = w . (a - b) + g([a, b]) - g([b, a]) on two answers' feature rows: antisymmetric."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1, bias=False)
        self.pair = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        nn.init.zeros_(self.pair[-1].weight)  # it starts as the Bradley-Terry model; the pair term grows from zero

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        both, swapped = torch.cat([a, b], dim=-1), torch.cat([b, a], dim=-1)
        return (self.linear(a - b) + self.pair(both) - self.pair(swapped)).squeeze(-1)


@torch.no_grad()
def pair_accuracy(head: PairHead, first: torch.Tensor, second: torch.Tensor, label: torch.Tensor) -> float:
    """The share of decisive pairs ordered as the label orders them (a zero logit counts half)."""
    return logit_accuracy(head(first, second), label)


@dataclass
class TrainedPairHead:
    featurizer: Featurizer
    head: PairHead
    report: FitReport

    @torch.no_grad()
    def matrix(self, instruction: str, answers: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """M[i, j] = f(x, answer_i, answer_j), the logit that i beats j (antisymmetric, zero diagonal)."""
        rows = torch.from_numpy(np.stack([self.featurizer(instruction, a, m) for a, m in zip(answers, models)]))
        n = len(rows)
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        return self.head(rows[i.flatten()], rows[j.flatten()]).reshape(n, n).numpy().astype(float)

    def example_matrices(self, examples: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        return [self.matrix(ex["instruction"], [c["text"] for c in ex["candidates"]], [c["model"] for c in ex["candidates"]])
                for ex in examples]


def _pair_tensors(featurizer: Featurizer, pairs: Sequence[Preference]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    first, second = featurizer.pair_matrices(pairs)
    return first, second, torch.tensor([p.label for p in pairs], dtype=torch.float32)


def pair_fingerprint(pairs: Sequence[Preference]) -> str:
    return data_fingerprint([(p.pair_id, p.instruction, p.first, p.second, p.first_model, p.second_model, p.label, p.weight)
                             for p in pairs])


def train_pair_head(train: Sequence[Preference], featurizer: Featurizer, settings: HeadSettings = HeadSettings(), *,
                    curve_pairs: Sequence[Preference] = (), cache_tag: str = "") -> TrainedPairHead:
    """Train on the decisive pairs of ``train`` whose prompts are not inner-validation prompts; keep the
    epoch with the best pairwise accuracy on those that are. ``curve_pairs`` (held-out pairs) give the
    learning curve. The result is cached under (settings, features, encoder, data fingerprint)."""
    pairs = decisive(train)
    fit_pairs = [p for p in pairs if not inner_validation(p.prompt_key, settings.seed)]
    val_pairs = [p for p in pairs if inner_validation(p.prompt_key, settings.seed)]
    if not fit_pairs or not val_pairs:
        raise ValueError(f"need decisive pairs both to fit and to validate on; got {len(fit_pairs)} and {len(val_pairs)}")
    curve_set = decisive(curve_pairs)
    dim = len(featurizer(fit_pairs[0].instruction, fit_pairs[0].first, fit_pairs[0].first_model))
    torch.manual_seed(settings.seed)
    head = PairHead(dim, settings.hidden, settings.dropout)
    key = {"kind": "pair_head", "settings": asdict(settings), "features": featurizer.features, "models": featurizer.models,
           "encoder": featurizer.embeddings.folder.name, "train": pair_fingerprint(pairs),
           "curve": pair_fingerprint(curve_set), "tag": cache_tag}

    def train_head() -> FitReport:
        first, second, label = _pair_tensors(featurizer, fit_pairs)
        weight = torch.tensor([p.weight for p in fit_pairs], dtype=torch.float32)
        val = _pair_tensors(featurizer, val_pairs)
        held = _pair_tensors(featurizer, curve_set) if curve_set else None

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            logits = head(first[rows], second[rows])
            return (nn.functional.binary_cross_entropy_with_logits(logits, label[rows], reduction="none") * weight[rows]).mean()

        return fit(head, batch_loss, len(fit_pairs), settings, validate=lambda: pair_accuracy(head, *val),
                   curve=(lambda: pair_accuracy(head, *held)) if held else None)

    report = _load_or_fit(_cache_file("pair_head", key), head, train_head)
    head.eval()
    return TrainedPairHead(featurizer, head, report)


@dataclass
class PairHeadCV:
    """Held-out comparison matrices of every pool example and what each fold's head did."""

    matrices: list[np.ndarray]
    reports: dict[int, FitReport]

    @property
    def max_logits_selections(self) -> list[int]:
        return selections_from_scores([max_logits(m) for m in self.matrices])

    @property
    def bubble_selections(self) -> list[int]:
        return [bubble_winner(m) for m in self.matrices]

    def curve_table(self):
        import pandas as pd

        return pd.DataFrame([{**{k: v for k, v in point.items() if k != "held-out"},
                              "held-out pairwise accuracy": point["held-out"], "fold": str(fold)}
                             for fold, report in self.reports.items() for point in report.curve])


def cross_validate_pair_head(pool: Sequence[Mapping[str, Any]], prefs: Sequence[Preference], embeddings: EmbeddingCache, *,
                             features: Mapping[int, str] | str, folds: int = 2, seed: int = 0,
                             settings: HeadSettings = HeadSettings(), curve_pairs: int = 5_000) -> PairHeadCV:
    """For each fold: train a head on every preference of the other folds' prompts (any source) and
    compute the fold's pool examples' comparison matrices. ``features``: the feature set, or one per
    fold (e.g. what :func:`reward_model.cross_validate_reward_model` chose)."""
    models = models_of(pool, prefs)
    matrices: list[np.ndarray | None] = [None] * len(pool)
    out = PairHeadCV([], {})
    for fold in range(folds):
        chosen = features if isinstance(features, str) else features[fold]
        train = [p for p in prefs if prompt_fold(p.prompt_key, folds, seed) != fold]
        trained = train_pair_head(train, Featurizer(embeddings, models, chosen), settings,
                                  curve_pairs=curve_pairs_of_fold(prefs, fold, folds=folds, seed=seed, limit=curve_pairs),
                                  cache_tag=f"fold {fold}/{folds} seed {seed}")
        out.reports[fold] = trained.report
        test = [n for n, ex in enumerate(pool) if example_fold(ex, folds, seed) == fold]
        for n, m in zip(test, trained.example_matrices([pool[n] for n in test])):
            matrices[n] = m
    if any(m is None for m in matrices):
        raise ValueError("some pool examples fell in no fold")
    out.matrices = [m for m in matrices if m is not None]
    return out


# -- the router head ---------------------------------------------------------------------------------

@torch.no_grad()
def _label_kl(router: nn.Module, queries: torch.Tensor, labels: torch.Tensor) -> float:
    return float(kl_loss(router(queries), labels))


@dataclass
class RouterCV:
    """Held-out routing of every pool example: the chosen candidate, the router's probabilities."""

    choices: list[int]
    probabilities: np.ndarray
    reports: dict[int, FitReport]


def router_labels(rewards: np.ndarray, temperature: float, tags: Sequence[Any] | None, beta: float) -> np.ndarray:
    """ZOOTER's training targets: softmax of z-scored rewards, tag-enhanced with ``beta`` (tag means
    are taken over the rows given: pass training prompts only). A NaN reward (a model that did not
    answer that query, or was not scored) gets label 0 and the softmax runs over the others."""
    known = np.isfinite(rewards)
    if known.all():
        labels = reward_labels(rewards, temperature)
        return enhance_labels(labels, tags, beta) if tags is not None and beta > 0 else labels
    if tags is not None and beta > 0:
        raise ValueError("tag enhancement needs every model's reward on every query; this pool is ragged")
    labels = np.zeros(rewards.shape)
    for n, row in enumerate(rewards):
        if known[n].any():
            labels[n, known[n]] = reward_labels(row[known[n]][None, :], temperature)[0]
    return labels


def _router_columns(pool: Sequence[Mapping[str, Any]], models: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """The router's models (the rewards' columns) and which of them answer each example. With the same
    candidates in every example they are those, in order; a ragged pool needs ``models`` named."""
    orders = {tuple(c["model"] for c in ex["candidates"]) for ex in pool}
    if models is None:
        if len(orders) != 1:
            raise ValueError("the candidate models differ between examples (a ragged pool): pass models=, the "
                             "rewards' columns (e.g. own_data.models_in(pool)), with NaN where a model did not answer")
        models = list(next(iter(orders)))
    answered = np.array([[m in {c["model"] for c in ex["candidates"]} for m in models] for ex in pool])
    strays = sorted({c["model"] for ex in pool for c in ex["candidates"]} - set(models))
    if strays:
        raise ValueError(f"models {strays} answer some examples but are not among the router's models {list(models)}")
    return list(models), answered


def cross_validate_router_head(pool: Sequence[Mapping[str, Any]], rewards: np.ndarray | Mapping[int, np.ndarray],
                               embeddings: EmbeddingCache, *,
                               folds: int = 2, seed: int = 0, temperature: float = 1.0, tags: Sequence[Any] | None = None,
                               beta: float = 0.0, settings: HeadSettings = ROUTER_SETTINGS,
                               models: Sequence[str] | None = None) -> RouterCV:
    """For each fold: labels from the other folds' rewards (``rewards[n]``: one per model of pool
    example n; or fold -> such a matrix, e.g. a reward model trained without that fold, of which only
    the training rows are read), a linear softmax router on the frozen query embedding trained with KL
    to them (epoch kept on inner validation prompts), and the fold's queries routed to their most
    probable model *among those that answer them*. The router never reads an answer or a held-out reward.

    The rewards' columns are the candidates' models when every example has the same ones, in order;
    for a ragged pool, ``models`` names them and a model that did not answer (or was not scored) has a
    NaN reward there (label 0; see :func:`router_labels`). ``choices`` index each example's candidates."""
    models, answered = _router_columns(pool, models)
    by_fold = {f: np.asarray(rewards[f] if isinstance(rewards, Mapping) else rewards, dtype=float) for f in range(folds)}
    for f, matrix in by_fold.items():
        if matrix.shape != (len(pool), len(models)):
            raise ValueError(f"rewards (fold {f}) must have shape {(len(pool), len(models))}, got {matrix.shape}")
        if (np.isfinite(matrix) & ~answered).any():
            raise ValueError(f"rewards (fold {f}) score a model on an example it did not answer")
    queries = torch.from_numpy(np.stack([embeddings[ex["instruction"]] for ex in pool]))
    keys = [prompt_key(ex["instruction"]) for ex in pool]
    fold_of = [example_fold(ex, folds, seed) for ex in pool]
    probabilities = np.zeros((len(pool), len(models)))
    reports = {}
    for fold in range(folds):
        rewards = by_fold[fold]
        train = [n for n in range(len(pool)) if fold_of[n] != fold and np.isfinite(rewards[n]).any()]
        test = [n for n in range(len(pool)) if fold_of[n] == fold]
        labels = router_labels(rewards[train], temperature, [tags[n] for n in train] if tags is not None else None, beta)
        inner = np.array([inner_validation(keys[n], seed) for n in train])
        fit_rows, val_rows = np.flatnonzero(~inner), np.flatnonzero(inner)
        x, y = queries[train], torch.from_numpy(labels).float()
        scored_test = [n for n in test if np.isfinite(rewards[n]).any()]
        held_y = torch.from_numpy(router_labels(rewards[scored_test], temperature, None, 0.0)).float()  # the curve only
        torch.manual_seed(settings.seed)
        router = nn.Linear(x.shape[1], len(models))
        key = {"kind": "router_head", "settings": asdict(settings), "encoder": embeddings.folder.name, "fold": fold,
               "folds": folds, "seed": seed, "temperature": temperature, "beta": beta,
               "data": data_fingerprint([(keys[n], rewards[n].round(6).tolist(), tags[n] if tags is not None else None)
                                         for n in range(len(pool))])}
        path = _cache_file("router_head", key)
        fit_x, fit_y = x[fit_rows], y[fit_rows]
        reports[fold] = _load_or_fit(path, router, lambda: fit(
            router, lambda rows: kl_loss(router(fit_x[rows]), fit_y[rows]), len(fit_rows), settings,
            validate=lambda: -_label_kl(router, x[val_rows], y[val_rows]),
            curve=lambda: -_label_kl(router, queries[scored_test], held_y), curve_points=1))
        with torch.no_grad():
            probabilities[test] = torch.softmax(router(queries[test]), dim=-1).numpy()
    if not answered.all():  # a ragged pool: each query's distribution over the models that answered it
        probabilities = np.where(answered, probabilities, 0.0)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    index = [{c["model"]: k for k, c in enumerate(ex["candidates"])} for ex in pool]
    return RouterCV([index[n][models[int(k)]] for n, k in enumerate(probabilities.argmax(axis=1))], probabilities, reports)


# -- RouteLLM's matrix-factorisation router ------------------------------------------------------------

MF_SETTINGS = HeadSettings(hidden=0, epochs=60, lr=3e-3, weight_decay=1e-4, dropout=0.0, batch_size=256)
MF_DIM = 64


class MatrixFactorizationRouter(nn.Module):
    """RouteLLM's matrix-factorisation router on a frozen query embedding e_q: model m's score on q is
    s(m, q) = w . (v_m * (P e_q + b)), with v_m a learned unit-norm model vector, and
    P(m beats m' on q) = sigmoid(s(m, q) - s(m', q)). It learns from comparisons between any two models,
    so every model with judgments on a training query teaches it, not only the two it routes between."""

    def __init__(self, query_dim: int, n_models: int, dim: int = MF_DIM):
        super().__init__()
        self.models = nn.Embedding(n_models, dim)
        self.project = nn.Linear(query_dim, dim)
        self.classify = nn.Linear(dim, 1, bias=False)

    def forward(self, queries: torch.Tensor, models: torch.Tensor) -> torch.Tensor:
        return self.classify(nn.functional.normalize(self.models(models), dim=-1) * self.project(queries)).squeeze(-1)

    def margin(self, queries: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self(queries, first) - self(queries, second)


def comparisons(quality: np.ndarray, rows: Sequence[int], *, ties: bool = True) -> np.ndarray:
    """(query row, model a, model b, P(a beats b)) for every pair of models with a quality on each
    query: 1 or 0 where one is better, 0.5 for a tie (``ties=True``: a tie says neither model is the
    better call for that query). A model's missing quality (NaN) makes no comparison."""
    out = []
    for n in rows:
        known = [m for m in range(quality.shape[1]) if not np.isnan(quality[n, m])]
        for i, a in enumerate(known):
            for b in known[i + 1:]:
                if quality[n, a] != quality[n, b]:
                    out.append((n, a, b, float(quality[n, a] > quality[n, b])))
                elif ties:
                    out.append((n, a, b, 0.5))
    return np.array(out, dtype=float).reshape(-1, 4)


def _comparison_loss(router: MatrixFactorizationRouter, queries: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    query, first, second = rows[:, 0].long(), rows[:, 1].long(), rows[:, 2].long()
    return nn.functional.binary_cross_entropy_with_logits(router.margin(queries[query], first, second), rows[:, 3])


@torch.no_grad()
def _negative_loss(router: MatrixFactorizationRouter, queries: torch.Tensor, rows: torch.Tensor) -> float:
    return -float(_comparison_loss(router, queries, rows))


@dataclass
class MFRouterCV:
    """Held-out model scores s(m, q) of every query (rows: queries, columns: ``models``)."""

    models: tuple[str, ...]
    scores: np.ndarray
    reports: dict[int, FitReport]
    train_comparisons: dict[int, int]

    def win_probability(self, strong: str, weak: str) -> np.ndarray:
        """P(strong beats weak) per query: RouteLLM's routing score."""
        margin = self.scores[:, self.models.index(strong)] - self.scores[:, self.models.index(weak)]
        return 1.0 / (1.0 + np.exp(-margin))


def cross_validate_mf_router(prompts: Sequence[str], quality: np.ndarray, models: Sequence[str], embeddings: EmbeddingCache, *,
                             folds: int = 2, seed: int = 0, ties: bool = True, dim: int = MF_DIM,
                             settings: HeadSettings = MF_SETTINGS) -> MFRouterCV:
    """For each fold (by prompt): the router trained with binary cross-entropy on every comparison of
    two models on the other folds' queries (``quality``: queries x models, NaN where a model has no
    quality), its epoch kept on inner validation prompts; the fold's queries scored. It never reads an
    answer, nor a held-out quality."""
    quality = np.asarray(quality, dtype=float)
    if quality.shape != (len(prompts), len(models)):
        raise ValueError(f"quality must have shape {(len(prompts), len(models))} (prompts x models), got {quality.shape}")
    queries = torch.from_numpy(np.stack([embeddings[p] for p in prompts]))
    keys = [prompt_key(p) for p in prompts]
    fold_of = [prompt_fold(k, folds, seed) for k in keys]
    scores = np.zeros(quality.shape)
    reports, counts = {}, {}
    for fold in range(folds):
        train = [n for n in range(len(prompts)) if fold_of[n] != fold]
        test = [n for n in range(len(prompts)) if fold_of[n] == fold]
        inner = [inner_validation(keys[n], seed) for n in train]
        fit_rows = torch.from_numpy(comparisons(quality, [n for n, v in zip(train, inner) if not v], ties=ties)).float()
        val_rows = torch.from_numpy(comparisons(quality, [n for n, v in zip(train, inner) if v], ties=ties)).float()
        held_rows = torch.from_numpy(comparisons(quality, test, ties=ties)).float()  # the curve only
        if not len(fit_rows) or not len(val_rows):
            raise ValueError(f"fold {fold}: {len(fit_rows)} training and {len(val_rows)} validation comparisons; "
                             "the router needs both (more queries, or models that differ on them)")
        torch.manual_seed(settings.seed)
        router = MatrixFactorizationRouter(queries.shape[1], len(models), dim)
        key = {"kind": "mf_router", "settings": asdict(settings), "encoder": embeddings.folder.name, "fold": fold,
               "folds": folds, "seed": seed, "ties": ties, "dim": dim, "models": list(models),
               "data": data_fingerprint([(keys[n], np.round(quality[n], 6).tolist()) for n in range(len(prompts))])}
        path = _cache_file("mf_router", key)
        reports[fold] = _load_or_fit(path, router, lambda: fit(
            router, lambda batch: _comparison_loss(router, queries, fit_rows[batch]), len(fit_rows), settings,
            validate=lambda: _negative_loss(router, queries, val_rows),
            curve=(lambda: _negative_loss(router, queries, held_rows)) if len(held_rows) else None,
            curve_points=1, curve_name="held-out -BCE"))
        counts[fold] = len(fit_rows)
        with torch.no_grad():
            everyone = torch.arange(len(models))
            scores[test] = router(queries[test].repeat_interleave(len(models), 0), everyone.repeat(len(test))
                                  ).reshape(len(test), len(models)).numpy()
    return MFRouterCV(tuple(models), scores, reports, counts)


# -- every method on the same held-out prompts ---------------------------------------------------------

PAIR_MAX_LOGITS, PAIR_BUBBLE = "PairRanker head (max-logits)", "PairRanker head (bubble)"
RMR = "RMR (our reward model)"  # the offline stand-in of RMR's reward model: see the module docstring
ROUTER_GPT4, ROUTER_TAGS, ROUTER_DISTILLED = ("ZOOTER router head (GPT-4 verdicts)", "ZOOTER router head (GPT-4 verdicts, source tags beta {beta})",
                                              "ZOOTER router head (distilled from our reward model)")
BEST_SINGLE, LONGEST, RANDOM, ORACLE = "Best single on training folds", "Longest answer", "Random", "Oracle (GPT-4 verdicts)"


@dataclass
class HeldOutComparison:
    """Each selector's pick on every pool example, all made by models that never trained on its prompt."""

    selections: dict[str, list[int]]
    reward: Any  # reward_model.RewardModelCV
    pair: PairHeadCV
    routers: dict[str, RouterCV]
    best_by_fold: dict[int, str]
    seconds: dict[str, float]


def compare_held_out(pool: Sequence[Mapping[str, Any]], prefs: Sequence[Preference], embeddings: EmbeddingCache, *,
                     folds: int = 2, seed: int = 0, score_key: str, reward: Any = None, reward_settings: Any = None,
                     head_settings: HeadSettings = HeadSettings(), router_settings: HeadSettings = ROUTER_SETTINGS,
                     beta: float = 0.3, temperature: float = 1.0) -> HeldOutComparison:
    """RMR with our reward model, the PairRanker head (max-logits and bubble), three router heads
    (GPT-4 verdicts as rewards; the same with AlpacaEval-source tag enhancement; distilled from our
    reward model, ZOOTER's own setting) and the baselines, on the folds of :func:`example_fold`.
    ``reward``: a finished :func:`reward_model.cross_validate_reward_model` on this pool and these
    folds (else it is run here with ``reward_settings``)."""
    from .selectors import random_scores
    from .analysis import oracle_selections, word_counts
    from .cross_validation import best_single_selections
    from .reward_model import TrainingSettings, cross_validate_reward_model
    from .zooter import data_tags, metric_rewards

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if reward is None:
        reward = cross_validate_reward_model(pool, prefs, embeddings, folds=folds, seed=seed, score_key=score_key,
                                             settings=reward_settings or TrainingSettings(seed=seed))
    seconds["reward model"] = time.perf_counter() - start
    start = time.perf_counter()
    pair = cross_validate_pair_head(pool, prefs, embeddings, features=reward.features, folds=folds, seed=seed,
                                    settings=head_settings)
    seconds["PairRanker head"] = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = metric_rewards(pool, score_key)
    distilled = {fold: np.stack(scores) for fold, scores in reward.fold_scores.items()}
    tags = data_tags(pool, "first")
    common = {"folds": folds, "seed": seed, "temperature": temperature, "settings": router_settings}
    routers = {ROUTER_GPT4: cross_validate_router_head(pool, verdicts, embeddings, **common),
               ROUTER_TAGS.format(beta=beta): cross_validate_router_head(pool, verdicts, embeddings, tags=tags, beta=beta, **common),
               ROUTER_DISTILLED: cross_validate_router_head(pool, distilled, embeddings, **common)}
    seconds["routers"] = time.perf_counter() - start
    best, best_by_fold = best_single_selections(pool, {ex["id"]: example_fold(ex, folds, seed) for ex in pool}, key=score_key)
    selections = {RMR: selections_from_scores(reward.scores),
                  PAIR_MAX_LOGITS: pair.max_logits_selections, PAIR_BUBBLE: pair.bubble_selections,
                  **{name: run.choices for name, run in routers.items()},
                  BEST_SINGLE: best,
                  LONGEST: selections_from_scores(word_counts(pool)),
                  RANDOM: selections_from_scores(random_scores(pool, seed)),
                  ORACLE: oracle_selections(pool, key=score_key)}
    return HeldOutComparison(selections, reward, pair, routers, best_by_fold, seconds)


BACKBONE_COLUMNS = ("median answer tokens", "answers longer than the window %", "embedding texts/s", "head training pairs/s",
                    "reward model held-out pairwise accuracy %", "PairRanker head held-out pairwise accuracy %",
                    "RMR win rate %", "PairRanker head (bubble) win rate %", "best single win rate %")


def backbone_comparison(path: Any = None):
    """The stored measurements of ``benchmarks/bench_reward_backbones.py`` (backbones and windows on a
    seeded third of chapter 6's prompts), one row per (encoder, window), and how many prompts."""
    import pandas as pd

    source = Path(path) if path is not None else paths.BENCHMARKS_DIR / "reward_backbones.json"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run `.venv/bin/python benchmarks/bench_reward_backbones.py`")
    stored = json.loads(source.read_text(encoding="utf-8"))
    table = pd.DataFrame(stored["variants"]).set_index(["encoder", "max_length"])
    return table.loc[:, list(BACKBONE_COLUMNS)], stored["prompts"]
