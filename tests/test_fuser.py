"""GenFuser: the fusion input (both formats), top-K selection, training features, real training runs of
tiny locally built models (decoder-only and seq2seq, full and LoRA), early stopping, resume after a
kill, fusion, ``blend`` with a tiny PairRanker, and the bad-input errors.

Models built here are *locally built test models*: a tiny random Llama (causal) and a tiny random T5
(seq2seq) with a word-level tokenizer written by the test, so each training run takes seconds.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_lib import fuser as F
from conftest import build_example, save_tiny_models

COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black"}
DISTRACTORS = ["red apple", "yellow banana", "good dog and bad cat", "no", "maybe yes no", "big tree", "small stone",
               "apple"]
TEMPLATE_WORDS = ("Instruction Input Candidate Answer Summarize candidates into a better one for the given instruction "
                  "What is colour of").split()
WORDS = sorted({*TEMPLATE_WORDS, *COLOURS, *COLOURS.values(), "the", "is", *" ".join(DISTRACTORS).split(),
                *"0123456789", ":", "...", ".", "?", ","})
SEQ2SEQ_SPECIALS = [f"<extra_id_{i}>" for i in range(5)]


def word_tokenizer(seq2seq: bool):
    """A word-level fast tokenizer (pad 0, eos 1, unk 2); the seq2seq one appends </s> like T5's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"] + (SEQ2SEQ_SPECIALS if seq2seq else [])
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    if seq2seq:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=SEQ2SEQ_SPECIALS if seq2seq else None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama (tied embeddings, like SmolLM2) and a tiny T5, each saved with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("tiny-fuser")
    torch.manual_seed(0)
    causal_tok, seq2seq_tok = word_tokenizer(False), word_tokenizer(True)
    causal = LlamaForCausalLM(LlamaConfig(vocab_size=len(causal_tok), hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                          max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                                          tie_word_embeddings=True))
    seq2seq = T5ForConditionalGeneration(T5Config(vocab_size=len(seq2seq_tok), d_model=32, d_kv=16, d_ff=64,
                                                  num_layers=2, num_heads=2, dropout_rate=0.0, pad_token_id=0,
                                                  eos_token_id=1, decoder_start_token_id=0))
    dirs = {"causal": root / "causal", "seq2seq": root / "seq2seq"}
    for model, tok, folder in ((causal, causal_tok, dirs["causal"]), (seq2seq, seq2seq_tok, dirs["seq2seq"])):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return dirs


def tiny_config(tiny, kind: str = "causal", **overrides) -> F.FuserConfig:
    values = dict(model=str(tiny[kind]), top_k=2, source_max_length=16, candidate_max_length=8, target_max_length=8,
                  epochs=12, batch_size=4, lr=1e-2, warmup_ratio=0.0, bf16=False, device="cpu", seed=0, patience=3)
    return F.FuserConfig(**{**values, **overrides})


