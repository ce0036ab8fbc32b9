"""How the trained encoders (PairRanker, SimCLS, SummaReranker, the ZOOTER router) live on disk.

One folder holds our config (``META_FILE``), the encoder's Hugging Face config, the tokenizer and
the safetensors weights. A folder is written beside its target and swapped in, so a kill never
leaves a half-written model where a reader looks; loading rebuilds the encoder from the saved
config (no download).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch

from .io import atomic_write_json
from .models import resolve_device, resolve_dtype

WEIGHTS_FILE = "model.safetensors"
PUBLISHED_FILE = "published.json"  # in a run's best/: the epoch it holds


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written folder into place; a kill between the two renames leaves the old one
    at ``.NAME.old``, which :func:`existing_dir` falls back to."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def publish_best(out_dir: Path, epoch: int, model_folder: str, *, force: bool = False) -> bool:
    """Make ``out_dir/best`` a whole copy of ``out_dir/epoch-<epoch>/<model_folder>``, written beside
    it and swapped in (:func:`replace_dir`), with the epoch recorded in it (``PUBLISHED_FILE``).
    When ``best`` already holds that epoch this does nothing unless ``force`` (a call that trained),
    so loading a finished run writes nothing; a publish cut short by a kill is redone. Returns
    whether it copied."""
    target = out_dir / "best"
    marker = target / PUBLISHED_FILE
    if not force and marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("epoch") == epoch:
        return False
    staging = out_dir / ".best.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(out_dir / f"epoch-{epoch}" / model_folder, staging)
    atomic_write_json(staging / PUBLISHED_FILE, {"epoch": epoch})
    replace_dir(staging, target)
    return True


def existing_dir(target: Path, meta_file: str, what: str) -> Path:
    """The saved folder to read: the target, or its ``.old`` copy when a swap was cut short."""
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.exists():
        return old
    if not (target / meta_file).exists():
        raise FileNotFoundError(f"no saved {what} at {target} (expected {meta_file} there)")
    return target


class SavedInFolder:
    """Mixin for an ``nn.Module`` with ``encoder``, ``tokenizer`` and a dataclass ``config``, built
    as ``cls(encoder, tokenizer, config)``: ``save_pretrained`` / ``from_pretrained``."""

    META_FILE: ClassVar[str]
    WHAT: ClassVar[str]  # how errors name the model ("PairRanker", "baseline model")
    encoder: Any
    tokenizer: Any
    config: Any

    def _meta(self) -> dict[str, Any]:
        return {"format": 1, "config": asdict(self.config)}

    @classmethod
    def _config_from_meta(cls, meta: dict[str, Any], folder: Path) -> Any:
        raise NotImplementedError

    def _write(self, folder: Path) -> None:
        from safetensors.torch import save_model

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / self.META_FILE, self._meta())
        self.encoder.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        save_model(self, str(folder / WEIGHTS_FILE))

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the whole folder beside the target, then swap it in: never a half-written model."""
        target = Path(path)
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        self._write(staging)
        replace_dir(staging, target)
        return target

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = "float32") -> Any:
        """Load a saved model (no download: the encoder is rebuilt from the saved config)."""
        from safetensors.torch import load_model as load_weights
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = existing_dir(Path(path), cls.META_FILE, cls.WHAT)
        meta = json.loads((folder / cls.META_FILE).read_text(encoding="utf-8"))
        config = cls._config_from_meta(meta, folder)
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(folder))
        model = cls(encoder, AutoTokenizer.from_pretrained(folder), config)  # type: ignore[call-arg]
        load_weights(model, str(folder / WEIGHTS_FILE))
        torch_device = resolve_device(device)
        return model.to(device=torch_device, dtype=resolve_dtype(dtype, torch_device)).eval()
