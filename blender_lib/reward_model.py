"""A reward model learned from every real judgment: Bradley-Terry on frozen encoder embeddings.

PairRanker fine-tunes a cross-encoder on a few hundred prompts, which a 2-core CPU cannot do at the
scale where it learns. This model takes the other road: each text (instruction or answer, up to
``max_length`` tokens) is embedded once by a frozen encoder and cached, and a linear score

    r(x, y, m) = w . phi(x, y, m)

over features ``phi`` of the instruction ``x``, the answer ``y`` and the model ``m`` that wrote it is
trained on *all* pairwise preferences of the training prompts (:mod:`blender_lib.preferences`,
~90k decisive pairs on AlpacaEval alone) with PairRanker's own loss, the pairwise logistic loss

    -log sigma(r(first) - r(second))       (weighted; ties left out)

in seconds. It then ranks a prompt's candidates by ``r`` (one pass per answer, like a reward model),
so it serves as a ranker, as RMR's reward model and as a source of router labels.

Feature sets (``FEATURES``), from least to most informed:
- ``text``: the answer's embedding, its elementwise product with the instruction's, and three
  surface features (log word count, a code block, line count);
- ``text+model``: plus a one-hot of the model (the ensemble knows who wrote each answer);
- ``text+model+length``: plus the model one-hot times log word count (how length helps differs by model).
:func:`choose_features` picks one on validation prompts carved out of the training prompts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import paths
from .analysis import selections_from_scores, win_rate_vs_reference
from .preferences import Preference, decisive, prompt_fold, prompt_key

FEATURES = ("text", "text+model", "text+model+length")
SURFACE = 3  # log word count, has a code block, lines / 10


# -- embeddings, computed once per text and cached ---------------------------------------------------

def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class EmbeddingCache:
    """Embeddings by text hash, stored as numbered ``.npz`` shards under ``folder``: a shard is written
    (atomically) after each chunk, so an interrupted run keeps what it embedded and resumes."""

    folder: Path
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def open(cls, encoder: str, max_length: int, root: Path | None = None) -> EmbeddingCache:
        folder = (root or paths.cache_dir()) / "embeddings" / f"{encoder}-{max_length}"
        folder.mkdir(parents=True, exist_ok=True)
        cache = cls(folder)
        for shard in sorted(folder.glob("shard-*.npz")):
            with np.load(shard) as data:
                cache.vectors.update(zip(data["keys"].tolist(), data["vectors"]))
        return cache

    def missing(self, texts: Sequence[str]) -> list[str]:
        return sorted({t for t in texts if text_key(t) not in self.vectors}, key=lambda t: (len(t), t))

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        keys = [text_key(t) for t in texts]
        shard = self.folder / f"shard-{len(list(self.folder.glob('shard-*.npz'))):05d}.npz"
        tmp = shard.with_name(f".{shard.stem}.tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
        tmp.replace(shard)
        self.vectors.update(zip(keys, vectors.astype(np.float32)))

    def __getitem__(self, text: str) -> np.ndarray:
        try:
            return self.vectors[text_key(text)]
        except KeyError:
            raise KeyError(f"no embedding for the text {text[:60]!r}...: call embed_missing first") from None


def embed_missing(cache: EmbeddingCache, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray], *,
                  chunk: int = 512, progress: bool = True) -> int:
    """Embed the texts the cache lacks (shortest first, in chunks saved as they finish); returns how many."""
    from tqdm.auto import tqdm

    todo = cache.missing(texts)
    for start in tqdm(range(0, len(todo), chunk), desc="embedding", unit="chunk", disable=not progress or not todo):
        part = todo[start:start + chunk]
        cache.add(part, np.asarray(embed(part)))
    return len(todo)


def encoder_embedder(encoder: str, max_length: int, *, dtype: str = "bf16", batch_size: int = 32
                     ) -> Callable[[list[str]], np.ndarray]:
    """Embeddings from a packaged or hub model, loaded on first use: mean-pooled for an encoder
    (MiniLM), the last token's hidden state for a decoder-only model (SmolLM2)."""
    from .models import embed_texts, embed_texts_last_token, load_model

    loaded: dict[str, Any] = {}

    def embed(texts: list[str]) -> np.ndarray:
        if "model" not in loaded:
            loaded["model"] = load_model(encoder, dtype=dtype)
        model = loaded["model"]
        pooled = embed_texts_last_token if model.kind == "causal" else embed_texts
        return pooled(model, texts, batch_size=batch_size, max_length=max_length).numpy()

    return embed


