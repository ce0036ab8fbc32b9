"""Loading a published PairRM checkpoint (llm-blender/PairRM-hf layout) into our PairRankerModel.

No hub access here, so every test runs on a LOCALLY CONSTRUCTED TINY CHECKPOINT of exactly that layout:
a 2-layer, hidden-32 DeBERTa-v2 (relative positions only, like DeBERTa-v3), random seeded weights saved
under PairRM's key names (``pretrained_model.*``, ``head_layer.*``), a config.json with PairRM's fields,
and a DeBERTa-v2 (Unigram) tokenizer built from a small vocabulary with PairRM's added tokens. The
expected logits come from ``official_pairrm_logits_reference``: the official ``DebertaV2PairRM.forward``
(llm-blender, llm_blender/pair_ranker/pairrm.py) and the model card's ``tokenize_pair``, re-written
here in plain torch.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from blender_lib import rankers as R
from blender_lib.pairrm import (PAIRRM_MARKERS, PairRMCheckpointError, load_pairrm, resolve_pairrm_folder)

SOURCE_MAX, CANDIDATE_MAX = 24, 12  # small budgets (PairRM's are 1224 / 412) so truncation is exercised
WORDS = ("hello hi love you hate i the capital of france is paris what lyon city a know not sure "
         "please answer it think big").split()
TRIPLES = [
    ("hello!", "hi!", "f**k off!"),  # the model card's examples
    ("I love you!", "I hate you!", "I love you, too!"),
    ("What is the capital of France?", "Paris.", "I think it is Lyon, a big city."),
    ("What is the capital of France? Please answer with the city and nothing else, thank you so much",
     "It is Paris, the capital city of France, on the Seine river", "I am not sure."),  # long: both truncated
    ("What is the capital of France?", "I am not sure.", "Paris."),
]


# --------------------------------------------------------------------------------------------
# the tiny checkpoint


def tiny_tokenizer():
    """A DeBERTa-v2 tokenizer (Unigram, Metaspace) over a small vocabulary, with PairRM's added tokens in
    PairRM's order: [MASK], then <|source|>, <|candidate1|>, <|candidate2|>, <|candidate|> (normalized,
    not special, as in the published tokenizer_config.json)."""
    from transformers import AddedToken, DebertaV2Tokenizer

    vocab = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0) for w in WORDS]
    vocab += [(c, -5.0) for c in string.ascii_letters + string.digits + string.punctuation]
    vocab += [("▁" + c, -6.0) for c in string.ascii_letters + string.digits + string.punctuation]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, unk_id=3)
    tokenizer.add_tokens([AddedToken("[MASK]", special=True, normalized=False)], special_tokens=True)
    for marker in (*PAIRRM_MARKERS, "<|candidate|>"):
        tokenizer.add_tokens([AddedToken(marker, special=False, normalized=True)])
    return tokenizer


class OfficialPairRMReference(nn.Module):
    """The official DebertaV2PairRM: its parameter names, its head and its forward, in plain torch."""

    def __init__(self, config) -> None:
        from transformers import DebertaV2Model

        super().__init__()
        self.config = config
        self.pretrained_model = DebertaV2Model(config)
        hidden = config.hidden_size
        self.head_layer = nn.Sequential(nn.Dropout(config.drop_out), nn.Linear(2 * hidden, hidden), nn.Tanh(),
                                        nn.Dropout(config.drop_out), nn.Linear(hidden, config.n_tasks))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.ne(0).any(dim=0)  # drop the all-padding columns
        input_ids, attention_mask = input_ids[:, keep], attention_mask[:, keep]
        out = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        encs = out.hidden_states[-1]
        cfg = self.config

        def at(token_id: int) -> torch.Tensor:
            rows, cols = torch.where(input_ids == token_id)
            return encs[rows, cols, :]

        source, cand1, cand2 = at(cfg.source_prefix_id), at(cfg.cand1_prefix_id), at(cfg.cand2_prefix_id)
        left = self.head_layer(torch.cat([source, cand1], dim=-1))
        right = self.head_layer(torch.cat([source, cand2], dim=-1))
        return (left - right).mean(dim=-1)


def official_tokenize_pair(tokenizer, sources, cand1s, cand2s, source_max_length, candidate_max_length):
    """The model card's tokenize_pair: each part encoded with its marker and [CLS]/[SEP]; the candidates
    share what the source leaves of source_max_length + 2 x candidate_max_length; padded to that."""
    max_length = source_max_length + 2 * candidate_max_length
    ids = []
    for source, cand1, cand2 in zip(sources, cand1s, cand2s, strict=True):
        source_ids = tokenizer.encode("<|source|>" + source, max_length=source_max_length, truncation=True)
        budget = (max_length - len(source_ids)) // 2
        cand1_ids = tokenizer.encode("<|candidate1|>" + cand1, max_length=budget, truncation=True)
        cand2_ids = tokenizer.encode("<|candidate2|>" + cand2, max_length=budget, truncation=True)
        ids.append(source_ids + cand1_ids + cand2_ids)
    return tokenizer.pad({"input_ids": ids}, return_tensors="pt", padding="max_length", max_length=max_length)


@torch.inference_mode()
def official_pairrm_logits_reference(model, tokenizer, triples, source_max_length=SOURCE_MAX,
                                     candidate_max_length=CANDIDATE_MAX) -> np.ndarray:
    """Logit that candidate 1 beats candidate 2, as the official code computes it."""
    model.eval()
    enc = official_tokenize_pair(tokenizer, *zip(*triples), source_max_length, candidate_max_length)
    return model(enc["input_ids"], enc["attention_mask"]).numpy().astype(float)


def tiny_pairrm_config(tokenizer, **overrides):
    """A DeBERTa-v3-shaped config (relative positions only: 32 positions although inputs reach 48
    tokens, as the real 2048-token inputs exceed its 512) with PairRM's fields."""
    from transformers import DebertaV2Config

    ids = tokenizer.convert_tokens_to_ids([*PAIRRM_MARKERS, "<|candidate|>"])
    values = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=32, relative_attention=True,
                  position_biased_input=False, pos_att_type=["p2c", "c2p"], position_buckets=16,
                  max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
                  layer_norm_eps=1e-7, pad_token_id=0, initializer_range=0.2, architectures=["DebertaV2PairRM"],
                  n_tasks=1, drop_out=0.05, source_prefix_id=ids[0], cand1_prefix_id=ids[1], cand2_prefix_id=ids[2],
                  cand_prefix_id=ids[3])
    values.update(overrides)
    return DebertaV2Config(**values)


