"""PairRanker (LLM-Blender, Jiang, Ren & Lin, ACL 2023): which of two candidates answers better?

A cross-encoder reads the instruction and two candidates *together*::

    <source> x <candidate1> y_i <candidate2> y_j

and a small head on the hidden states at the three added special tokens gives one score per
Q-metric (BLEU, ROUGE-L, BERTScore, ...) for each candidate:

    s_i = head([h_src; h_ci])    s_j = head([h_src; h_cj])    logit(i beats j) = mean_m (s_i - s_j)
    loss = mean over metrics m with a non-zero Δ_m of  -log σ(sign(Δ_m) · (s_i,m - s_j,m)),
           Δ_m = metric_m(y_i) - metric_m(y_j)

Training draws ``pairs_per_input`` random candidate pairs per input each epoch, in a random
left/right order. At inference the pairs of N candidates fill a comparison matrix
M[i, j] = logit that i beats j (both orders are run, so M is not forced antisymmetric), which
*max-logits*, *max-wins* or a single *bubble* pass turn into a ranking or a winner.

Budgets: the source (instruction + input) keeps its first ``source_max_length`` tokens and each
candidate its first ``candidate_max_length`` tokens; longer texts are truncated, never rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_field_types, check_training_settings, config_from_dict
from .judge import ranks_from_scores
from .examples import TrainingInput, check_text_inputs, score_table, source_text, training_inputs
from .models import freeze_lower_layers, load_trainable_encoder
from .paths import cache_dir
from .persistence import SavedInFolder
from .training import TrainReport, improves, train

SPECIAL_TOKENS = ("<source>", "<candidate1>", "<candidate2>")
# How the three parts become one input: "joint" = [CLS] <source> x <candidate1> y_i <candidate2> y_j [SEP];
# "pairrm" = the published PairRM's three framed segments (see PairFormatter).
INPUT_LAYOUTS = ("joint", "pairrm")
RANKER_FILE = "pairranker.json"
AGGREGATIONS = ("max_logits", "max_wins", "bubble")


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class PairRankerConfig:
    """Everything that decides a trained PairRanker. Paper: DeBERTa-v3-large, lr 1e-5, 5 pairs/input."""

    backbone: str = "minilm-l6"  # any name blender_lib.models.load_model resolves to an encoder
    metrics: tuple[str, ...] = ("bleu", "rougeL", "bertscore")  # Q-metrics: one head output each
    source_max_length: int = 128
    candidate_max_length: int = 128
    pairs_per_input: int = 5
    lr: float = 5e-5  # MiniLM; the paper's 1e-5 is for DeBERTa-v3-large
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    epochs: int = 3
    batch_size: int = 8
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    eval_batch_size: int = 32
    seed: int = 42
    head_dropout: float = 0.1
    hidden_dropout: float | None = None  # None keeps the backbone's own
    attention_dropout: float | None = 0.0  # attention dropout forces a slower attention path: ~2x CPU time
    bf16: bool = True  # bf16 autocast (training and inference) where the device supports it
    device: str = "auto"
    special_tokens: tuple[str, str, str] = SPECIAL_TOKENS  # the source / candidate1 / candidate2 markers
    input_layout: str = "joint"  # one of INPUT_LAYOUTS; "pairrm" for the published PairRM checkpoints
    freeze_layers: int = 0  # freeze the embeddings + this many bottom layers (a CPU budget; the paper: 0)

    def __post_init__(self) -> None:
        check_field_types(self)
        object.__setattr__(self, "metrics", tuple(self.metrics))  # JSON gives lists back
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))
        if (len(self.special_tokens) != 3 or len(set(self.special_tokens)) != 3
                or not all(isinstance(t, str) and t.strip() for t in self.special_tokens)):
            raise ValueError(f"special_tokens must be 3 distinct non-empty strings, got {self.special_tokens}")
        if self.input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout must be one of {INPUT_LAYOUTS}, got {self.input_layout!r}")
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics must be a non-empty list of distinct names, got {self.metrics}")
        check_training_settings(self, ("source_max_length", "candidate_max_length", "pairs_per_input", "epochs",
                                       "batch_size", "grad_accum_steps", "eval_batch_size"))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PairRankerConfig:
        return config_from_dict(cls, values, "PairRanker")

    def key(self, *, ignore: Sequence[str] = ()) -> str:
        """A short hash of the fields (a resumed run may change ``epochs`` and nothing else). Fields
        added later are left out while at their defaults, so older runs keep their keys."""
        defaults = {"special_tokens": SPECIAL_TOKENS, "input_layout": "joint", "freeze_layers": 0}
        values = {k: v for k, v in asdict(self).items()
                  if k not in ignore and not (k in defaults and v == defaults[k])}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# input format: [CLS] <source> x <candidate1> y_i <candidate2> y_j [SEP]
# (or, layout "pairrm": [CLS] <|source|> x [SEP] [CLS] <|candidate1|> y_i [SEP] [CLS] <|candidate2|> y_j [SEP])


class PairFormatter:
    """Token ids and special-token positions for (source, candidate_i, candidate_j) triples.

    Layout "joint" (ours): one framed sequence, each text cut to its own budget. Layout "pairrm" (the
    published PairRM, llm-blender/PairRM-hf model card ``tokenize_pair``): three separately framed
    segments, each the tokenizer's own ``encode(marker + text, max_length=budget, truncation=True)``;
    the source budget counts its [CLS]/[SEP], and each candidate gets ``candidate_max_length`` plus half
    of what the source left unused. A text that itself contains a marker string is read as plain text
    (the official code would find two markers and fail)."""

    def __init__(self, tokenizer: Any, source_max_length: int, candidate_max_length: int, *,
                 special_tokens: Sequence[str] = SPECIAL_TOKENS, layout: str = "joint") -> None:
        if layout not in INPUT_LAYOUTS:
            raise ValueError(f"unknown input layout {layout!r}; expected one of {INPUT_LAYOUTS}")
        self.tokenizer = tokenizer
        self.layout = layout
        self.budgets = {"source": source_max_length, "candidate": candidate_max_length}
        self.special_tokens = tuple(special_tokens)
        self.special_ids = tokenizer.convert_tokens_to_ids(list(self.special_tokens))
        unk = tokenizer.unk_token_id
        if None in self.special_ids or (unk is not None and unk in self.special_ids):
            raise ValueError(f"the tokenizer lacks the PairRanker tokens {self.special_tokens}; "
                             f"build it with from_backbone")
        # The backbone's own framing ([CLS] ... [SEP] for BERT/DeBERTa, <s> ... </s> for RoBERTa).
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.prefix = [] if first is None else [first]
        self.suffix = [] if last is None else [last]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        framing = len(self.prefix) + 1 + len(self.suffix)
        if layout == "pairrm" and min(self.budgets.values()) <= framing:
            raise ValueError(f"layout 'pairrm' budgets count [CLS], the marker and [SEP]: source_max_length and "
                             f"candidate_max_length must exceed {framing}, got {self.budgets}")
        self.tokens = lru_cache(maxsize=1 << 16)(self._tokens)  # a text recurs in many pairs
        self.segment = lru_cache(maxsize=1 << 16)(self._segment)

    @property
    def max_length(self) -> int:
        if self.layout == "pairrm":  # budgets include each segment's framing
            return self.budgets["source"] + 2 * self.budgets["candidate"]
        return len(self.prefix) + 3 + self.budgets["source"] + 2 * self.budgets["candidate"] + len(self.suffix)

    def _tokens(self, text: str, part: str) -> tuple[int, ...]:
        """The first `budget` tokens of a text (longer texts are truncated, by design). Texts are
        data, never markup: a literal "<source>" or "[SEP]" in them is split into plain tokens."""
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=self.budgets[part],
                             split_special_tokens=True)["input_ids"]
        return tuple(ids)

    def _segment(self, slot: int, text: str, budget: int) -> tuple[int, ...]:
        """Layout "pairrm": [CLS] marker text [SEP] in at most `budget` tokens, as the official code
        tokenizes it; a text containing a marker string falls back to reading it as plain text."""
        marker, marker_id = self.special_tokens[slot], self.special_ids[slot]
        ids = self.tokenizer(marker + text, truncation=True, max_length=budget)["input_ids"]
        at = len(self.prefix)
        if ids[at] == marker_id and not set(ids[at + 1:]) & set(self.special_ids):
            return tuple(ids)
        body = self.tokenizer(text, add_special_tokens=False, truncation=True, split_special_tokens=True,
                              max_length=budget - at - 1 - len(self.suffix))["input_ids"]
        if set(body) & set(self.special_ids):
            raise ValueError(f"the text {text[:60]!r} contains a marker {self.special_tokens} that this tokenizer "
                             f"does not mark as special, so it cannot be read as plain text")
        return (*self.prefix, marker_id, *body, *self.suffix)

    def encode(self, source: str, cand_i: str, cand_j: str) -> tuple[list[int], tuple[int, int, int]]:
        """Token ids and the positions of <source>, <candidate1>, <candidate2> (computed, not searched for)."""
        if self.layout == "pairrm":
            src = self.segment(0, source, self.budgets["source"])
            budget = self.budgets["candidate"] + (self.budgets["source"] - len(src)) // 2
            ci, cj = self.segment(1, cand_i, budget), self.segment(2, cand_j, budget)
            at = len(self.prefix)
            return [*src, *ci, *cj], (at, len(src) + at, len(src) + len(ci) + at)
        src, ci, cj = self.tokens(source, "source"), self.tokens(cand_i, "candidate"), self.tokens(cand_j, "candidate")
        p_src = len(self.prefix)
        p_ci = p_src + 1 + len(src)
        p_cj = p_ci + 1 + len(ci)
        s, c1, c2 = self.special_ids
        ids = [*self.prefix, s, *src, c1, *ci, c2, *cj, *self.suffix]
        return ids, (p_src, p_ci, p_cj)

    def collate(self, encoded: Sequence[tuple[list[int], tuple[int, int, int]]]) -> dict[str, torch.Tensor]:
        """Pad to the longest pair of *this* batch (dynamic padding), right side."""
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, _) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        positions = torch.tensor([pos for _, pos in encoded], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "positions": positions}


# --------------------------------------------------------------------------------------------
# model and loss


class PairRankerModel(SavedInFolder, nn.Module):
    """Encoder backbone + a 2-layer head on [h_src; h_c] giving one score per Q-metric."""

    META_FILE = RANKER_FILE
    WHAT = "PairRanker"

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: PairRankerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.formatter = PairFormatter(tokenizer, config.source_max_length, config.candidate_max_length,
                                       special_tokens=config.special_tokens, layout=config.input_layout)
        limit = getattr(encoder.config, "max_position_embeddings", None)
        absolute = getattr(encoder.config, "position_biased_input", True)  # False: DeBERTa's relative positions only
        if absolute and limit is not None and self.formatter.max_length > limit:
            raise ValueError(f"the longest pair input, {self.formatter.max_length} tokens, "
                             f"exceeds the backbone's {limit} positions; lower the budgets")
        hidden = encoder.config.hidden_size
        self.head = nn.Sequential(  # the official head: dropout, Linear(2H, H), tanh, dropout, Linear(H, n_metrics)
            nn.Dropout(config.head_dropout), nn.Linear(2 * hidden, hidden), nn.Tanh(),
            nn.Dropout(config.head_dropout), nn.Linear(hidden, len(config.metrics)),
        )

    @classmethod
    def from_backbone(cls, config: PairRankerConfig, *, device: str | torch.device = "cpu") -> PairRankerModel:
        """A fresh ranker: pretrained encoder, three added special tokens, a seeded random head."""
        from transformers import AddedToken

        loaded = load_trainable_encoder(config.backbone, device=device, hidden_dropout=config.hidden_dropout,
                                        attention_dropout=config.attention_dropout)
        tokenizer = loaded.tokenizer
        new_tokens = [AddedToken(t, special=True, normalized=False) for t in config.special_tokens]
        tokenizer.add_tokens(new_tokens, special_tokens=True)
        torch.manual_seed(config.seed)  # new embedding rows and the head are random: seed them
        # transformers announces the new rows' initialisation on every call; they are seeded here and a
        # saved ranker's checkpoint overwrites them, so the notice asks nothing of the user
        resize_logger = logging.getLogger("transformers.modeling_utils")
        level = resize_logger.level
        resize_logger.setLevel(logging.ERROR)
        try:
            loaded.model.resize_token_embeddings(len(tokenizer))
        finally:
            resize_logger.setLevel(level)
        freeze_lower_layers(loaded.model, config.freeze_layers)  # after the resize: it replaces the embeddings
        return cls(loaded.model, tokenizer, config).to(loaded.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-metric scores (s_i, s_j), each [batch, n_metrics], for the candidates in slots 1 and 2."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = hidden[torch.arange(len(positions), device=hidden.device)[:, None], positions]  # [B, 3, H]
        s_i = self.head(torch.cat([h[:, 0], h[:, 1]], dim=-1))
        s_j = self.head(torch.cat([h[:, 0], h[:, 2]], dim=-1))
        return s_i.float(), s_j.float()

    # -- persistence (blender_lib.persistence): pairranker.json + encoder config + safetensors + tokenizer

    @classmethod
    def _config_from_meta(cls, meta: dict[str, Any], folder: Path) -> PairRankerConfig:
        return PairRankerConfig.from_dict(meta["config"])


def pair_logits(s_i: torch.Tensor, s_j: torch.Tensor) -> torch.Tensor:
    """Logit that candidate i beats candidate j: the mean over metrics of s_i - s_j."""
    return (s_i - s_j).mean(dim=-1)


def pair_loss(s_i: torch.Tensor, s_j: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Mean over (pair, metric) terms of -log σ(sign(Δ) (s_i - s_j)); terms with Δ = 0 carry no
    preference and are left out (a batch of nothing but ties gives 0)."""
    sign = torch.sign(delta)
    keep = sign != 0
    terms = -F.logsigmoid(sign * (s_i - s_j))
    return (terms * keep).sum() / keep.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# inference: pair logits -> comparison matrices -> aggregation


