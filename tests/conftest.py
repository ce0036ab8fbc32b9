"""Shared test fixtures: offline mode, example builders, small files, the optional shared real data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

# Tests never touch the Hugging Face hub: set before any test module imports huggingface_hub,
# which reads these once at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_example(
    ex_id: str = "ex-1",
    *,
    models: Iterable[str] = ("model-a", "model-b"),
    texts: Iterable[str] | None = None,
    output: str = "Paris is the capital of France.",
    tag: str = "open_qa",
    **overrides: Any,
) -> dict:
    """A valid example in the MixInstruct schema with one candidate per model."""
    models = list(models)
    texts = list(texts) if texts is not None else [f"Answer from {m}." for m in models]
    example = {
        "id": ex_id,
        "instruction": "What is the capital of France?",
        "input": "",
        "output": output,
        "candidates": [
            {"model": m, "decoding_method": "greedy", "text": t, "scores": {}}
            for m, t in zip(models, texts, strict=True)
        ],
        "cmp_results": {},
        "source": "test",
        "tags": [tag],
    }
    example.update(overrides)
    return example


# Question / reference pairs for the rankers' and baselines' tiny synthetic training sets.
FACTS = [
    ("What is the capital of France?", "paris is the capital of france"),
    ("Which planet is the largest?", "jupiter is the largest planet"),
    ("What do bees make?", "bees make honey from flower nectar"),
    ("What colour is the sky on a clear day?", "the sky is blue on a clear day"),
    ("How many legs does a spider have?", "a spider has eight legs"),
    ("What is water made of?", "water is made of hydrogen and oxygen"),
    ("Who wrote Hamlet?", "william shakespeare wrote hamlet"),
    ("What is the boiling point of water?", "water boils at one hundred degrees celsius"),
    ("What gas do plants absorb?", "plants absorb carbon dioxide from the air"),
    ("What is the fastest land animal?", "the cheetah is the fastest land animal"),
    ("Which ocean is the largest?", "the pacific ocean is the largest ocean"),
    ("What is frozen water called?", "frozen water is called ice"),
]
BAD_ANSWERS = ["I am not sure about that.", "Please ask me something else."]


def overlap_example(ex_id: str, instruction: str, reference: str, texts: list[str], *,
                    models: list[str] | None = None, cmp_results: dict | None = None) -> dict:
    """A MixInstruct-shaped example whose 'bleu' and 'rougeL' are word-overlap (Dice) stand-ins,
    so tests need no metric libraries."""
    ref_words = set(reference.lower().split())

    def overlap(text: str) -> float:
        words = text.lower().replace(".", "").split()
        hits = sum(w in ref_words for w in words)
        return 0.0 if not hits else 2 * hits / (len(words) + len(ref_words))

    models = models or [f"m{k}" for k in range(len(texts))]
    return {"id": ex_id, "instruction": instruction, "input": "", "output": reference, "source": "test",
            "tags": ["qa"], "cmp_results": cmp_results or {},
            "candidates": [{"model": m, "decoding_method": "greedy", "text": t,
                            "scores": {"bleu": 100 * overlap(t), "rougeL": overlap(t)}} for m, t in zip(models, texts)]}


@pytest.fixture
def make_example() -> Callable[..., dict]:
    """Factory for valid examples; keyword arguments override fields."""
    return build_example


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[[str, Iterable[Any]], Path]:
    """Write a file under tmp_path: dict items become JSON lines, str items are written verbatim."""

    def write(name: str, items: Iterable[Any]) -> Path:
        path = tmp_path / name
        lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real-data folder beside the project, or a skip saying why it is absent."""
    from blender_lib.paths import shared_data_dir

    folder = shared_data_dir()
    if folder is None:
        pytest.skip(
            "shared real data not present (../shared/data or $BLENDER_BOOK_SHARED_DATA); a fresh machine lacks it"
        )
    return folder


TINY_SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def save_tiny_models(root: Path, words: list[str], kinds: Iterable[str]) -> dict[str, Path]:
    """Tiny random models with a word-level tokenizer over ``words`` (specials first), saved as HF
    folders under ``root``, built in the order given after one seed: "encoder" (BERT), "mlm" (BERT
    masked LM), "reward" (DeBERTa-v2 with one logit)."""
    import torch
    from transformers import (BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast, DebertaV2Config,
                              DebertaV2ForSequenceClassification)

    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    builders = {
        "encoder": lambda: BertModel(BertConfig(vocab_size=len(words), **TINY_SHAPE)),
        "mlm": lambda: BertForMaskedLM(BertConfig(vocab_size=len(words), **TINY_SHAPE)),
        "reward": lambda: DebertaV2ForSequenceClassification(DebertaV2Config(
            vocab_size=len(words), num_labels=1, type_vocab_size=0, pad_token_id=0, **TINY_SHAPE)),
    }
    torch.manual_seed(0)
    dirs = {}
    for kind in kinds:
        dirs[kind] = root / kind
        builders[kind]().save_pretrained(dirs[kind])
        tokenizer.save_pretrained(dirs[kind])
    return dirs


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tiny models: on a busy 2-core machine they train several times
    faster than with two threads handing work back and forth, use less CPU, and compute the same
    floats in every process. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