# -- features and the linear Bradley-Terry model -----------------------------------------------------

def surface_features(text: str) -> np.ndarray:
    return np.array([np.log1p(len(text.split())), float("```" in text), text.count("\n") / 10], dtype=np.float32)


@dataclass(frozen=True)
class Featurizer:
    """phi(instruction, answer, model) for one feature set; ``models`` fixes the one-hot's columns (a
    model outside it gets no identity column, only its text features)."""

    embeddings: EmbeddingCache
    models: tuple[str, ...]
    features: str = "text+model"

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")

    def __call__(self, instruction: str, answer: str, model: str) -> np.ndarray:
        ex, ey = self.embeddings[instruction], self.embeddings[answer]
        surface = surface_features(answer)
        parts = [ey, ex * ey, surface]
        if self.features != "text":
            identity = np.zeros(len(self.models), dtype=np.float32)
            if model in self.models:
                identity[self.models.index(model)] = 1.0
            parts.append(identity)
            if self.features == "text+model+length":
                parts.append(identity * surface[0])
        return np.concatenate(parts).astype(np.float32)

    def pair_matrices(self, pairs: Sequence[Preference]) -> tuple[torch.Tensor, torch.Tensor]:
        rows: dict[tuple[str, str, str], np.ndarray] = {}  # an answer is in many pairs: build its row once

        def row(instruction: str, answer: str, model: str) -> np.ndarray:
            key = (instruction, answer, model)
            if key not in rows:
                rows[key] = self(instruction, answer, model)
            return rows[key]

        first = np.stack([row(p.instruction, p.first, p.first_model) for p in pairs])
        second = np.stack([row(p.instruction, p.second, p.second_model) for p in pairs])
        return torch.from_numpy(first), torch.from_numpy(second)


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 2048
    seed: int = 0