@torch.inference_mode()
def score_pairs(ranker: PairRankerModel, triples: Sequence[tuple[str, str, str]], *, batch_size: int = 32,
                progress: bool = False) -> np.ndarray:
    """Logit that a beats b for every (source, a, b).

    Identical triples run once (so identical inputs get bit-identical logits), and pairs are
    sorted by length before batching so each batch pads to about its own length."""
    unique = list(dict.fromkeys(triples))
    encoded = [ranker.formatter.encode(*t) for t in unique]
    order = sorted(range(len(unique)), key=lambda k: len(encoded[k][0]))
    logits = np.zeros(len(unique))
    was_training, device = ranker.training, ranker.device
    ranker.eval()
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=ranker.config.bf16):
            for start in tqdm(range(0, len(order), batch_size), desc="pairs", disable=not progress):
                idx = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in ranker.formatter.collate([encoded[k] for k in idx]).items()}
                logits[idx] = pair_logits(*ranker(**batch)).cpu().numpy()
    finally:
        ranker.train(was_training)
    lookup = dict(zip(unique, logits))
    return np.array([lookup[t] for t in triples], dtype=float)


def _matrices(ranker: PairRankerModel, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              batch_size: int = 32, progress: bool = False) -> list[np.ndarray]:
    """The comparison matrix of every input, all pairs of all inputs batched together."""
    check_text_inputs(sources, candidate_lists)
    triples = [(s, c[i], c[j]) for s, c in zip(sources, candidate_lists)
               for i in range(len(c)) for j in range(len(c)) if i != j]
    logits = score_pairs(ranker, triples, batch_size=batch_size, progress=progress) if triples else np.zeros(0)
    matrices, at = [], 0
    for c in candidate_lists:
        n = len(c)
        m = np.zeros((n, n))
        m[~np.eye(n, dtype=bool)] = logits[at : at + n * (n - 1)]  # row-major, the order of `triples`
        matrices.append(m)
        at += n * (n - 1)
    return matrices