def colour_items(prefix: str, n: int, seed: int, *, things=("sky",),
                 target=lambda thing: f"the {thing} is {COLOURS[thing]}") -> list[F.FusionItem]:
    """The task: each instruction has one fixed answer, whatever the candidates (random distractors).
    (A tiny model needs a few hundred steps to learn to look back at the instruction's noun, so the
    training runs use one instruction.)"""
    rng = random.Random(seed)
    return [F.FusionItem(f"{prefix}-{k}", f"What is the colour of the {things[k % len(things)]} ?", "",
                         tuple(rng.sample(DISTRACTORS, 2)), target(things[k % len(things)])) for k in range(n)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


ITEM = F.FusionItem("a", "What is the colour of the sky ?", "", ("red apple", "yellow banana"), "the sky is blue")


# --------------------------------------------------------------------------------------------
# the fusion input


def test_seq2seq_source_is_the_official_format():
    text = F.fusion_source("Name a fruit.", "red", ["apple", "banana"], seq2seq=True)
    assert text == ("Instruction: Name a fruit.</s>Input: red</s>Candidate 0: <extra_id_0>:apple</s>"
                    "Candidate 1: <extra_id_1>:banana</s>" + F.FUSE_PROMPT)


def test_decoder_only_source_has_one_field_per_line_and_no_empty_input_line():
    with_input = F.fusion_source("Name a fruit.", "red", ["apple", "banana"], seq2seq=False)
    assert with_input.split("\n") == ["Instruction: Name a fruit.", "Input: red", "Candidate 1: apple",
                                      "Candidate 2: banana", F.FUSE_PROMPT]
    without = F.fusion_source("Name a fruit.", "  ", ["apple"], seq2seq=False)
    assert "Input:" not in without
    assert without.split("\n") == ["Instruction: Name a fruit.", "Candidate 1: apple", F.FUSE_PROMPT]


# --------------------------------------------------------------------------------------------
# top-K selection


def test_top_k_indices_best_first_with_stable_ties():
    assert F.top_k_indices(np.array([0.1, 0.5, 0.5, -1.0]), 3) == [1, 2, 0]
    assert F.top_k_indices([2.0, 2.0, 2.0], 2) == [0, 1]  # ties: the earlier candidate first
    assert F.top_k_indices([1.0, 3.0], 5) == [1, 0]  # k > N: all of them
    for bad in ([1.0, float("nan")], [np.inf, 0.0]):
        with pytest.raises(F.FuserError, match="NaN or infinity"):
            F.top_k_indices(np.array(bad), 1)
    for bad in (np.zeros(0), np.zeros((2, 2))):
        with pytest.raises(F.FuserError, match="non-empty 1-d"):
            F.top_k_indices(bad, 1)
    for k in (0, -1):  # -1 would otherwise slice off the worst candidate: a silent wrong selection
        with pytest.raises(F.FuserError, match="k must be >= 1"):
            F.top_k_indices([1.0, 2.0, 3.0], k)


def four_candidate_examples(n: int = 8) -> list[dict]:
    return [build_example(f"ex-{k}", models=["m0", "m1", "m2", "m3"],
                          texts=[f"answer {k} from model {m}" for m in range(4)]) for k in range(n)]


def test_ranked_items_take_the_top_k_best_first_and_carry_the_reference():
    examples = four_candidate_examples(2)
    scores = [np.array([0.1, 0.9, 0.5, 0.0]), np.array([3.0, 1.0, 2.0, 4.0])]
    items = F.ranked_items(examples, scores, 3, with_target=True)
    assert [it.candidates for it in items] == [
        ("answer 0 from model 1", "answer 0 from model 2", "answer 0 from model 0"),
        ("answer 1 from model 3", "answer 1 from model 0", "answer 1 from model 2")]
    assert items[0].target == examples[0]["output"] and items[0].id == "ex-0"
    assert items[0].instruction == examples[0]["instruction"] and items[0].input == ""
    assert all(it.target is None for it in F.ranked_items(examples, scores, 3))


def test_shuffled_ranked_items_are_a_seeded_permutation_of_the_same_top_k():
    examples = four_candidate_examples(8)
    scores = [np.array([0.4, 0.3, 0.2, 0.1])] * 8
    best_first = F.ranked_items(examples, scores, 3)
    shuffled = F.ranked_items(examples, scores, 3, shuffle=True, seed=5)
    assert shuffled == F.ranked_items(examples, scores, 3, shuffle=True, seed=5)
    for a, b in zip(best_first, shuffled):
        assert sorted(a.candidates) == sorted(b.candidates) and len(b.candidates) == 3
    assert any(a.candidates != b.candidates for a, b in zip(best_first, shuffled))  # 8 x (1/6 chance of no move)
    assert shuffled != F.ranked_items(examples, scores, 3, shuffle=True, seed=6)


def test_ranked_items_refuse_mismatched_lengths_and_missing_references():
    examples = four_candidate_examples(2)
    with pytest.raises(F.FuserError, match="2 examples but 1 score arrays"):
        F.ranked_items(examples, [np.zeros(4)], 2)
    with pytest.raises(F.FuserError, match="'ex-1': 3 scores for 4 candidates"):
        F.ranked_items(examples, [np.zeros(4), np.zeros(3)], 2)
    no_ref = [dict(examples[0], has_reference=False)]
    with pytest.raises(F.FuserError, match="has no reference"):
        F.ranked_items(no_ref, [np.zeros(4)], 2, with_target=True)
    with pytest.raises(F.FuserError, match="empty target"):
        F.ranked_items([dict(examples[0], output=" ")], [np.zeros(4)], 2, with_target=True)
    with pytest.raises(F.FuserError, match="no candidates"):
        F.ranked_items([dict(examples[0], candidates=[])], [np.zeros(0)], 2)


def test_random_items_are_seeded_and_k_is_capped_at_the_candidates():
    examples = four_candidate_examples(8)
    a = F.random_items(examples, 2, seed=1)
    assert a == F.random_items(examples, 2, seed=1)
    assert a != F.random_items(examples, 2, seed=2)
    assert all(len(it.candidates) == 2 for it in a)
    with pytest.raises(F.FuserError, match="k must be >= 1"):
        F.random_items(examples, -1)
    capped = F.random_items(examples, 10, seed=1, with_target=True)
    for ex, it in zip(examples, capped):
        assert sorted(it.candidates) == sorted(c["text"] for c in ex["candidates"])  # all 4, each once
        assert it.target == ex["output"]


def test_fusion_item_refuses_empty_fields():
    with pytest.raises(F.FuserError, match="'x' has an empty instruction"):
        F.FusionItem("x", "  ", "", ("a",))
    with pytest.raises(F.FuserError, match="'x' has no candidates"):
        F.FusionItem("x", "q", "", ())
    with pytest.raises(F.FuserError, match=r"'x': candidate\(s\) \[1\] are empty"):
        F.FusionItem("x", "q", "", ("a", " "))
    with pytest.raises(F.FuserError, match="'x' has an empty target"):
        F.FusionItem("x", "q", "", ("a",), "")
    assert F.FusionItem("x", "q", "", ("a",)).target is None


# --------------------------------------------------------------------------------------------
# configuration


def test_config_errors_and_key():
    with pytest.raises(ValueError, match=r"unknown GenFuser parameter\(s\) \['learning_rate'\]"):
        F.FuserConfig.from_dict({"learning_rate": 1e-4})
    with pytest.raises(TypeError, match="FuserConfig.epochs must be int"):
        F.FuserConfig(epochs="3")
    with pytest.raises(ValueError, match="lora_r or freeze_layers"):
        F.FuserConfig(lora_r=4, freeze_layers=1)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        F.FuserConfig(top_k=0)
    with pytest.raises(ValueError, match="lora_r must be >= 0"):
        F.FuserConfig(lora_r=-1)
    cfg = F.FuserConfig()
    assert F.FuserConfig.from_dict(json.loads(json.dumps({"epochs": 2, "lr": 1e-3}))) == replace(cfg, epochs=2, lr=1e-3)
    assert replace(cfg, epochs=4).key() != cfg.key() and replace(cfg, lr=3e-4).key() != cfg.key()
    assert replace(cfg, device="cpu").key() == cfg.key()


# --------------------------------------------------------------------------------------------
# prompts and training features on the tiny models


@pytest.fixture(scope="module")
def untrained(tiny) -> dict[str, F.GenFuser]:
    return {kind: F.GenFuser.from_model(tiny_config(tiny, kind)) for kind in ("causal", "seq2seq")}


def test_causal_features_mask_the_prompt_and_end_the_target_with_eos(untrained):
    fuser = untrained["causal"]
    assert not fuser.seq2seq
    prompt = fuser.prompt(ITEM)
    assert prompt == F.fusion_source(ITEM.instruction, "", ITEM.candidates, seq2seq=False) + "\nAnswer:"  # no template
    tok = fuser.tokenizer
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    target_ids = tok.encode("the sky is blue", add_special_tokens=False)
    assert tok.unk_token_id not in prompt_ids + target_ids  # the vocabulary covers the test texts
    f = fuser.training_features(ITEM)
    assert f["input_ids"] == prompt_ids + target_ids + [tok.eos_token_id]
    assert f["labels"] == [-100] * len(prompt_ids) + target_ids + [tok.eos_token_id]
    assert f["attention_mask"] == [1] * len(f["input_ids"])
    with pytest.raises(F.FuserError, match="'a' has no target"):
        fuser.training_features(replace(ITEM, target=None))


def test_seq2seq_features_are_the_source_and_target_plus_eos(untrained):
    fuser = untrained["seq2seq"]
    assert fuser.seq2seq
    tok = fuser.tokenizer
    prompt = fuser.prompt(ITEM)
    assert prompt == F.fusion_source(ITEM.instruction, "", ITEM.candidates, seq2seq=True)
    f = fuser.training_features(ITEM)
    assert f["input_ids"] == tok.encode(prompt) and f["input_ids"][-1] == tok.eos_token_id
    tokens = tok.convert_ids_to_tokens(f["input_ids"])
    assert tokens.count("</s>") == 5 and "<extra_id_0>" in tokens and "<extra_id_1>" in tokens
    assert f["labels"] == tok.encode("the sky is blue", add_special_tokens=False) + [tok.eos_token_id]


def test_candidates_and_targets_are_cut_at_their_budgets(untrained, tiny):
    fuser = F.GenFuser(untrained["causal"].loaded, tiny_config(tiny, candidate_max_length=3, target_max_length=2))
    long = F.FusionItem("b", "What is the colour of the sky ?", "", ("red apple yellow banana good dog", "no"),
                        "the sky is blue")
    lines = fuser.prompt(long).split("\n")
    assert lines[1] == "Candidate 1: red apple yellow..." and lines[2] == "Candidate 2: no"  # short ones stay whole
    f = fuser.training_features(long)
    tok = fuser.tokenizer
    assert [x for x in f["labels"] if x != -100] == tok.encode("the sky", add_special_tokens=False) + [tok.eos_token_id]


def test_a_chat_template_wraps_the_fusion_input_and_the_loss_stays_on_the_target(tiny):
    fuser = F.GenFuser.from_model(tiny_config(tiny))
    fuser.tokenizer.chat_template = ("{% for m in messages %}</s> {{ m['content'] }}{% endfor %}"
                                     "{% if add_generation_prompt %} Answer :{% endif %}")
    prompt = fuser.prompt(ITEM)
    assert prompt == "</s> " + F.fusion_source(ITEM.instruction, "", ITEM.candidates, seq2seq=False) + " Answer :"
    f = fuser.training_features(ITEM)
    n_prompt = len(fuser.tokenizer.encode(prompt, add_special_tokens=False))
    assert f["input_ids"][0] == fuser.tokenizer.eos_token_id  # the template's special token, read as one
    assert f["labels"][:n_prompt] == [-100] * n_prompt and f["labels"][n_prompt:] == f["input_ids"][n_prompt:]


def test_fuse_returns_results_in_input_order_and_is_reproducible(untrained):
    fuser = untrained["causal"]
    items = colour_items("o", 3, 0, things=tuple(COLOURS), target=lambda thing: None)
    one = fuser.fuse(items, max_new_tokens=4, batch_size=1)
    assert fuser.fuse(items[::-1], max_new_tokens=4, batch_size=1) == one[::-1]
    assert all(0 <= f.n_tokens <= 4 for f in one)
    sampled = fuser.fuse(items, max_new_tokens=4, do_sample=True, temperature=1.5, seed=3)
    assert sampled == fuser.fuse(items, max_new_tokens=4, do_sample=True, temperature=1.5, seed=3)
    assert len(fuser.fuse(items, max_new_tokens=4, num_beams=2)) == 3
    with pytest.raises(F.FuserError, match="must be >= 1"):
        fuser.fuse(items, num_beams=0)


def test_a_fuser_needs_a_generator(tmp_path):
    dirs = save_tiny_models(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"], ("encoder",))
    with pytest.raises(F.FuserError, match="causal or seq2seq"):
        F.GenFuser.from_model(F.FuserConfig(model=str(dirs["encoder"]), device="cpu"))


# --------------------------------------------------------------------------------------------
# a real training run of the tiny causal fuser


@pytest.fixture(scope="module")
def causal_run(tiny, tmp_path_factory):
    train, val = colour_items("train", 16, 0), colour_items("val", 4, 1)
    config = tiny_config(tiny)
    root = tmp_path_factory.mktemp("genfuser")
    fuser, report = F.train_or_load(train, val, config, root=root, progress=False)
    return {"train": train, "val": val, "config": config, "root": root, "fuser": fuser, "report": report}


def test_training_lowers_the_validation_loss_and_keeps_the_best_epoch(causal_run):
    report, config = causal_run["report"], causal_run["config"]
    assert report.epochs_completed == config.epochs and not report.stopped_early
    assert len(report.train_loss) == len(report.val_loss) == config.epochs
    assert report.val_loss[-1] < 0.7 * report.val_loss[0], report.val_loss
    assert report.train_loss[-1] < report.train_loss[0]
    assert report.best_epoch == 1 + int(np.argmin(report.val_loss))
    assert (report.train_examples, report.val_examples, report.resumed_from_step) == (16, 4, 0)
    assert report.trainable_parameters == causal_run["fuser"].loaded.num_parameters  # full fine-tune
    assert report.train_seconds > 0 and report.config == json.loads(json.dumps(report.config))
    epoch_tokens = sum(len(causal_run["fuser"].training_features(it)["input_ids"]) for it in causal_run["train"])
    assert report.train_tokens_per_second * report.train_seconds == pytest.approx(config.epochs * epoch_tokens)
    out = Path(report.out_dir)
    assert out == F.run_dir(causal_run["train"], causal_run["val"], config, causal_run["root"])
    assert not list(out.glob("checkpoint-*")) and (out / F.REPORT_FILE).exists()


def test_the_trained_fuser_answers_and_reloads_to_identical_generations(causal_run):
    fuser, val = causal_run["fuser"], causal_run["val"]
    fused = fuser.fuse(val, max_new_tokens=6)
    assert all(f.text and f.n_tokens > 0 for f in fused)
    assert [f.text for f in fused] == [it.target for it in val]  # the answer, whatever the (unseen) candidates
    again = F.GenFuser.from_pretrained(causal_run["report"].best_dir, device="cpu")
    assert again.config == causal_run["config"] and not again.seq2seq
    assert again.fuse(val, max_new_tokens=6) == fused
    assert fuser.fuse(val, max_new_tokens=6, batch_size=1) == fused  # left padding changes nothing


def test_training_arguments_follow_the_config(tiny, tmp_path):
    config = tiny_config(tiny, grad_accum_steps=2, warmup_ratio=0.1)
    quiet, loud = (F._training_arguments(config, tmp_path, progress) for progress in (False, True))
    assert quiet.disable_tqdm and not loud.disable_tqdm  # progress=False: no Trainer bars
    assert (quiet.num_train_epochs, quiet.per_device_train_batch_size, quiet.gradient_accumulation_steps) == (12, 4, 2)
    assert (quiet.learning_rate, quiet.seed, quiet.save_strategy, quiet.eval_strategy) == (1e-2, 0, "epoch", "epoch")
    assert quiet.load_best_model_at_end and quiet.metric_for_best_model == "eval_loss" and not quiet.greater_is_better
    assert quiet.get_warmup_steps(100) == 10 and not quiet.bf16  # bf16=False in the config
    assert quiet.dataloader_num_workers == 0


def test_a_second_call_loads_the_finished_run_without_training(causal_run):
    run = causal_run
    fuser, report = F.train_or_load(run["train"], run["val"], run["config"], root=run["root"], progress=False)
    assert report.train_seconds == 0.0
    assert (report.val_loss, report.best_dir) == (run["report"].val_loss, run["report"].best_dir)
    assert fuser.fuse(run["val"][:2], max_new_tokens=6) == run["fuser"].fuse(run["val"][:2], max_new_tokens=6)
    out = Path(run["report"].out_dir)  # the folder of a finished run, asked for with other settings
    with pytest.raises(F.FuserError, match="other settings"):
        F.train_fuser(run["train"], run["val"], replace(run["config"], epochs=3), out, progress=False)
    other_device = F.train_fuser(run["train"], run["val"], replace(run["config"], device="auto"), out, progress=False)
    assert other_device.train_seconds == 0.0 and other_device.val_loss == report.val_loss  # device is not a setting
    with pytest.raises(F.FuserError, match="needs training and validation inputs"):
        F.train_fuser(run["train"], [], run["config"], Path(run["root"]) / "other", progress=False)


def val_loss_of(fuser: F.GenFuser, items) -> float:
    """The Trainer's eval loss over one batch: the mean token loss on the targets."""
    from transformers import DataCollatorForSeq2Seq

    batch = DataCollatorForSeq2Seq(fuser.tokenizer, label_pad_token_id=-100, padding=True)(
        [fuser.training_features(it) for it in items])
    with torch.no_grad():
        return float(fuser.model(**batch).loss)


def test_early_stopping_when_the_validation_loss_rises_keeps_the_first_epoch(tiny, tmp_path):
    train = colour_items("train", 16, 0)
    val = colour_items("val", 4, 1, target=lambda thing: "maybe yes no")  # answers the training never shows
    config = tiny_config(tiny, epochs=5, patience=1)
    report = F.train_fuser(train, val, config, tmp_path / "run", progress=False)
    assert report.val_loss[1] > report.val_loss[0], report.val_loss
    assert report.stopped_early and report.epochs_completed == 2 < config.epochs
    assert report.best_epoch == 1
    best = F.GenFuser.from_pretrained(report.best_dir, device="cpu")
    assert val_loss_of(best, val) == pytest.approx(report.val_loss[0], rel=1e-4)  # epoch 1's weights, not the last


def test_lora_trains_only_the_adapters_and_publishes_a_plain_merged_model(tiny, tmp_path):
    from safetensors import safe_open

    train, val = colour_items("train", 16, 0), colour_items("val", 4, 1)
    config = tiny_config(tiny, lora_r=4, lora_dropout=0.0, epochs=2, lr=5e-2, gradient_checkpointing=True)
    report = F.train_fuser(train, val, config, tmp_path / "run", progress=False)
    base_model = F.GenFuser.from_model(tiny_config(tiny)).model
    adapted = [m for m in base_model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    # peft's default for Llama adapts every linear layer of the blocks (not the embeddings or the head)
    assert report.trainable_parameters == sum(4 * (m.in_features + m.out_features) for m in adapted) == 4352
    assert report.epochs_completed == 2 and report.val_loss[-1] < report.val_loss[0]
    best = Path(report.best_dir)
    with safe_open(str(best / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not [k for k in keys if "lora" in k]
    base = base_model.state_dict()
    assert keys <= set(base)
    merged = F.GenFuser.from_pretrained(best, device="cpu")
    assert type(merged.model).__name__ == "LlamaForCausalLM"
    weights = merged.model.state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[q], base[q])  # the adapters are merged in
    for frozen in ("model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight"):
        assert torch.equal(weights[frozen], base[frozen])
    assert len(merged.fuse(val[:1], max_new_tokens=3)) == 1


def test_seq2seq_fuser_trains_one_epoch_and_fuses(tiny, tmp_path):
    train, val = colour_items("train", 16, 0), colour_items("val", 4, 1)
    report = F.train_fuser(train, val, tiny_config(tiny, "seq2seq", epochs=1), tmp_path / "run", progress=False)
    assert report.epochs_completed == 1 and len(report.val_loss) == 1 and report.best_epoch == 1
    fuser = F.GenFuser.from_pretrained(report.best_dir, device="cpu")
    assert fuser.seq2seq
    fused = fuser.fuse(val, max_new_tokens=5)
    assert len(fused) == 4 and all(0 <= f.n_tokens <= 5 for f in fused)
    assert fused == fuser.fuse(val, max_new_tokens=5, batch_size=1)
    assert val_loss_of(fuser, val) == pytest.approx(report.val_loss[0], rel=1e-4)


# --------------------------------------------------------------------------------------------
# a kill, and the resume from the last complete checkpoint


def test_complete_checkpoint_is_the_newest_with_a_state_and_half_written_ones_go(tmp_path):
    for step, complete in ((2, True), (9, True), (10, False), (4, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert F._complete_checkpoint(tmp_path) == tmp_path / "checkpoint-9"  # numeric order, not text order
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-9"]
    assert F._complete_checkpoint(tmp_path / "checkpoint-2") is None


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tiny, tmp_path, monkeypatch):
    train, val = colour_items("train", 16, 0), colour_items("val", 4, 1)
    config = tiny_config(tiny, epochs=2)
    out = tmp_path / "run"

    def killed(self, folder):
        raise KeyboardInterrupt("killed before the best model was published")

    monkeypatch.setattr(F.GenFuser, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        F.train_fuser(train, val, config, out, progress=False)
    monkeypatch.undo()
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == ["checkpoint-4", "checkpoint-8"]  # 16 inputs / batch 4 = 4 steps an epoch
    assert not (out / "best").exists() and not (out / F.REPORT_FILE).exists()
    uninterrupted = json.loads((checkpoints[1] / "trainer_state.json").read_text())["log_history"]
    (checkpoints[1] / "trainer_state.json").unlink()  # the kill hit while epoch 2's checkpoint was being written

    report = F.train_fuser(train, val, config, out, progress=False)
    assert report.resumed_from_step == 4 and report.train_seconds > 0
    fuser = F.GenFuser.from_pretrained(report.best_dir, device="cpu")
    epoch_tokens = sum(len(fuser.training_features(it)["input_ids"]) for it in train)
    assert report.train_tokens_per_second * report.train_seconds == pytest.approx(epoch_tokens)  # this call: 1 epoch
    assert report.epochs_completed == 2 and len(report.val_loss) == 2
    expected = [row["eval_loss"] for row in uninterrupted if "eval_loss" in row]
    np.testing.assert_allclose(report.val_loss, expected, rtol=1e-4)  # epoch 2 retrained, to the same result
    assert (out / "best" / F.META_FILE).exists() and not list(out.glob("checkpoint-*"))


# --------------------------------------------------------------------------------------------
# LLM-Blender end to end, and the fused answer as a new candidate


@pytest.fixture(scope="module")
def tiny_ranker(tmp_path_factory):
    from blender_lib.rankers import PairRankerConfig, PairRankerModel

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    dirs = save_tiny_models(tmp_path_factory.mktemp("tiny-ranker"), words, ("encoder",))
    config = PairRankerConfig(backbone=str(dirs["encoder"]), source_max_length=16, candidate_max_length=16,
                              bf16=False, device="cpu", seed=0)
    return PairRankerModel.from_backbone(config).eval()


def test_blend_fuses_the_max_logits_top_k_of_the_ranker(tiny_ranker, untrained):
    from blender_lib.rankers import comparison_matrix, max_logits

    fuser = untrained["causal"]
    instruction, candidates = "What is the colour of the sky ?", ["red apple", "the sky is blue", "no no", "bad cat"]
    m = comparison_matrix(tiny_ranker, instruction, candidates)
    scores = max_logits(m)
    expected = [int(i) for i in np.argsort(-scores, kind="stable")[:2]]
    assert len(set(np.round(scores, 6))) == 4  # distinct scores: the expected order is unambiguous
    blended = F.blend(tiny_ranker, fuser, instruction, candidates, max_new_tokens=4)
    assert blended.chosen == expected
    direct = fuser.fuse([F.FusionItem("blend", instruction, "", tuple(candidates[i] for i in expected))],
                        max_new_tokens=4)[0]
    assert (blended.text, blended.n_tokens) == (direct.text, direct.n_tokens)
    reordered = F.blend(tiny_ranker, fuser, instruction, candidates[::-1], max_new_tokens=1)
    assert reordered.chosen == [3 - i for i in expected]  # chosen by content, not by position
    assert F.blend(tiny_ranker, fuser, instruction, candidates, top_k=3, max_new_tokens=2).chosen == \
        [int(i) for i in np.argsort(-scores, kind="stable")[:3]]
    assert F.blend(tiny_ranker, fuser, instruction, ["only one"], max_new_tokens=2).chosen == [0]
    with pytest.raises(F.FuserError, match="at least one candidate"):
        F.blend(tiny_ranker, fuser, instruction, [])
    with pytest.raises(F.FuserError, match="k must be >= 1"):
        F.blend(tiny_ranker, fuser, instruction, candidates, top_k=0)


def test_with_added_candidate_copies_and_refuses_bad_additions():
    examples = [build_example("e1"), build_example("e2")]
    before = copy.deepcopy(examples)
    out = F.with_added_candidate(examples, ["fused one", "fused two"], "genfuser")
    assert examples == before  # the inputs are untouched
    assert [c["model"] for c in out[0]["candidates"]] == ["model-a", "model-b", "genfuser"]
    assert out[1]["candidates"][-1] == {"model": "genfuser", "decoding_method": "fusion", "text": "fused two",
                                        "scores": {}}
    out[0]["candidates"][0]["text"] = "changed"
    assert examples[0]["candidates"][0]["text"] == "Answer from model-a."  # a deep copy
    with pytest.raises(F.FuserError, match="'e1' already has a candidate named 'model-a'"):
        F.with_added_candidate(examples, ["x", "y"], "model-a")
    with pytest.raises(F.FuserError, match="'e2' is empty"):
        F.with_added_candidate(examples, ["x", "  "], "genfuser")
    with pytest.raises(F.FuserError, match="2 examples but 1 added texts"):
        F.with_added_candidate(examples, ["x"], "genfuser")
    assert examples == before
