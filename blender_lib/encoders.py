"""The fine-tuned encoder that SimCLS, SummaReranker and the ZOOTER router share: its config and model.

:class:`EncoderConfig` holds what every fine-tuned encoder is decided by (backbone, source budget,
optimiser, epochs, seed, pooling, dropout, precision); :class:`EncoderModel` an encoder with its
tokenizer: token budgets, padding, mean (or first-token) pooling, persistence in a folder. The
methods add their heads and losses (:mod:`blender_lib.rerankers`, :mod:`blender_lib.zooter`) and
train through :mod:`blender_lib.training`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from .checks import check_field_types, check_training_settings, config_from_dict
from .examples import Scores
from .models import freeze_lower_layers, load_trainable_encoder
from .persistence import SavedInFolder

META_FILE = "baseline.json"  # the model folder's description (the name older folders were saved with)


@dataclass(frozen=True)
class EncoderConfig:
    """What decides a fine-tuned encoder selector (PairRanker's conventions, shorter texts for CPU budgets)."""

    backbone: str = "minilm-l6"  # any name blender_lib.models.load_model resolves to an encoder
    source_max_length: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    epochs: int = 1
    batch_size: int = 4  # inputs per step
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    eval_batch_size: int = 64  # texts (or pairs) per forward at inference
    pooling: str = "mean"  # "mean" (sentence-transformers backbones like MiniLM) or "cls" (the first token)
    seed: int = 42
    hidden_dropout: float | None = None  # None keeps the backbone's own
    attention_dropout: float | None = 0.0  # attention dropout forces a slower attention path: ~2x CPU time
    bf16: bool = False  # bf16 autocast; measured no faster than fp32 for these short texts on CPU
    device: str = "auto"
    freeze_layers: int = 0  # freeze the embeddings + this many bottom layers (a CPU budget; the papers: 0)

    KIND: ClassVar[str] = "encoder"
    SIZES: ClassVar[tuple[str, ...]] = ("source_max_length", "epochs", "batch_size", "grad_accum_steps",
                                        "eval_batch_size")

    def __post_init__(self) -> None:
        check_field_types(self)
        check_training_settings(self, self.SIZES)
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EncoderConfig:
        return config_from_dict(cls, values, cls.__name__)

    def key(self, *, ignore: Sequence[str] = ()) -> str:
        """A short hash of the kind and the fields (a resumed run may change ``epochs`` only)."""
        values = {k: v for k, v in asdict(self).items()
                  if k not in ignore and not (k == "freeze_layers" and v == 0)}  # older runs keep their keys
        return hashlib.sha256(json.dumps([self.KIND, values], sort_keys=True).encode()).hexdigest()[:16]


class EncoderModel(SavedInFolder, nn.Module):
    """An encoder with its tokenizer and config; persistence; token budgets; mean pooling."""

    KIND: ClassVar[str]
    CONFIG: ClassVar[type[EncoderConfig]]
    CHUNK: ClassVar[int] = 8  # rows per encoder call (see pooled)
    META_FILE = META_FILE
    WHAT = "baseline model"

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, self.CONFIG):
            raise TypeError(f"{type(self).__name__} needs a {self.CONFIG.__name__}, got {type(config).__name__}")
        self.config, self.encoder, self.tokenizer = config, encoder, tokenizer
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.prefix = () if first is None else (int(first),)
        self.suffix = () if last is None else (int(last),)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.use_token_types = getattr(encoder.config, "type_vocab_size", 0) > 1
        self.tokens = lru_cache(maxsize=1 << 16)(self._tokens)

    def _tokens(self, text: str, budget: int) -> tuple[int, ...]:
        """The first ``budget`` tokens (longer texts are truncated, by design); markup stays text."""
        return tuple(self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=budget,
                                    split_special_tokens=True)["input_ids"])

    @classmethod
    def from_backbone(cls, config: EncoderConfig, *, device: str | torch.device = "cpu") -> EncoderModel:
        """A fresh model: pretrained encoder (dropout overrides applied, lower layers frozen as
        configured), seeded new weights."""
        loaded = load_trainable_encoder(config.backbone, device=device, hidden_dropout=config.hidden_dropout,
                                        attention_dropout=config.attention_dropout)
        freeze_lower_layers(loaded.model, config.freeze_layers)
        torch.manual_seed(config.seed)  # any new head is random: seed it
        return cls(loaded.model, loaded.tokenizer, config).to(loaded.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def pad(self, sequences: Sequence[Sequence[int]],
            types: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
        """Right-padded ids and mask (and token types where the encoder uses them)."""
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None and self.use_token_types:
            token_types = torch.zeros_like(ids)
            for row, t in enumerate(types):
                token_types[row, : len(t)] = torch.tensor(t, dtype=torch.long)
            batch["token_type_ids"] = token_types
        return batch

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence (fp32): the mean of the last hidden states over real tokens
        (``pooling="mean"``, sentence-transformers style) or the first token's (``"cls"``).

        Rows are encoded in chunks of ``CHUNK``, each cut to its own longest row: with rows sorted by
        length (the collators sort them) little compute goes to padding. Rows never see each other,
        so this equals one padded pass."""
        out = []
        for start in range(0, len(input_ids), self.CHUNK):
            rows = slice(start, start + self.CHUNK)
            width = int(attention_mask[rows].sum(1).max())
            mask = attention_mask[rows, :width]
            kwargs = {"token_type_ids": token_type_ids[rows, :width]} if token_type_ids is not None else {}
            hidden = self.encoder(input_ids=input_ids[rows, :width], attention_mask=mask, **kwargs).last_hidden_state
            hidden = hidden.float()
            if self.config.pooling == "cls":
                out.append(hidden[:, 0])
            else:
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                out.append((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9))
        return torch.cat(out)

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def eval_batches(self, lengths: Sequence[int], batch_size: int | None, desc: str,
                     progress: bool = False) -> Iterator[list[int]]:
        """Indices of inference batches, shortest inputs first (little padding), with the model in
        eval mode and autocast while they run; its training mode comes back afterwards."""
        batch_size = batch_size or self.config.eval_batch_size
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        was_training = self.training
        self.eval()
        try:
            with self._autocast():
                for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
                    yield order[start : start + batch_size]
        finally:
            self.train(was_training)

    # -- what a model adds: its training batches (see blender_lib.training) and its scores

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              batch_size: int | None = None, progress: bool = False) -> Scores:
        raise NotImplementedError

    # -- persistence (blender_lib.persistence): baseline.json + encoder config + safetensors + tokenizer

    def _meta(self) -> dict[str, Any]:
        return {"format": 1, "kind": self.KIND, "config": asdict(self.config)}

    @classmethod
    def _config_from_meta(cls, meta: dict[str, Any], folder: Path) -> EncoderConfig:
        if meta.get("kind") != cls.KIND:
            raise ValueError(f"{folder} holds a {meta.get('kind')!r} model, not a {cls.KIND!r} one")
        return cls.CONFIG.from_dict(meta["config"])