def comparison_matrix(ranker: PairRankerModel, example_or_source: Mapping[str, Any] | str,
                      candidates: Sequence[str] | None = None, *, batch_size: int = 32) -> np.ndarray:
    """N x N matrix M[i, j] = logit that candidate i beats j (i in slot 1), both orders, diagonal 0.

    Pass a MixInstruct example, or a source text and its candidate texts."""
    if isinstance(example_or_source, Mapping):
        source = source_text(example_or_source)
        candidates = [c["text"] for c in example_or_source["candidates"]] if candidates is None else candidates
    else:
        source = example_or_source
    if candidates is None:
        raise ValueError("pass the candidate texts (or a MixInstruct example that holds them)")
    return _matrices(ranker, [source], [list(candidates)], batch_size=batch_size)[0]


def max_logits(m: np.ndarray) -> np.ndarray:
    """Score_i = Σ_j (M[i, j] - M[j, i]): margins, both orders."""
    m = np.asarray(m, dtype=float)
    return (m - m.T).sum(axis=1)


def max_wins(m: np.ndarray) -> np.ndarray:
    """Score_i = number of wins, counted in both orders as the official code does:
    #{j: M[i, j] > 0} (won from slot 1) + #{j: M[j, i] < 0} (won from slot 2)."""
    m = np.where(np.eye(len(m), dtype=bool), 0.0, np.asarray(m, dtype=float))  # no self-comparisons
    return ((m > 0).sum(axis=1) + (m < 0).sum(axis=0)).astype(float)


