"""The published PairRM checkpoint (``llm-blender/PairRM-hf``) as one of our PairRankers.

PairRM is LLM-Blender's PairRanker retrained on human-preference data (DeBERTa-v3-large, 0.4B). Its
Hugging Face release stores the model class ``DebertaV2PairRM`` of the llm-blender repository
(``llm_blender/pair_ranker/pairrm.py``). Read from that class, its model card and its files:

* ``config.json``: a DeBERTa-v2 config (``model_type: deberta-v2``, 24 layers, hidden 1024,
  ``position_biased_input: false``, 512 ``max_position_embeddings`` but relative positions only)
  plus PairRM's own fields ``n_tasks`` (1), ``drop_out`` (0.05), ``source_prefix_id`` (128001),
  ``cand1_prefix_id`` (128002), ``cand2_prefix_id`` (128003), ``cand_prefix_id`` (128004).
* weights (``model.safetensors``): ``pretrained_model.*`` = a ``DebertaV2Model``; ``head_layer.{1,4}.*``
  = ``Sequential(Dropout, Linear(2H, H), Tanh, Dropout, Linear(H, n_tasks))``, the same head as ours.
* tokenizer: DeBERTa-v3's SentencePiece vocabulary plus added tokens ``[MASK]`` (128000),
  ``<|source|>``, ``<|candidate1|>``, ``<|candidate2|>``, ``<|candidate|>`` (128001-128004).
* input (model card ``tokenize_pair``): three separately framed segments
  ``[CLS] <|source|> x [SEP] [CLS] <|candidate1|> y_i [SEP] [CLS] <|candidate2|> y_j [SEP]``, each the
  tokenizer's ``encode(marker + text, max_length=budget, truncation=True)``; the source budget is 1224
  tokens, each candidate's is ``(2048 - len(source ids)) // 2`` = 412 + half of what the source left.
* forward: last hidden states at the three markers; s_i = head([h_src; h_c1]), s_j = head([h_src; h_c2]);
  logit = mean over tasks of (s_i - s_j): positive means candidate 1 is better. Our pair_logits.

So the only differences from our own PairRanker are the marker strings and the input layout, which
PairRankerConfig carries (``special_tokens``, ``input_layout="pairrm"``); the weights map one to one
(``pretrained_model.`` -> ``encoder.``, ``head_layer.`` -> ``head.``). The loaded ranker works with
every function of :mod:`blender_lib.rankers` (compare, rank, best_of_n, bubble, score_pairs) and saves
and reloads with ``save_pretrained`` / ``PairRankerModel.from_pretrained``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .models import resolve_device, resolve_dtype
from .rankers import RANKER_FILE, PairRankerConfig, PairRankerModel, example_matrices, max_logits

PAIRRM_HUB_ID = "llm-blender/PairRM-hf"
PAIRRM_BACKBONE = "microsoft/deberta-v3-large"  # what PairRM was fine-tuned from (its ranker_config.json)
PAIRRM_MARKERS = ("<|source|>", "<|candidate1|>", "<|candidate2|>")
PAIRRM_SOURCE_MAX_LENGTH = 1224  # model card tokenize_pair / ranker_config.json source_maxlength
PAIRRM_CANDIDATE_MAX_LENGTH = 412  # candidate_maxlength; 1224 + 2 x 412 = 2048
MARKER_FIELDS = ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")  # config.json, in marker order
REQUIRED_FIELDS = (*MARKER_FIELDS, "n_tasks", "drop_out")
KEY_MAP = (("pretrained_model.", "encoder."), ("head_layer.", "head."))  # PairRM name -> our name
# Buffers DeBERTa-v2 itself ignores when loading (not parameters of the model): tolerated, never used.
IGNORABLE_KEYS = ("pretrained_model.embeddings.position_ids", "pretrained_model.embeddings.position_embeddings.weight")
HUB_FILES = ["config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
             "pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "spm.model"]


class PairRMCheckpointError(ValueError):
    """A folder or hub id that does not hold a loadable PairRM checkpoint (the message says why)."""


# --------------------------------------------------------------------------------------------
# where the files are


def resolve_pairrm_folder(path_or_hub_id: str | Path, *, cache_dir: str | Path | None = None,
                          revision: str | None = None) -> Path:
    """A local folder as is; anything else is a hub id fetched with ``huggingface_hub.snapshot_download``
    (only the config, weights and tokenizer files; a cached copy serves offline)."""
    local = Path(path_or_hub_id).expanduser()
    if local.is_dir():
        return local
    name = str(path_or_hub_id)
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise PairRMCheckpointError(f"no PairRM checkpoint folder at {name!r} (and it is not a hub id 'owner/name')")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_FILES))
    except Exception as err:  # re-raised with the id and the reason; the cause stays attached
        detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if constants.HF_HUB_OFFLINE or isinstance(err, (ConnectionError, TimeoutError)):
            raise PairRMCheckpointError(
                f"cannot load the PairRM checkpoint {name!r}: it is not a local folder, the Hugging Face hub is "
                f"unreachable (offline mode, HF_HUB_OFFLINE=1, or no network) and no cached copy was found. "
                f"Download it where there is internet (hf download {name}) and pass the folder. "
                f"({detail})") from err
        raise PairRMCheckpointError(f"cannot download the PairRM checkpoint {name!r} from the Hugging Face hub "
                                    f"({detail})") from err


# --------------------------------------------------------------------------------------------
# reading the checkpoint


def _read_fields(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if (folder / RANKER_FILE).exists():
        raise PairRMCheckpointError(f"{folder} is a PairRanker saved by this library, not a PairRM checkpoint; "
                                    f"load it with PairRankerModel.from_pretrained")
    if not path.exists():
        raise PairRMCheckpointError(f"{folder} has no config.json: not a PairRM-hf checkpoint")
    fields = json.loads(path.read_text(encoding="utf-8"))
    if "ranker_type" in fields:
        raise PairRMCheckpointError(
            f"{folder} holds the original llm-blender layout (config.json is llm-blender's RankerConfig, "
            f"ranker_type={fields['ranker_type']!r}, no encoder config); load its Hugging Face version "
            f"{PAIRRM_HUB_ID!r} instead")
    missing = [k for k in REQUIRED_FIELDS if k not in fields]
    if missing:
        raise PairRMCheckpointError(f"{folder}/config.json lacks the PairRM field(s) {missing} "
                                    f"(a DebertaV2PairRM config has {list(REQUIRED_FIELDS)})")
    if int(fields["n_tasks"]) < 1:
        raise PairRMCheckpointError(f"{folder}/config.json: n_tasks must be >= 1, got {fields['n_tasks']}")
    return fields


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict: safetensors (single or sharded), else a PyTorch .bin (weights only)."""
    from safetensors.torch import load_file

    def sharded(index: Path, load: Any) -> dict[str, torch.Tensor]:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return {k: v for shard in shards for k, v in load(folder / shard).items()}

    def load_bin(path: Path) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    if (folder / "model.safetensors").exists():
        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").exists():
        return sharded(folder / "model.safetensors.index.json", load_file)
    if (folder / "pytorch_model.bin").exists():
        return load_bin(folder / "pytorch_model.bin")
    if (folder / "pytorch_model.bin.index.json").exists():
        return sharded(folder / "pytorch_model.bin.index.json", load_bin)
    raise PairRMCheckpointError(f"{folder} has no weights (model.safetensors, a sharded index or pytorch_model.bin)")


