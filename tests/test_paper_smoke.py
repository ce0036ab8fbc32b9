"""The paper profile's path, run end to end on the CPU in minutes (issue 20).

``params/paper.yaml`` needs a GPU and the hub, so no CPU test could run it. This test runs the same
profile with every hub model swapped for a tiny one built here with random weights, over a tiny
MixInstruct written in the hub's exact JSONL layout:

- the released checkpoints' places: a PairRM-hf checkpoint in the released layout ranked beside ours,
  and a "released" seq2seq fuser run untrained on the same top-3 inputs;
- a DeBERTa-v2 PairRanker, SimCLS and SummaReranker backbone, a DeBERTa-v2 masked LM for MLM-scoring,
  a DeBERTa-v2 sequence-classification reward model (OpenAssistant's architecture), a T5 fuser
  trained with the paper's settings (fp32 weights, bf16 autocast, gradient checkpointing, beam 4),
  and a DeBERTa-v2 router backbone;
- the judge of new answers is the ``openai`` client against a real OpenAI-compatible server
  (``transformers serve`` with the packaged SmolLM2-135M-Instruct on 127.0.0.1);
- ``accelerate launch`` trains chapter 3's PairRanker with two processes (``blender-book train``), then
  ``blender-book run --params <paper-shaped yaml>`` executes chapters 1-5 with papermill, with the
  data, caches and results in a temporary folder (the committed build is not touched).

Random weights make every number meaningless: the test checks that each chapter ran, imported the
published data, and wrote its results, not what they say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blender_lib import mixinstruct as MI
from blender_lib.paths import PARAMS_DIR, cache_dir
from published_fixture import MODELS, tiny_mixinstruct
from test_pairrm import OfficialPairRMReference, tiny_pairrm_config, tiny_tokenizer, write_checkpoint

pytestmark = pytest.mark.slow

CHAPTERS = ["01_build_mixinstruct", "02_explore_mixinstruct", "03_pairranker", "04_genfuser", "05_zooter"]


def tiny_models(folder: Path) -> dict[str, str]:
    """Tiny random-weight models in the paper profile's architectures, saved as local folders."""
    import torch
    from transformers import (AutoTokenizer, DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification,
                              DebertaV2Model, T5Config, T5ForConditionalGeneration)

    from blender_lib.models import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6")[0])  # a WordPiece vocabulary
    tokenizer.eos_token = tokenizer.sep_token  # the fuser ends its targets with EOS
    encoder = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=512, type_vocab_size=0,
                              relative_attention=True, position_buckets=64, pos_att_type=["p2c", "c2p"],
                              pad_token_id=tokenizer.pad_token_id)
    t5 = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                  decoder_start_token_id=tokenizer.pad_token_id)
    built = {
        "deberta": DebertaV2Model(encoder),
        "deberta-mlm": DebertaV2ForMaskedLM(encoder),
        "deberta-reward": DebertaV2ForSequenceClassification(DebertaV2Config(
            **{k: v for k, v in encoder.to_dict().items() if k not in ("id2label", "label2id")}, num_labels=1)),
        "t5": T5ForConditionalGeneration(t5),
    }
    paths = {}
    for name, model in built.items():
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        paths[name] = str(folder / name)
    # a PairRM-hf checkpoint in the released layout (test_pairrm checks it against the official forward)
    pairrm_tokenizer = tiny_tokenizer()
    released = OfficialPairRMReference(tiny_pairrm_config(pairrm_tokenizer)).eval()
    paths["pairrm"] = str(write_checkpoint(folder / "PairRM-tiny", released, pairrm_tokenizer))
    return paths


def paper_shaped_profile(models: dict[str, str], data: Path, judge_model: str, judge_url: str) -> dict:
    """``params/paper.yaml`` with its models swapped for the tiny ones and its sizes cut to seconds; every
    other setting (dtypes, beams, gradient checkpointing, the openai judge, cluster tags) is the paper's."""
    profile = yaml.safe_load((PARAMS_DIR / "paper.yaml").read_text())
    profile = {k: v for k, v in profile.items() if k in CHAPTERS or not k[:2].isdigit()}
    profile["01_build_mixinstruct"].update(
        source=str(data), split_sizes={"train": 24, "val": 8, "test": 10}, judge_splits=["test"], judge_model=judge_model,
        judge_base_url=judge_url, known_answer_examples=2, served_check_examples=0)
    tiny_ranker = {"backbone": models["deberta"], "epochs": 1, "batch_size": 8, "source_max_length": 32,
                   "candidate_max_length": 32}
    chapter3 = profile["03_pairranker"]
    chapter3["pairranker"].update(tiny_ranker)
    for baseline in ("simcls", "summareranker"):
        chapter3[baseline].update(backbone=models["deberta"], epochs=1, candidate_max_length=32)
    chapter3.update(lm_scorer_model=models["deberta-mlm"], reward_model=models["deberta-reward"],
                    comparison_budgets=[1, 2, 4], budget_repeats=2, pairrm=models["pairrm"])
    chapter4 = profile["04_genfuser"]
    chapter4["pairranker"].update(tiny_ranker)
    chapter4["fuser"].update(model=models["t5"], epochs=1, batch_size=4, grad_accum_steps=2, source_max_length=32,
                             candidate_max_length=32, target_max_length=24)
    chapter4.update(released_fuser=models["t5"], train_examples=24, judge_examples=2,
                    generation={"max_new_tokens": 8, "num_beams": 4, "do_sample": False, "batch_size": 4})
    chapter5 = profile["05_zooter"]
    chapter5.update(reward_source=f"scorer:{models['deberta-reward']}", rmr_reward=f"scorer:{models['deberta-reward']}",
                    n_clusters=3, router={"backbone": models["deberta"], "epochs": 1, "lr": 2.0e-5})
    return profile