def bubble_winner(m: np.ndarray) -> int:
    """One bubble pass over a known matrix: the challenger k replaces the incumbent w only when
    M[k, w] - M[w, k] > 0 (a tie keeps the incumbent). N - 1 comparisons."""
    m = np.asarray(m, dtype=float)
    winner = 0
    for k in range(1, len(m)):
        if m[k, winner] - m[winner, k] > 0:
            winner = k
    return winner


PairLogits = Callable[[Sequence[tuple[str, str, str]]], np.ndarray]


def bubble_passes(sources: Sequence[str], candidate_lists: Sequence[Sequence[str]],
                  pair_logits: PairLogits) -> tuple[list[int], list[int]]:
    """Bubble passes of many inputs at once: round k compares candidate k with each input's incumbent,
    both orders, in one call of ``pair_logits`` ((source, a, b) triples -> logit that a beats b; a
    ranker's :func:`score_pairs`, or a cached one). Returns (winner indices, comparisons used)."""
    check_text_inputs(sources, candidate_lists)
    winners = [0] * len(sources)
    for k in range(1, max((len(c) for c in candidate_lists), default=1)):
        active = [n for n, c in enumerate(candidate_lists) if k < len(c)]
        triples = []
        for n in active:
            c, w = candidate_lists[n], winners[n]
            triples += [(sources[n], c[k], c[w]), (sources[n], c[w], c[k])]
        logits = np.asarray(pair_logits(triples), dtype=float)
        if logits.shape != (len(triples),):
            raise ValueError(f"pair_logits returned shape {logits.shape} for {len(triples)} triples")
        for a, n in enumerate(active):
            if logits[2 * a] - logits[2 * a + 1] > 0:
                winners[n] = k
    return winners, [len(c) - 1 for c in candidate_lists]


def _bubble_many(ranker: PairRankerModel, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
                 batch_size: int = 32) -> tuple[list[int], list[int]]:
    return bubble_passes(sources, candidate_lists, lambda triples: score_pairs(ranker, triples, batch_size=batch_size))