def write_checkpoint(folder: Path, model: nn.Module, tokenizer, state: dict | None = None) -> Path:
    """config.json + model.safetensors (PairRM's key names) + tokenizer files, as PairRM-hf ships them."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state = state if state is not None else {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    reference = OfficialPairRMReference(tiny_pairrm_config(tokenizer)).eval()
    folder = write_checkpoint(tmp_path_factory.mktemp("pairrm") / "PairRM-tiny", reference, tokenizer)
    return {"folder": folder, "reference": reference, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def ranker(checkpoint):
    return load_pairrm(checkpoint["folder"], device="cpu", source_max_length=SOURCE_MAX,
                       candidate_max_length=CANDIDATE_MAX)


def edited_checkpoint(checkpoint, tmp_path, *, state_edit=None, config_edit=None) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(checkpoint["folder"], folder)
    if state_edit is not None:
        from safetensors.torch import load_file, save_file

        state = load_file(folder / "model.safetensors")
        state_edit(state)
        save_file(state, str(folder / "model.safetensors"))
    if config_edit is not None:
        fields = json.loads((folder / "config.json").read_text())
        config_edit(fields)
        (folder / "config.json").write_text(json.dumps(fields))
    return folder


# --------------------------------------------------------------------------------------------
# the same input ids and the same logits as the official code


def test_input_ids_are_the_model_cards_tokenize_pair(ranker, checkpoint):
    official = official_tokenize_pair(checkpoint["tokenizer"], *zip(*TRIPLES), SOURCE_MAX, CANDIDATE_MAX)
    for row, triple in enumerate(TRIPLES):
        ids, positions = ranker.formatter.encode(*triple)
        expected = official["input_ids"][row][official["attention_mask"][row].bool()].tolist()
        assert ids == expected, triple
        marker_ids = checkpoint["tokenizer"].convert_tokens_to_ids(list(PAIRRM_MARKERS))
        assert [ids[p] for p in positions] == marker_ids
        assert len(ids) <= SOURCE_MAX + 2 * CANDIDATE_MAX
    # the budget rule: a long source fills its budget and leaves the candidates theirs; a short one
    # leaves half of what it did not use to each candidate
    def segment_lengths(triple):
        ids, (p_src, p_c1, p_c2) = ranker.formatter.encode(*triple)
        return p_c1 - p_src, p_c2 - p_c1, len(ids) - p_c2 + p_src

    assert segment_lengths(TRIPLES[3])[:2] == (SOURCE_MAX, CANDIDATE_MAX)  # both cut; the second is short
    src, c1, _ = segment_lengths(("Hi?", "word " * 40, "ok"))
    assert src == 6 and c1 == CANDIDATE_MAX + (SOURCE_MAX - src) // 2  # [CLS] <|source|> ▁H i ? [SEP]


def test_logits_equal_the_official_forward(ranker, checkpoint):
    expected = official_pairrm_logits_reference(checkpoint["reference"], checkpoint["tokenizer"], TRIPLES)
    assert np.abs(expected).max() > 0.05 and np.ptp(expected) > 0.05  # a test that can fail
    np.testing.assert_allclose(R.score_pairs(ranker, TRIPLES), expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(R.score_pairs(ranker, TRIPLES, batch_size=1), expected, rtol=0, atol=2e-5)


def test_compare_and_rank_follow_the_official_logits(ranker, checkpoint):
    sources, a, b = (list(x) for x in zip(*TRIPLES))
    forward = official_pairrm_logits_reference(checkpoint["reference"], checkpoint["tokenizer"], TRIPLES)
    backward = official_pairrm_logits_reference(checkpoint["reference"], checkpoint["tokenizer"],
                                                list(zip(sources, b, a)))
    assert R.compare(ranker, sources, a, b) == [bool(f - r > 0) for f, r in zip(forward, backward)]
    source, candidates = TRIPLES[2][0], ["Paris.", "I think it is Lyon, a big city.", "I am not sure."]
    m = R.comparison_matrix(ranker, source, candidates)
    pairs = [(source, candidates[i], candidates[j]) for i in range(3) for j in range(3) if i != j]
    official = official_pairrm_logits_reference(checkpoint["reference"], checkpoint["tokenizer"], pairs)
    np.testing.assert_allclose(m[~np.eye(3, dtype=bool)], official, rtol=0, atol=2e-5)
    assert R.best_of_n(ranker, [source], [candidates]) == [int(np.argmax(R.max_logits(m)))]


def test_the_loaded_ranker_carries_pairrms_settings(ranker):
    cfg = ranker.config
    assert (cfg.input_layout, cfg.special_tokens, cfg.metrics) == ("pairrm", PAIRRM_MARKERS, ("preference",))
    assert cfg.head_dropout == 0.05 and not ranker.training and ranker.device.type == "cpu"
    assert ranker.formatter.max_length == SOURCE_MAX + 2 * CANDIDATE_MAX > ranker.encoder.config.max_position_embeddings


def test_marker_strings_inside_texts_stay_plain_text(ranker):
    ids, positions = ranker.formatter.encode("Say <|candidate1|> please", "a <|source|> b", "<|candidate2|>")
    markers = set(ranker.formatter.special_ids)
    assert [k for k, t in enumerate(ids) if t in markers] == list(positions)
    assert np.isfinite(R.score_pairs(ranker, [("Say <|candidate1|> please", "a <|source|> b", "<|candidate2|>")])).all()


def test_save_and_reload_give_identical_scores(ranker, checkpoint, tmp_path):
    before = R.score_pairs(ranker, TRIPLES)
    folder = ranker.save_pretrained(tmp_path / "saved")
    loaded = R.PairRankerModel.from_pretrained(folder, device="cpu")
    assert loaded.config == ranker.config
    np.testing.assert_array_equal(R.score_pairs(loaded, TRIPLES), before)
    with pytest.raises(PairRMCheckpointError, match="PairRankerModel.from_pretrained"):
        load_pairrm(folder, device="cpu")


# --------------------------------------------------------------------------------------------
# clear errors, never random weights


def test_a_missing_weight_is_named(checkpoint, tmp_path):
    folder = edited_checkpoint(checkpoint, tmp_path, state_edit=lambda s: s.pop("head_layer.4.bias"))
    with pytest.raises(PairRMCheckpointError, match=r"missing from the checkpoint: head_layer\.4\.bias"):
        load_pairrm(folder, device="cpu")


def test_unexpected_and_renamed_weights_are_named(checkpoint, tmp_path):
    def rename(state):  # e.g. a DebertaV2ForSequenceClassification checkpoint: 'deberta.*' keys
        for key in [k for k in state if k.startswith("pretrained_model.")]:
            state["deberta." + key.removeprefix("pretrained_model.")] = state.pop(key)

    folder = edited_checkpoint(checkpoint, tmp_path, state_edit=rename)
    with pytest.raises(PairRMCheckpointError, match=r"missing .*pretrained_model\.embeddings\.word_embeddings"
                                                    r".*unexpected .*deberta\.embeddings"):
        load_pairrm(folder, device="cpu")


def test_wrong_sizes_and_fields_are_clear_errors(checkpoint, tmp_path):
    folder = edited_checkpoint(checkpoint, tmp_path, config_edit=lambda c: c.update(n_tasks=3))
    with pytest.raises(PairRMCheckpointError, match=r"head_layer\.4\.weight: checkpoint \(1, 32\) vs config \(3, 32\)"):
        load_pairrm(folder, device="cpu")
    shutil.rmtree(folder)
    folder = edited_checkpoint(checkpoint, tmp_path, config_edit=lambda c: c.pop("cand2_prefix_id"))
    with pytest.raises(PairRMCheckpointError, match="lacks the PairRM field.*cand2_prefix_id"):
        load_pairrm(folder, device="cpu")
    shutil.rmtree(folder)
    folder = edited_checkpoint(checkpoint, tmp_path, config_edit=lambda c: c.update(source_prefix_id=7))
    with pytest.raises(PairRMCheckpointError, match=r"<\|source\|> is \d+ but source_prefix_id is 7"):
        load_pairrm(folder, device="cpu")
    shutil.rmtree(folder)
    original = {"ranker_type": "pairranker", "model_type": "deberta", "model_name": "microsoft/deberta-v3-large"}
    folder = edited_checkpoint(checkpoint, tmp_path, config_edit=lambda c: (c.clear(), c.update(original)))
    with pytest.raises(PairRMCheckpointError, match="original llm-blender layout.*PairRM-hf"):
        load_pairrm(folder, device="cpu")


def test_a_hub_id_offline_is_a_clear_error(tmp_path):
    with pytest.raises(PairRMCheckpointError, match=r"'llm-blender/PairRM-hf'.*hub is unreachable.*offline"):
        load_pairrm("llm-blender/PairRM-hf", cache_dir=tmp_path)  # an empty cache: nothing to fall back on
    with pytest.raises(PairRMCheckpointError, match="no PairRM checkpoint folder"):
        resolve_pairrm_folder(tmp_path / "absent")


@pytest.mark.slow
def test_the_real_pairrm_gives_its_model_cards_logits_when_cached():
    """Runs only where llm-blender/PairRM-hf is in the local Hugging Face cache (1.7 GB; tests are offline)."""
    try:
        folder = resolve_pairrm_folder("llm-blender/PairRM-hf")
    except PairRMCheckpointError:
        pytest.skip("llm-blender/PairRM-hf is not in the local Hugging Face cache")
    ranker = load_pairrm(folder)
    logits = R.score_pairs(ranker, [("hello!", "hi!", "f**k off!"), ("I love you!", "I hate you!", "I love you, too!")])
    np.testing.assert_allclose(logits, [1.9003021717071533, -1.2547134160995483], atol=1e-3)  # from the model card