def pairwise_loss(score_first: torch.Tensor, score_second: torch.Tensor, label: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """PairRanker's loss on score differences: -log sigma(s_first - s_second) for a first-better pair
    (label 1), -log sigma(s_second - s_first) for label 0; weighted mean."""
    logits = score_first - score_second
    return (torch.nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none") * weight).mean()


@dataclass
class RewardModel:
    """A trained linear reward model and its learning curve."""

    featurizer: Featurizer
    linear: torch.nn.Linear
    curve: list[dict[str, float]] = field(default_factory=list)  # pairs seen -> held-out pairwise accuracy
    train_pairs: int = 0
    seconds: float = 0.0

    @torch.no_grad()
    def score(self, instruction: str, answers: Sequence[str], models: Sequence[str]) -> np.ndarray:
        x = torch.from_numpy(np.stack([self.featurizer(instruction, a, m) for a, m in zip(answers, models)]))
        return self.linear(x).squeeze(-1).numpy()

    def score_examples(self, examples: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        """One score per candidate of each MixInstruct-schema example."""
        return [self.score(ex["instruction"], [c["text"] for c in ex["candidates"]],
                           [c["model"] for c in ex["candidates"]]) for ex in examples]


def logit_accuracy(logit: torch.Tensor, label: torch.Tensor) -> float:
    """The share of decisive pairs whose logit ("first is better") orders them as the label does; a
    zero logit (the model's tie) counts half."""
    right = torch.where(logit == 0, torch.full_like(logit, 0.5), ((logit > 0).float() == label).float())
    return float(right.mean())


@torch.no_grad()
def pairwise_accuracy(linear: torch.nn.Linear, first: torch.Tensor, second: torch.Tensor, label: torch.Tensor) -> float:
    """The share of decisive pairs the model orders as the label does (ties of the model count half)."""
    return logit_accuracy((linear(first) - linear(second)).squeeze(-1), label)


# -- one minibatch loop for every head trained on cached embeddings ----------------------------------

@dataclass
class FitReport:
    """What one training run did: its learning curve, the epoch kept and how fast it went."""

    curve: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("nan")
    train_rows: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    loaded: bool = False


def fit(net: torch.nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], n_rows: int, settings: Any, *,
        validate: Callable[[], float] | None, curve: Callable[[], float] | None = None, curve_points: int = 8,
        curve_name: str = "held-out") -> FitReport:
    """Minibatch AdamW over ``n_rows`` training rows (``batch_loss`` takes their indices) with the
    ``epochs``, ``lr``, ``weight_decay``, ``batch_size`` and ``seed`` of ``settings``. With
    ``validate`` (higher is better) the parameters of its best epoch are kept, else the last ones.
    ``curve()`` is read ``curve_points`` times in the first epoch and after every epoch, under
    ``curve_name``: the learning curve, which decides nothing."""
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    report = FitReport(train_rows=n_rows)
    best_state, seen, start = None, 0, time.perf_counter()
    steps = -(-n_rows // settings.batch_size)
    early = max(1, steps // curve_points)
    for epoch in range(1, settings.epochs + 1):
        net.train()
        order = torch.randperm(n_rows, generator=generator)
        for step, begin in enumerate(range(0, n_rows, settings.batch_size)):
            loss = batch_loss(order[begin:begin + settings.batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += min(settings.batch_size, n_rows - begin)
            if curve is not None and epoch == 1 and (step + 1) % early == 0 and step != steps - 1:
                net.eval()
                report.curve.append({"pairs seen": seen, "epoch": epoch, curve_name: curve()})
                net.train()
        net.eval()
        if curve is not None:
            report.curve.append({"pairs seen": seen, "epoch": epoch, curve_name: curve()})
        if validate is None:
            report.best_epoch = epoch
            continue
        score = validate()
        if best_state is None or score > report.best_validation:
            report.best_epoch, report.best_validation = epoch, score
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    report.seconds = time.perf_counter() - start
    report.rows_per_second = seen / report.seconds if report.seconds else float("nan")
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return report


def train_reward_model(pairs: Sequence[Preference], featurizer: Featurizer, settings: TrainingSettings = TrainingSettings(),
                       *, validation: Sequence[Preference] = (), curve_points: int = 10) -> RewardModel:
    """Fit the linear model on the decisive ``pairs`` (ties carry no order), recording the pairwise
    accuracy on the decisive ``validation`` pairs ``curve_points`` times in the first epoch, then after
    each epoch (the learning curve; it decides nothing)."""
    pairs = decisive(pairs)
    if not pairs:
        raise ValueError("no decisive training pair: every pair is a tie or the list is empty")
    start = time.perf_counter()
    first, second = featurizer.pair_matrices(pairs)
    label = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    weight = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
    held = decisive(validation)
    val = (*featurizer.pair_matrices(held), torch.tensor([p.label for p in held], dtype=torch.float32)) if held else None
    torch.manual_seed(settings.seed)
    linear = torch.nn.Linear(first.shape[1], 1)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return pairwise_loss(linear(first[rows]).squeeze(-1), linear(second[rows]).squeeze(-1), label[rows], weight[rows])

    report = fit(linear, batch_loss, len(pairs), settings, validate=None, curve_points=curve_points,
                 curve=(lambda: pairwise_accuracy(linear, *val)) if val is not None else None,
                 curve_name="held-out pairwise accuracy")
    return RewardModel(featurizer, linear, report.curve, train_pairs=len(pairs), seconds=time.perf_counter() - start)


# -- cross-validation by prompt on a candidate pool ---------------------------------------------------

INNER_SEED_OFFSET = 1_000  # the hash seed of validation splits inside the training prompts: independent of the folds'


def example_fold(example: Mapping[str, Any], folds: int, seed: int) -> int:
    return prompt_fold(prompt_key(example["instruction"]), folds, seed)


def models_of(pool: Sequence[Mapping[str, Any]], prefs: Sequence[Preference]) -> tuple[str, ...]:
    """Every model that wrote an answer of the preferences or the pool: the one-hot's columns."""
    return tuple(sorted({p.first_model for p in prefs} | {p.second_model for p in prefs}
                        | {c["model"] for ex in pool for c in ex["candidates"]}))


def curve_pairs_of_fold(prefs: Sequence[Preference], fold: int, *, folds: int, seed: int, limit: int) -> list[Preference]:
    """A seeded sample of ``limit`` decisive pairs on the fold's (held-out) prompts, any source: what a
    learning curve reads. It decides nothing."""
    held_out = decisive([p for p in prefs if prompt_fold(p.prompt_key, folds, seed) == fold])
    sample = np.random.default_rng(seed).choice(len(held_out), size=min(limit, len(held_out)), replace=False)
    return [held_out[int(k)] for k in sorted(sample)]


def choose_features(train: Sequence[Preference], pool_train: Sequence[Mapping[str, Any]], embeddings: EmbeddingCache,
                    models: tuple[str, ...], settings: TrainingSettings, *, folds: int, seed: int, score_key: str,
                    candidates: Sequence[str] = FEATURES) -> tuple[str, dict[str, float]]:
    """The feature set whose model picks the best answers on validation prompts: a seeded half of the
    training prompts (a different hash seed than the folds) is held out, each set is trained on the rest."""
    inner = lambda key: prompt_fold(key, 2, seed + INNER_SEED_OFFSET)  # noqa: E731 - an inner split, independent of the folds
    fit = [p for p in train if inner(p.prompt_key) == 0]
    val_pool = [ex for ex in pool_train if inner(prompt_key(ex["instruction"])) == 1]
    scores = {}
    for features in candidates:
        model = train_reward_model(fit, Featurizer(embeddings, models, features), settings)
        picks = selections_from_scores(model.score_examples(val_pool))
        scores[features] = win_rate_vs_reference(val_pool, picks, key=score_key) / 100
    return max(scores, key=lambda k: (scores[k], -candidates.index(k))), scores


@dataclass
class RewardModelCV:
    """Held-out scores of the candidates of every pool example, and what each fold chose and learned."""

    scores: list[np.ndarray]
    features: dict[int, str]
    validation: dict[int, dict[str, float]]
    curves: dict[int, list[dict[str, float]]]
    train_pairs: dict[int, int]
    seconds: float
    # fold -> each pool example's scores by that fold's model (in-sample on its training prompts): the
    # rewards a router distils from, as ZOOTER distils from a reward model on its training queries
    fold_scores: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def curve_table(self) -> pd.DataFrame:
        """The learning curves of every fold, one row per point, with a ``fold`` column."""
        return pd.DataFrame([{**point, "fold": str(fold)} for fold, points in self.curves.items() for point in points])


def cross_validate_reward_model(pool: Sequence[Mapping[str, Any]], prefs: Sequence[Preference], embeddings: EmbeddingCache, *,
                                folds: int = 2, seed: int = 0, settings: TrainingSettings = TrainingSettings(),
                                score_key: str, features: str | None = None, curve_pairs: int = 5_000) -> RewardModelCV:
    """For each fold: train on every preference whose prompt is in the other folds (any source), choose
    the feature set on validation prompts inside them (``features=None``), retrain on all of them, and
    score the fold's pool examples. No pool prompt is ever scored by a model trained on it."""
    start = time.perf_counter()
    models = models_of(pool, prefs)
    scores: list[np.ndarray | None] = [None] * len(pool)
    out = RewardModelCV([], {}, {}, {}, {}, 0.0)
    for fold in range(folds):
        train = [p for p in prefs if prompt_fold(p.prompt_key, folds, seed) != fold]
        pool_train = [ex for ex in pool if example_fold(ex, folds, seed) != fold]
        test = [n for n, ex in enumerate(pool) if example_fold(ex, folds, seed) == fold]
        if features is None:
            chosen, out.validation[fold] = choose_features(train, pool_train, embeddings, models, settings,
                                                           folds=folds, seed=seed, score_key=score_key)
        else:
            chosen = features
        model = train_reward_model(train, Featurizer(embeddings, models, chosen), settings,
                                   validation=curve_pairs_of_fold(prefs, fold, folds=folds, seed=seed, limit=curve_pairs))
        out.features[fold], out.curves[fold], out.train_pairs[fold] = chosen, model.curve, model.train_pairs
        out.fold_scores[fold] = model.score_examples(pool)
        for n in test:
            scores[n] = out.fold_scores[fold][n]
    out.scores = [s for s in scores if s is not None]
    if len(out.scores) != len(pool):
        raise ValueError("some pool examples fell in no fold")
    out.seconds = time.perf_counter() - start
    return out


def texts_to_embed(pool: Sequence[Mapping[str, Any]], prefs: Sequence[Preference]) -> list[str]:
    """Every instruction and answer the cross-validation reads."""
    texts = {t for p in prefs for t in (p.instruction, p.first, p.second)}
    texts |= {ex["instruction"] for ex in pool} | {c["text"] for ex in pool for c in ex["candidates"]}
    return sorted(texts)