def _listed(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def _official_name(key: str) -> str:
    """Our key name -> PairRM's (for error messages)."""
    return next((old + key[len(new):] for old, new in KEY_MAP if key.startswith(new)), key)


def map_pairrm_state_dict(state: Mapping[str, torch.Tensor],
                          expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PairRM's key names -> ours, checked against the model's own state dict (`expected`): every
    missing, unexpected or wrongly shaped tensor is named in the error; nothing is left random."""
    mapped, unexpected = {}, []
    for key, tensor in state.items():
        if key in IGNORABLE_KEYS:
            continue
        ours = next((new + key[len(old):] for old, new in KEY_MAP if key.startswith(old)), None)
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            mapped[ours] = tensor
    missing = sorted(_official_name(k) for k in expected if k not in mapped)
    if missing or unexpected:
        parts = ([f"missing from the checkpoint: {_listed(missing)}"] if missing else []) + (
            [f"unexpected in the checkpoint: {_listed(sorted(unexpected))}"] if unexpected else [])
        raise PairRMCheckpointError("the weights do not match the DebertaV2PairRM layout "
                                    "(pretrained_model.* + head_layer.*) of its config.json; " + "; ".join(parts))
    shapes = [f"{_official_name(k)}: checkpoint {tuple(mapped[k].shape)} vs config {tuple(expected[k].shape)}"
              for k in sorted(mapped) if mapped[k].shape != expected[k].shape]
    if shapes:
        raise PairRMCheckpointError(f"the weights do not fit the sizes in config.json: {_listed(shapes, 6)}")
    return mapped


def _marker_tokenizer(folder: Path, fields: Mapping[str, Any]) -> Any:
    """The checkpoint's tokenizer, its marker ids checked against config.json, and the markers flagged
    special (ids and tokenization unchanged) so a marker string inside a text can be read as plain text."""
    from transformers import AddedToken, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.convert_tokens_to_ids(list(PAIRRM_MARKERS))
    wanted = [int(fields[f]) for f in MARKER_FIELDS]
    if ids != wanted:
        pairs = ", ".join(f"{m} is {i} but {f} is {w}" for m, i, f, w in zip(PAIRRM_MARKERS, ids, MARKER_FIELDS, wanted)
                          if i != w)
        raise PairRMCheckpointError(f"the tokenizer in {folder} does not match config.json: {pairs}")
    added = [tokenizer.added_tokens_decoder.get(i) for i in ids]  # None: a piece of the base vocabulary
    flagged = [AddedToken(t.content, single_word=t.single_word, lstrip=t.lstrip, rstrip=t.rstrip,
                          normalized=t.normalized, special=True) for t in added if t is not None and not t.special]
    if flagged:
        tokenizer.add_tokens(flagged, special_tokens=True)
        if tokenizer.convert_tokens_to_ids(list(PAIRRM_MARKERS)) != wanted:
            raise PairRMCheckpointError("re-flagging the PairRM markers as special changed their ids")  # never expected
    return tokenizer


# --------------------------------------------------------------------------------------------
# the loader


def pairrm_config(fields: Mapping[str, Any], *, source_max_length: int = PAIRRM_SOURCE_MAX_LENGTH,
                  candidate_max_length: int = PAIRRM_CANDIDATE_MAX_LENGTH, metrics: Sequence[str] | None = None,
                  bf16: bool = False) -> PairRankerConfig:
    """Our PairRankerConfig for a PairRM checkpoint with these config.json fields."""
    n_tasks = int(fields["n_tasks"])
    if metrics is None:
        metrics = ("preference",) if n_tasks == 1 else tuple(f"task{k}" for k in range(n_tasks))
    if len(metrics) != n_tasks:
        raise ValueError(f"the checkpoint's head scores {n_tasks} task(s) but {len(metrics)} metric names were given")
    return PairRankerConfig(backbone=PAIRRM_BACKBONE, metrics=tuple(metrics), source_max_length=source_max_length,
                            candidate_max_length=candidate_max_length, head_dropout=float(fields["drop_out"]),
                            hidden_dropout=None, attention_dropout=None, bf16=bf16, special_tokens=PAIRRM_MARKERS,
                            input_layout="pairrm")


def load_pairrm(path_or_hub_id: str | Path = PAIRRM_HUB_ID, *, device: str | torch.device = "auto",
                dtype: str | torch.dtype | None = "float32", source_max_length: int = PAIRRM_SOURCE_MAX_LENGTH,
                candidate_max_length: int = PAIRRM_CANDIDATE_MAX_LENGTH, metrics: Sequence[str] | None = None,
                bf16: bool = False, cache_dir: str | Path | None = None,
                revision: str | None = None) -> PairRankerModel:
    """Load a PairRM-hf checkpoint (local folder or hub id) as a PairRankerModel in eval mode.

    The scores are those of the official ``DebertaV2PairRM`` with the model card's ``tokenize_pair``
    (fp32, ``bf16=False``); ``dtype="bf16"`` / ``bf16=True`` trade exactness for speed on a GPU. The
    budgets default to PairRM's own (1224 source, 412 candidate tokens). Mismatched weights, fields or
    marker ids are errors, never random weights."""
    from transformers import AutoConfig, AutoModel

    folder = resolve_pairrm_folder(path_or_hub_id, cache_dir=cache_dir, revision=revision)
    fields = _read_fields(folder)
    config = pairrm_config(fields, source_max_length=source_max_length, candidate_max_length=candidate_max_length,
                           metrics=metrics, bf16=bf16)
    tokenizer = _marker_tokenizer(folder, fields)
    state = _read_weights(folder)
    encoder_config = AutoConfig.from_pretrained(folder)
    try:
        from transformers.initialization import no_init_weights  # every tensor comes from the checkpoint
    except ImportError:  # pragma: no cover - older transformers
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        encoder = AutoModel.from_config(encoder_config)
    encoder.config.architectures = [type(encoder).__name__]  # our saved folder holds the encoder, not PairRM's class
    ranker = PairRankerModel(encoder, tokenizer, config)
    if len(tokenizer) > encoder.config.vocab_size:
        raise PairRMCheckpointError(f"the tokenizer has {len(tokenizer)} tokens but the model only "
                                    f"{encoder.config.vocab_size} embeddings")
    ranker.load_state_dict(map_pairrm_state_dict(state, ranker.state_dict()), strict=True)
    torch_device = resolve_device(device)
    return ranker.to(device=torch_device, dtype=resolve_dtype(dtype, torch_device)).eval()


def pairrm_selector_scores(path_or_hub_id: str | Path, examples: Sequence[Mapping[str, Any]], *,
                           device: str | torch.device = "auto", batch_size: int = 8) -> list[np.ndarray]:
    """The published PairRM as one more selector (chapter 3): its full comparison matrix of each
    example's candidates, with its own token budgets (1224 / 412), aggregated by max-logits as our
    PairRanker is, so the two are compared on the same split in the same way."""
    ranker = load_pairrm(path_or_hub_id, device=device)
    return [max_logits(m) for m in example_matrices(ranker, examples, batch_size=batch_size)]