def example_matrices(ranker: PairRankerModel, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 32,
                     progress: bool = False) -> list[np.ndarray]:
    """The full comparison matrix of every MixInstruct example, all pairs batched together."""
    return _matrices(ranker, [source_text(ex) for ex in examples],
                     [[c["text"] for c in ex["candidates"]] for ex in examples], batch_size=batch_size,
                     progress=progress)


def ranker_run_id(report: TrainReport) -> str:
    """The name of a trained ranker for caches of what it computed: its run folder (keyed by config
    and data) and the epoch it keeps."""
    return f"{Path(report.best_dir).parent.name}/epoch-{report.best_epoch}"


def _matrices_path(examples: Sequence[Mapping[str, Any]], ranker_id: str, root: str | Path | None) -> Path:
    payload = [ranker_id, [[source_text(ex), [c["text"] for c in ex["candidates"]]] for ex in examples]]
    key = hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:20]
    return (Path(root) if root is not None else cache_dir() / "pairranker_matrices") / f"{key}.npz"


def save_example_matrices(matrices: Sequence[np.ndarray], examples: Sequence[Mapping[str, Any]], ranker_id: str, *,
                          root: str | Path | None = None) -> Path:
    """Keep matrices computed by :func:`example_matrices` where :func:`cached_example_matrices` looks
    for them (a chapter that times the computation itself can still share its result); the file is
    written whole and renamed into place."""
    if len(matrices) != len(examples):
        raise ValueError(f"{len(matrices)} matrices for {len(examples)} examples")
    for ex, m in zip(examples, matrices):
        n = len(ex["candidates"])
        if np.shape(m) != (n, n):
            raise ValueError(f"example {ex.get('id')!r} has {n} candidates but its matrix has shape {np.shape(m)}")
    path = _matrices_path(examples, ranker_id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.npz")
    np.savez(partial, **{f"m{k}": m for k, m in enumerate(matrices)})
    os.replace(partial, path)
    return path


def cached_example_matrices(ranker: PairRankerModel, examples: Sequence[Mapping[str, Any]], ranker_id: str, *,
                            root: str | Path | None = None, batch_size: int = 32,
                            progress: bool = False) -> list[np.ndarray]:
    """:func:`example_matrices`, kept on disk per (ranker, inputs), so a later chapter that ranks the
    same inputs with the same ranker reads them back. ``ranker_id`` names the trained ranker
    (:func:`ranker_run_id`)."""
    path = _matrices_path(examples, ranker_id, root)
    if path.exists():
        with np.load(path) as stored:
            return [stored[f"m{k}"] for k in range(len(examples))]
    matrices = example_matrices(ranker, examples, batch_size=batch_size, progress=progress)
    save_example_matrices(matrices, examples, ranker_id, root=root)
    return matrices


def bubble_examples(ranker: PairRankerModel, examples: Sequence[Mapping[str, Any]], *,
                    batch_size: int = 32) -> tuple[list[int], list[int]]:
    """Bubble winners of MixInstruct examples run for real (N - 1 comparisons each, both orders):
    (winner indices, comparisons used per example)."""
    return _bubble_many(ranker, [source_text(ex) for ex in examples],
                        [[c["text"] for c in ex["candidates"]] for ex in examples], batch_size=batch_size)


def bubble(ranker: PairRankerModel, source: str, candidates: Sequence[str], *, batch_size: int = 32) -> tuple[int, int]:
    """(winner index, comparisons used) of one bubble pass: N - 1 comparisons, each run in both
    orders (so 2(N - 1) model passes). N = 1 needs no comparison."""
    winners, used = _bubble_many(ranker, [source], [list(candidates)], batch_size=batch_size)
    return winners[0], used[0]


def _aggregate(m: np.ndarray, aggregation: str) -> np.ndarray:
    if aggregation == "max_logits":
        return max_logits(m)
    if aggregation == "max_wins":
        return max_wins(m)
    raise ValueError(f"unknown aggregation {aggregation!r} for a full ranking; use 'max_logits' or 'max_wins' "
                     f"('bubble' only finds a winner: use best_of_n)")


# -- the public API, in the spirit of the official llm-blender one


def compare(ranker: PairRankerModel, instructions: Sequence[str], candidates_a: Sequence[str],
            candidates_b: Sequence[str], *, batch_size: int = 32) -> list[bool]:
    """True where A is better than B: M[a, b] - M[b, a] > 0 (both orders; an exact tie is False)."""
    if not len(instructions) == len(candidates_a) == len(candidates_b):
        raise ValueError("instructions, candidates_a and candidates_b must have the same length")
    check_text_inputs(instructions, [[a, b] for a, b in zip(candidates_a, candidates_b)])
    triples = [t for s, a, b in zip(instructions, candidates_a, candidates_b) for t in ((s, a, b), (s, b, a))]
    logits = score_pairs(ranker, triples, batch_size=batch_size)
    return [bool(logits[2 * n] - logits[2 * n + 1] > 0) for n in range(len(instructions))]


log = logging.getLogger(__name__)
AUTO_BUBBLE_ABOVE = 5  # best_of_n's "auto": max-logits up to this many candidates, bubble beyond
LONG_RUN_PASSES = 20_000  # model passes above which rank / best_of_n warn before they start


def model_passes(candidates_lists: Sequence[Sequence[str]], aggregation: str) -> int:
    """Cross-encoder passes an aggregation costs: N(N - 1) per input for the full matrix (max-logits,
    max-wins: every ordered pair), 2(N - 1) for one bubble pass (N - 1 comparisons, both orders)."""
    sizes = [len(c) for c in candidates_lists]
    return sum(2 * (n - 1) if aggregation == "bubble" else n * (n - 1) for n in sizes)


def _announce_cost(what: str, candidates_lists: Sequence[Sequence[str]], aggregation: str) -> None:
    passes = model_passes(candidates_lists, aggregation)
    message = (f"{what}: {aggregation} over {len(candidates_lists)} inputs of up to "
               f"{max((len(c) for c in candidates_lists), default=0)} candidates = {passes:,} model passes "
               f"(bubble: {model_passes(candidates_lists, 'bubble'):,}, the full matrix: {model_passes(candidates_lists, 'max_logits'):,})")
    (log.warning if passes > LONG_RUN_PASSES else log.info)(message)


def rank(ranker: PairRankerModel, instructions: Sequence[str], candidates_lists: Sequence[Sequence[str]], *,
         aggregation: str = "max_logits", batch_size: int = 32, return_scores: bool = False,
         progress: bool = False) -> list[list[int]] | list[list[float]]:
    """Ranks per input (1 = best; ties share the better rank), or the aggregated scores. A full ranking
    needs the whole comparison matrix: N(N - 1) model passes per input (15 candidates: 210), logged
    before the run (a warning above :data:`LONG_RUN_PASSES`); to pick one answer, :func:`best_of_n`
    with bubble needs 2(N - 1)."""
    _aggregate(np.zeros((1, 1)), aggregation)  # reject a bad name before any model work
    check_text_inputs(instructions, candidates_lists)
    _announce_cost("rank", candidates_lists, aggregation)
    matrices = _matrices(ranker, instructions, candidates_lists, batch_size=batch_size, progress=progress)
    scores = [_aggregate(m, aggregation) for m in matrices]
    if return_scores:
        return [s.tolist() for s in scores]
    return [ranks_from_scores(s).tolist() for s in scores]


def best_of_n(ranker: PairRankerModel, instructions: Sequence[str], candidates_lists: Sequence[Sequence[str]], *,
              aggregation: str = "auto", batch_size: int = 32) -> list[int]:
    """Index of the chosen candidate per input. 'bubble' costs N - 1 comparisons (2(N - 1) passes),
    'max_logits' and 'max_wins' the full matrix, N(N - 1) passes. 'auto' (default): max-logits up to
    :data:`AUTO_BUBBLE_ABOVE` candidates, bubble beyond. The cost is logged before the run."""
    check_text_inputs(instructions, candidates_lists)
    if aggregation == "auto":
        aggregation = "bubble" if max((len(c) for c in candidates_lists), default=0) > AUTO_BUBBLE_ABOVE else "max_logits"
    if aggregation != "bubble":
        _aggregate(np.zeros((1, 1)), aggregation)
    _announce_cost("best_of_n", candidates_lists, aggregation)
    if aggregation == "bubble":
        return _bubble_many(ranker, instructions, candidates_lists, batch_size=batch_size)[0]
    matrices = _matrices(ranker, instructions, candidates_lists, batch_size=batch_size, progress=False)
    return [int(np.argmax(_aggregate(m, aggregation))) for m in matrices]  # first of equals, like bubble's tie rule


def reference_rewards_many(ranker: PairRankerModel, instructions: Sequence[str],
                           candidates_lists: Sequence[Sequence[str]], references: Sequence[str], *,
                           batch_size: int = 32) -> list[np.ndarray]:
    """Per candidate, a scalar reward: its logit against the reference, averaged over both
    orders, (M[c, ref] - M[ref, c]) / 2. Positive = judged better than the reference."""
    check_text_inputs(instructions, candidates_lists)
    for n, ref in enumerate(references):
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError(f"reference {n} is empty: a reference reward needs a reference")
    if len(references) != len(instructions):
        raise ValueError(f"got {len(instructions)} instructions but {len(references)} references")
    triples = [t for s, cands, ref in zip(instructions, candidates_lists, references) for c in cands
               for t in ((s, c, ref), (s, ref, c))]
    logits = score_pairs(ranker, triples, batch_size=batch_size)
    rewards, at = [], 0
    for cands in candidates_lists:
        chunk = logits[at : at + 2 * len(cands)]
        rewards.append((chunk[0::2] - chunk[1::2]) / 2)
        at += 2 * len(cands)
    return rewards


def reference_rewards(ranker: PairRankerModel, instruction: str, candidates: Sequence[str], reference: str, *,
                      batch_size: int = 32) -> np.ndarray:
    """Rewards of one input's candidates against its reference (see reference_rewards_many)."""
    return reference_rewards_many(ranker, [instruction], [list(candidates)], [reference], batch_size=batch_size)[0]


# --------------------------------------------------------------------------------------------
# evaluation against the reference metrics


def metric_preference(table: np.ndarray) -> np.ndarray:
    """P[i, j] = sign of the mean over metrics of sign(metric_i - metric_j): a vote in which
    every metric counts once whatever its scale (BLEU 0-100, BERTScore 0-1)."""
    votes = np.sign(table[:, None, :] - table[None, :, :]).mean(axis=-1)
    return np.sign(votes)


def evaluate_pairranker(ranker: PairRankerModel, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 32,
                        progress: bool = False) -> dict[str, float]:
    """Pairwise accuracy (both-order margin vs the metric vote, tied pairs left out) and the quality
    of the max-logits top-1: each metric's mean, and its mean rank among the N (1 = best)."""
    metrics = ranker.config.metrics
    tables = [score_table(ex, metrics) for ex in examples]
    start = time.perf_counter()
    matrices = _matrices(ranker, [source_text(ex) for ex in examples],
                         [[c["text"] for c in ex["candidates"]] for ex in examples],
                         batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - start
    correct = total = 0
    chosen_scores, chosen_ranks = [], []
    for table, m in zip(tables, matrices):
        upper = np.triu_indices(len(m), k=1)
        target, margin = metric_preference(table)[upper], (m - m.T)[upper]
        correct += int(((np.sign(margin) == target) & (target != 0)).sum())
        total += int((target != 0).sum())
        best = int(np.argmax(max_logits(m)))
        chosen_scores.append(table[best])
        chosen_ranks.append(np.mean([ranks_from_scores(table[:, k])[best] for k in range(len(metrics))]))
    n_pairs = sum(len(m) * (len(m) - 1) for m in matrices)
    result = {"pairwise_accuracy": correct / total if total else float("nan"), "compared_pairs": float(total),
              "top1_mean_metric_rank": float(np.mean(chosen_ranks)) if chosen_ranks else float("nan"),
              "inference_pairs_per_second": n_pairs / seconds if seconds > 0 else float("nan")}
    for k, name in enumerate(metrics):
        result[f"top1_{name}"] = float(np.mean([s[k] for s in chosen_scores])) if chosen_scores else float("nan")
    return result


# --------------------------------------------------------------------------------------------
# training: PairRanker's recipe for blender_lib.training (the loop, checkpoints and resume live there)


class _PairSampler(torch.utils.data.Dataset):
    """This epoch's pairs: `pairs_per_input` distinct random pairs per input, random left/right
    order, shuffled. Seeded by (seed, epoch), so a resumed run draws what an uninterrupted one would.

    With :meth:`group_by_length`, pairs of similar length are batched together (sorted within
    windows of 32 batches, then the batches shuffled), so a batch pads to little more than its own
    length: the training counterpart of inference's length bucketing (about 1.5x fewer tokens)."""

    GROUP_WINDOW = 32  # batches per sorted window: long enough to group, short enough to stay random

    def __init__(self, pools: list[TrainingInput], pairs_per_input: int, seed: int) -> None:
        self.pools, self.pairs_per_input, self.seed = pools, pairs_per_input, seed
        self.batch_size: int | None = None
        self.length_of: Callable[[tuple[str, str, str, np.ndarray]], int] | None = None
        self.items: list[tuple[str, str, str, np.ndarray]] = []
        self.resample(0)

    def group_by_length(self, batch_size: int, length_of: Callable[[tuple[str, str, str, np.ndarray]], int]) -> None:
        self.batch_size, self.length_of = batch_size, length_of

    def resample(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        items = []
        for pool in self.pools:
            pairs = list(combinations(range(len(pool.texts)), 2))
            for p in rng.choice(len(pairs), size=min(self.pairs_per_input, len(pairs)), replace=False):
                i, j = pairs[p] if rng.random() < 0.5 else pairs[p][::-1]
                items.append((pool.source, pool.texts[i], pool.texts[j], pool.scores[i] - pool.scores[j]))
        self.items = [items[k] for k in rng.permutation(len(items))]  # same length every epoch
        if self.batch_size is not None and self.length_of is not None:
            self.items = self._grouped(self.items, self.batch_size, self.length_of, rng)

    def _grouped(self, items: list[Any], batch_size: int, length_of: Callable[[Any], int],
                 rng: np.random.Generator) -> list[Any]:
        window = batch_size * self.GROUP_WINDOW
        batches = []
        for start in range(0, len(items), window):
            chunk = sorted(items[start : start + window], key=length_of)  # stable: ties keep the random order
            batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
        tail = batches.pop() if len(batches[-1]) < batch_size else None  # a short batch stays last
        batches = [batches[k] for k in rng.permutation(len(batches))] + ([tail] if tail else [])
        return [item for batch in batches for item in batch]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[str, str, str, np.ndarray]:
        return self.items[k]


def _data_key(pools: list[TrainingInput]) -> str:
    blob = json.dumps([[p.source, p.texts, p.scores.tolist()] for p in pools])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class PairRankerRecipe:
    """PairRanker for :func:`blender_lib.training.train`: pairs drawn per epoch, :func:`pair_loss`,
    the best epoch by validation pairwise accuracy (ties keep the earlier one)."""

    config: PairRankerConfig
    pools: list[TrainingInput]
    val_examples: Sequence[Mapping[str, Any]]
    skipped_examples: int
    kind: str = "pairranker"
    weights_folder: str = "ranker"

    @property
    def data_key(self) -> str:
        return _data_key(self.pools)

    @property
    def items_per_epoch(self) -> int:
        return sum(min(self.config.pairs_per_input, len(p.texts) * (len(p.texts) - 1) // 2) for p in self.pools)

    def build_model(self) -> PairRankerModel:
        return PairRankerModel.from_backbone(self.config)

    def training_data(self, model: PairRankerModel) -> _PairSampler:
        sampler = _PairSampler(self.pools, self.config.pairs_per_input, self.config.seed)
        formatter = model.formatter  # bound now: the loop rebinds its model to accelerate's wrapper
        sampler.group_by_length(self.config.batch_size, lambda item: len(formatter.encode(*item[:3])[0]))
        return sampler

    def collate(self, model: PairRankerModel) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        formatter = model.formatter

        def collate(items: list[tuple[str, str, str, np.ndarray]]) -> dict[str, torch.Tensor]:
            batch = formatter.collate([formatter.encode(s, a, b) for s, a, b, _ in items])
            batch["delta"] = torch.tensor(np.stack([d for *_, d in items]), dtype=torch.float)
            return batch

        return collate

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        delta = batch.pop("delta")
        return pair_loss(*model(**batch), delta)

    def validate(self, model: PairRankerModel) -> dict[str, float]:
        if not self.val_examples:
            return {}
        return evaluate_pairranker(model, self.val_examples, batch_size=self.config.eval_batch_size)

    def better(self, val: Mapping[str, float], best: Mapping[str, float]) -> bool:
        return improves(val, best, "pairwise_accuracy", higher_is_better=True)

    def shown(self, val: Mapping[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in val.items() if k in ("pairwise_accuracy", "top1_mean_metric_rank")}


def _recipe(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
            config: PairRankerConfig) -> PairRankerRecipe:
    """The run's recipe; its pools (:func:`blender_lib.examples.training_inputs`) are what pairs are drawn from."""
    pools, skipped = training_inputs(train_examples, config.metrics, what="PairRanker")
    return PairRankerRecipe(config, pools, val_examples, skipped)


def _run_folder(recipe: PairRankerRecipe, root: str | Path | None) -> Path:
    base = Path(root) if root is not None else cache_dir() / "pairranker"
    return base / f"{recipe.config.key(ignore=('epochs',))}-{recipe.data_key}"


def train_pairranker(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                     config: PairRankerConfig, out_dir: str | Path, *, progress: bool = True,
                     resume: bool = True) -> TrainReport:
    """Train a PairRanker; keep the best epoch on validation pairwise accuracy in out_dir/best.

    Every completed epoch is checkpointed (out_dir/epoch-K + state.json, atomically), so calling
    again with the same arguments resumes after the last completed epoch, exactly as if never
    stopped; calling with a larger ``epochs`` trains on from there (with the LR schedule of the new
    total). Without validation examples the last epoch counts as the best."""
    return train(_recipe(train_examples, val_examples, config), out_dir, progress=progress, resume=resume)


def run_dir(train_examples: Sequence[Mapping[str, Any]], config: PairRankerConfig, root: str | Path | None = None) -> Path:
    """Where a training run with this config and data lives: <root>/<config key>-<data key>
    (``epochs`` left out of the key, so asking for more epochs continues the same run). The root
    defaults to the user cache (``$BLENDER_BOOK_CACHE/pairranker``): checkpoints are hundreds of MB."""
    with warnings.catch_warnings():  # training reports the skipped inputs; once is enough
        warnings.simplefilter("ignore")
        return _run_folder(_recipe(train_examples, (), config), root)


def train_in_cache(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                   config: PairRankerConfig, *, root: str | Path | None = None, progress: bool = True) -> TrainReport:
    """Train (or resume, or find finished) the run of this config and data in its folder
    (:func:`run_dir`), reading the training data once."""
    recipe = _recipe(train_examples, val_examples, config)
    return train(recipe, _run_folder(recipe, root), progress=progress)


def train_or_load(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                  config: PairRankerConfig, *, root: str | Path | None = None,
                  progress: bool = True) -> tuple[PairRankerModel, TrainReport]:
    """The best checkpoint of a finished run with this config and data; trains (or resumes an
    interrupted run) first when there is none."""
    report = train_in_cache(train_examples, val_examples, config, root=root, progress=progress)
    return PairRankerModel.from_pretrained(report.best_dir, device=config.device), report
