"""Candidate generation: configs, prompts, stop strings, the cache, and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_lib import generate
from blender_lib.generate import CandidateConfig, GenerationCache, TransformersBackend, build_prompt, generate_with_cache
from blender_lib.models import load_model

PROMPTS = [f"Name one animal whose name starts with the letter {letter}." for letter in "BCDFGHKLMP"]


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m-instruct", device="cpu", dtype="bf16")


def test_config_validation():
    with pytest.raises(ValueError, match="max_new_tokens"):
        CandidateConfig(name="x", model="m", max_new_tokens=0)
    with pytest.raises(ValueError, match="decoding"):
        CandidateConfig(name="x", model="m", decoding="beam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown candidate config field"):
        CandidateConfig.from_dict({"name": "x", "model": "m", "temprature": 0.5})
    with pytest.raises(ValueError, match="unknown LLM pool"):
        generate.pool_configs("no-such-pool")
    assert len(generate.pool_configs("default")) >= 5  # + the retrieval responder = 6 candidates


def test_cut_at_stop_and_decoding_labels():
    assert generate.cut_at_stop("Paris.\nQuestion: next", ["\nQuestion:"]) == "Paris."
    assert CandidateConfig(name="g", model="m").decoding_method == "greedy"
    assert "t=0.7" in CandidateConfig(name="s", model="m", decoding="sample", temperature=0.7).decoding_method


def test_prompts_use_the_chat_template_or_few_shot(smollm):
    chat = build_prompt(smollm.tokenizer, CandidateConfig(name="c", model="m", system_prompt="Be brief."), "Say hi", "to Ann")
    assert "Be brief." in chat and "Say hi\n\nto Ann" in chat and chat.rstrip().endswith("assistant")
    few = build_prompt(smollm.tokenizer, CandidateConfig(name="f", model="m", prompt_style="few_shot"), "Say hi")
    assert few.startswith("Question: ") and few.endswith("Question: Say hi\nAnswer:")


def test_local_generation_is_deterministic_and_cached(smollm, tmp_path):
    config = CandidateConfig(name="greedy", model="smollm2-135m-instruct", max_new_tokens=8)
    backend = TransformersBackend(smollm)
    prompts = [build_prompt(smollm.tokenizer, config, p) for p in PROMPTS[:4]]
    cache = GenerationCache.open(tmp_path / "gen.jsonl")
    first, stats = generate_with_cache(backend, config, prompts, cache, batch_size=2, progress=False)
    assert stats.generated == 4 and stats.from_cache == 0 and all(g.text for g in first)
    again, stats = generate_with_cache(backend, config, prompts, GenerationCache.open(tmp_path / "gen.jsonl"), batch_size=2, progress=False)
    assert stats.from_cache == 4 and stats.generated == 0
    assert [g.text for g in again] == [g.text for g in first]


def test_stop_strings_end_generation(smollm):
    config = CandidateConfig(name="s", model="m", prompt_style="few_shot", max_new_tokens=24, stop=("\n",))
    [out] = TransformersBackend(smollm).generate([build_prompt(smollm.tokenizer, config, "What color is the sky?")], config)
    assert "\n" not in out.text


def test_truncated_cache_line_is_dropped_and_counted(tmp_path):
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps({"key": "a", "text": "x", "n_tokens": 1}) + "\n" + '{"key": "b", "te')
    cache = GenerationCache.open(path)
    assert set(cache.entries) == {"a"} and cache.truncated_lines == 1
    assert path.read_text().endswith("\n")  # rewritten without the broken tail before any append


RESUME_SCRIPT = """
import json, sys
from blender_lib.generate import CandidateConfig, GenerationCache, TransformersBackend, build_prompt, generate_with_cache
from blender_lib.models import load_model
config = CandidateConfig(name="t", model="smollm2-135m-instruct", decoding="sample", temperature=0.9, max_new_tokens=6)
loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="bf16")
prompts = [build_prompt(loaded.tokenizer, config, p) for p in json.loads(sys.argv[2])]
backend = TransformersBackend(loaded)
out, _ = generate_with_cache(backend, config, prompts, GenerationCache.open(sys.argv[1]), batch_size=2, progress=False)
print(json.dumps([g.text for g in out]))
"""


def _run(cache: Path, prompts: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(cache), json.dumps(prompts)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})


@pytest.mark.slow
def test_killed_build_resumes_exactly_without_duplicates(tmp_path):
    prompts = PROMPTS
    reference = json.loads(_run(tmp_path / "full.jsonl", prompts).communicate(timeout=300)[0])

    cache = tmp_path / "killed.jsonl"
    process = _run(cache, prompts)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(cache.read_text().splitlines())
    assert 2 <= done_before < len(prompts), "the kill must land midway for this test to mean anything"

    resumed = json.loads(_run(cache, prompts).communicate(timeout=300)[0])
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    keys = [r["key"] for r in rows]
    print(f"killed after {done_before} of {len(prompts)} rows; rows after resume: {len(rows)}; duplicates: {len(keys) - len(set(keys))}")
    assert len(keys) == len(set(keys)) == len(prompts)
    assert resumed == reference  # sampled, yet identical to the uninterrupted run


def test_a_pool_needs_two_distinct_members(tmp_path):
    cache = GenerationCache.open(tmp_path / "gen.jsonl")
    one = [CandidateConfig(name="only", model="smollm2-135m-instruct")]
    with pytest.raises(ValueError, match="at least 2"):
        generate.generate_candidates([{"instruction": "x", "input": ""}], one, cache)
    twins = one + [CandidateConfig(name="only", model="gemma3-270m")]
    with pytest.raises(ValueError, match="unique"):
        generate.generate_candidates([{"instruction": "x", "input": ""}], twins, cache)