def test_the_paper_profile_runs_end_to_end_on_tiny_models(tmp_path):
    from blender_lib.judge import LocalJudgeServer
    from blender_lib.models import resolve_model_path

    judge_folder, _ = resolve_model_path("smollm2-135m-instruct")  # converted once into the user's cache
    isolated_cache = tmp_path / "cache"
    isolated_cache.mkdir()
    (isolated_cache / "models").symlink_to(cache_dir() / "models")  # the converted GGUF models only
    data = tiny_mixinstruct(tmp_path / "mix-instruct", {"train": 30, "val": 10, "test": 12})
    models = tiny_models(tmp_path / "models")
    env = {**os.environ, "BLENDER_BOOK_DATA_DIR": str(tmp_path / "data"), "BLENDER_BOOK_CACHE": str(isolated_cache),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0", "OPENAI_API_KEY": "local"}
    def run_chapters(stems: list[str], out: str) -> list[dict]:
        run = subprocess.run([sys.executable, "-m", "blender_lib.cli", "run", "--params", str(params),
                              "--out", str(tmp_path / out), *stems], env=env, capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        return json.loads((tmp_path / out / "run.json").read_text())["chapters"]

    with LocalJudgeServer(judge_folder) as server:
        profile = paper_shaped_profile(models, data, judge_folder, server.base_url)
        params = tmp_path / "paper-smoke.yaml"
        params.write_text(yaml.safe_dump(profile, sort_keys=False))
        chapters = run_chapters(CHAPTERS[:1], "build")  # chapter 1 imports the published data
        # chapter 3's PairRanker trained by two processes under `accelerate launch` (torchrun and a gloo
        # group on the CPU; NCCL on GPUs); chapters 3 and 4 then load that run
        launch = subprocess.run([str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
                                 "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                                 "--dynamo_backend", "no", "-m", "blender_lib.cli", "train", "pairranker",
                                 "--params", str(params)], env=env, capture_output=True, text=True, timeout=600)
        assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
        [state] = (isolated_cache / "pairranker").glob("*/state.json")
        assert json.loads(state.read_text())["processes"] == [2]  # one gloo group of two, not two lone trainers
        chapters += run_chapters(CHAPTERS[1:], "run")

    assert [c["status"] for c in chapters] == ["ok"] * len(CHAPTERS), chapters
    assert chapters[0]["parameters"]["source"] == str(data)
    results = {stem: json.loads((tmp_path / ("build" if stem == CHAPTERS[0] else "run") / "results" / f"{stem}.json")
                                .read_text()) for stem in CHAPTERS}
    build = results["01_build_mixinstruct"]
    assert build["sizes"] == {"train": 24, "val": 8, "test": 10} and build["candidates"] == MODELS
    assert build["judge"]["name"] == MI.PUBLISHED_JUDGE and build["judge"]["requests"] == 0  # read, not judged
    assert len(build["judge_known_answer_accuracy"]) == 4  # the build's openai judge answered known-answer pairs
    splits, saved = MI.load_build(tmp_path / "data" / "mixinstruct")
    assert saved["report"]["params"]["source"] == str(data)
    scores = splits["test"][0]["candidates"][0]["scores"]
    assert {"paper_bertscore", "bertscore", "logprobs"} <= set(scores) and scores["paper_bertscore"] != scores["bertscore"]

    ranker = results["03_pairranker"]
    assert len(list((isolated_cache / "pairranker").glob("*/state.json"))) == 1  # the launched run was loaded
    assert ranker["pairranker_config"]["backbone"] == models["deberta"] and ranker["pairranker_config"]["lr"] == 1e-05
    assert ranker["training"]["pairs_per_epoch"] > 0
    assert {"lm_scoring", "reward_model", "simcls", "summareranker", "pairranker:max_logits", "pairranker:bubble",
            "pairrm"} <= set(ranker["table2"])  # rows keyed by selector id, the label beside
    assert ranker["table2"]["lm_scoring"]["label"] == "MLM-scoring (deberta-mlm pseudo-log-likelihood)"
    assert ranker["table2"]["reward_model"]["label"] == "reward model (deberta-reward)"
    assert ranker["table3_gpt_rank"]["pairrm"]["label"] == f"PairRM ({models['pairrm']})"
    columns = ranker["table2_judge_columns"]["pairranker:max_logits"]  # the published bases are in the pool
    assert {">= Vic %", ">= Vic % (corrected)", ">= OA %", ">= OA % (corrected)", "Top-3 %"} <= set(columns)

    fusion = results["04_genfuser"]
    config = fusion["fuser_config"]
    assert config["model"] == models["t5"] and config["gradient_checkpointing"] and config["bf16"] and config["lr"] == 5e-05
    assert fusion["generation"]["num_beams"] == 4 and fusion["training"]["train_examples"] == 24
    assert fusion["judge"]["name"] == f"openai:{judge_folder}" and fusion["judge"]["requests"] > 0
    assert fusion["judge"]["failed_requests"] == 0
    assert fusion["table"]["llm_blender:released"]["label"] == f"PairRanker top-3 + {models['t5']} (released)"

    router = results["05_zooter"]
    assert router["router_config"]["backbone"] == models["deberta"] and router["tags"] == "cluster"
    assert router["rmr_reward"] == f"scorer:{models['deberta-reward']}" and router["queries"] == 10
    print({c["chapter"]: c["seconds"] for c in chapters}, f"chapters: {sum(c['seconds'] for c in chapters):.0f} s")
