"""Downloading the public data into the loaders' layout (blender_lib.real_data_fetch).

No network here: the sources are local folders laid out like the upstream repositories, read
through the same ``datasets`` download manager that fetches the URLs online (it returns a local
path as it is). The loaders of ``real_data`` then read what was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blender_lib import real_data as R
from blender_lib import real_data_fetch as F
from blender_lib import strong_weak as SW

REF = F.ALPACA_REFERENCE
PROMPTS = [("What is 2+2?", "vicuna"), ("Name a colour.", "koala"), ("Say hi.", "selfinstruct")]


def _json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def upstream_alpaca_eval(root: Path, prefs: dict[str, list[int]]) -> Path:
    """tatsu-lab/alpaca_eval's layout: results/<model>/model_outputs.json and
    results/<model>/alpaca_eval_gpt4/annotations.json, plus the AlpacaEval 1 leaderboard."""
    def outputs(model: str) -> list[dict]:
        return [{"instruction": q, "output": f"{model} on {q}", "generator": model, "dataset": d} for q, d in PROMPTS]

    _json(root / "results" / REF / "model_outputs.json", outputs(REF))
    for model, ps in prefs.items():
        # the same outputs in another order, and one for an instruction AlpacaEval does not have
        _json(root / "results" / model / "model_outputs.json",
              outputs(model)[::-1] + [{"instruction": "not an AlpacaEval prompt", "output": "x", "generator": model}])
        _json(root / "results" / model / "alpaca_eval_gpt4" / "annotations.json",
              [{"instruction": q, "output_1": f"{REF} on {q}", "generator_1": REF, "dataset": d,
                "output_2": f"{model} on {q}", "generator_2": model, "annotator": "alpaca_eval_gpt4",
                "preference": p, "price_per_example": 0.02} for (q, d), p in zip(PROMPTS, ps)])
    board = root / "src" / "alpaca_eval" / "leaderboards" / "data_AlpacaEval" / "alpaca_eval_gpt4_leaderboard.csv"
    board.parent.mkdir(parents=True)
    board.write_text(",win_rate,n_total\nstrong,66.7,3\nweak,0.0,3\n", encoding="utf-8")
    return root


def test_alpaca_eval_per_model_files_become_the_loaders_two_files(tmp_path):
    source = upstream_alpaca_eval(tmp_path / "upstream", {"strong": [2, 2, 1], "weak": [1, 1, 1]})
    dest = tmp_path / "data"
    counts = F.fetch_alpaca_eval(dest, ["strong", "weak"], source=str(source))
    assert counts == {"prompts": 3, "unmatched_outputs": 2, "judgments": 6, "unmatched_judgments": 0}
    skipped: list[tuple[str, str]] = []
    examples = R.load_alpaca_eval(dest, ["strong", "weak"], skipped=skipped)
    assert [ex["instruction"] for ex in examples] == [q for q, _ in PROMPTS] and not skipped
    assert [ex["tags"] for ex in examples] == [[d] for _, d in PROMPTS]
    assert examples[0]["output"] == f"{REF} on What is 2+2?"  # the reference answer
    assert [c["text"] for c in examples[1]["candidates"]] == ["strong on Name a colour.", "weak on Name a colour."]
    assert [[c["scores"][R.PREF_SCORE] for c in ex["candidates"]] for ex in examples] == [[1, 0], [1, 0], [0, 0]]
    board = R.alpaca_eval_models(dest)
    assert board.loc["strong", "win_rate"] == pytest.approx(200 / 3)
    assert board.loc["strong", "published_win_rate"] == pytest.approx(66.7)


def upstream_flask_llmbar_mt_bench(up: Path, flask_models=("gpt4",), subsets=("LLMBar__Natural", "Processed__LLMEval2"),
                                   mt_models=("gpt-4",)) -> dict[str, str]:
    """FLASK, LLMBar and MT-Bench laid out as upstream; returns the ``sources`` of fetch_public_data."""
    flask = up / "flask"
    _jsonl(flask / "evaluation_set" / "flask_evaluation.jsonl",
           [{"idx": 1, "instruction": "Rewrite this.", "answer": "Done.", "task": "Self-instruct",
             "skill": ["Readability"], "domain": ["Humanities"], "difficulty": "simple lifestyle knowledge"}])
    _jsonl(flask / "evaluation_set" / "flask_hard_evaluation.jsonl", [])
    for model in flask_models:
        _jsonl(flask / "model_output" / "outputs" / f"{model}.jsonl", [{"question_id": 1, "text": f"{model} on 1"}])
    pair = [{"input": "Say hi.", "output_1": "Hi!", "output_2": "Bye.", "label": 1}]
    for subset in subsets:
        _json(up / "llmbar" / "Dataset" / F.LLMBAR_SUBSETS[subset] / "dataset.json", pair)
    mt = up / "mt_bench"
    _jsonl(mt / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": ["Write.", "Again."]}])
    _jsonl(mt / "reference_answer" / "gpt-4.jsonl", [])
    for model in mt_models:
        _jsonl(up / "answers" / f"{model}.jsonl",
               [{"question_id": 81, "model_id": model, "choices": [{"turns": ["A", "B"]}]}])
    _jsonl(up / "routellm" / "mt_bench" / "judgements.jsonl",
           [{"question_id": 81, "model": model, "judge": ["gpt-4", "single-v1"], "score": score, "turn": turn}
            for model, score in ((SW.WEAK, 7), (SW.STRONG, 9)) for turn in (1, 2)])
    return {"flask": str(flask), "llmbar": str(up / "llmbar"), "mt_bench": str(mt), "mt_bench_answers": str(up / "answers"),
            "routellm": str(up / "routellm")}


def upstream_routellm(up: Path, subjects=F.MMLU_SUBJECTS) -> None:
    """RouteLLM's GSM8K and MMLU correctness files laid out as upstream."""
    header = f"prompt,{SW.WEAK},{SW.STRONG},{SW.WEAK}_response,{SW.STRONG}_response\n"
    (up / "routellm" / "gsm8k").mkdir(parents=True, exist_ok=True)
    (up / "routellm" / "gsm8k" / "gsm8k_responses.csv").write_text(header + '"2+2?",False,True,"5","4"\n')
    (up / "routellm" / "mmlu" / "responses").mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        (up / "routellm" / "mmlu" / "responses" / f"mmlu_{subject}.csv").write_text(
            f"prompt,{SW.WEAK},{SW.STRONG}\n\"{subject}?\",True,True\n")


def test_flask_llmbar_and_mt_bench_files_land_where_the_loaders_read(tmp_path):
    up = tmp_path / "upstream"
    sources = upstream_flask_llmbar_mt_bench(up)
    flask, mt = Path(sources["flask"]), Path(sources["mt_bench"])
    dest = tmp_path / "data"

    F.fetch_flask(dest, ["gpt4"], source=str(flask))
    F.fetch_llmbar(dest, ["LLMBar__Natural", "Processed__LLMEval2"], source=str(up / "llmbar"))
    F.fetch_mt_bench(dest, ["gpt-4"], source=str(mt), answers_source=str(up / "answers"), routellm_source=sources["routellm"])
    upstream_routellm(up, subjects=("anatomy", "virology"))
    with pytest.raises(RuntimeError, match="could not download RouteLLM"):  # the other 55 subjects are not upstream
        F.fetch_routellm(dest, source=sources["routellm"])

    assert [ex["tags"][0] for ex in R.load_flask(dest, ["gpt4"])] == ["skill:Readability"]
    assert R.llmbar_subsets(dest) == ["LLMBar__Natural", "Processed__LLMEval2"]
    assert len(R.load_llmbar(dest)) == 2
    [question] = R.load_mt_bench(dest, ["gpt-4"], reference=None)
    assert question["instruction"] == "Write." and question["candidates"][0]["text"] == "A"
    scored = SW.load_mt_bench_scores(dest)
    assert scored.prompts == ["Write."] and scored.weak.tolist() == [7.0] and scored.strong.tolist() == [9.0]


def test_fetching_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="could not download AlpacaEval model outputs from"):
        F.fetch_alpaca_eval(tmp_path / "data", ["absent-model"], source=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="is the reference"):
        F.fetch_alpaca_eval(tmp_path / "data", [REF, "x"])
    with pytest.raises(ValueError, match="unknown LLMBar subsets"):
        F.fetch_llmbar(tmp_path / "data", ["LLMBar__Typo"])
    with pytest.raises(ValueError, match="unknown datasets"):
        F.fetch_public_data(tmp_path / "data", ["alpaca"])
    source = upstream_alpaca_eval(tmp_path / "bad", {"m": [2, 2, 2]})
    _json(source / "results" / "m" / "alpaca_eval_gpt4" / "annotations.json", {"not": "a list"})
    with pytest.raises(ValueError, match="is not a JSON list of objects"):
        F.fetch_alpaca_eval(tmp_path / "data", ["m"], source=str(source))


def test_urls_quote_what_upstream_paths_hold():
    assert F._url("https://example.org/repo/main", "Dataset/Processed/LLMEval^2/dataset.json") == \
        "https://example.org/repo/main/Dataset/Processed/LLMEval%5E2/dataset.json"
    assert F._url("/some/folder", "a/b.json") == "/some/folder/a/b.json"


# --------------------------------------------------------------------------------------------
# a whole fetch: resumable, verified by the manifest, partial downloads named


def upstream_everything(up: Path) -> dict[str, str]:
    """All four datasets upstream, with each dataset's default models and subsets."""
    sources = upstream_flask_llmbar_mt_bench(up, F.FLASK_MODELS, tuple(F.LLMBAR_SUBSETS), F.MT_BENCH_MODELS)
    models = F.BOOK_ALPACA_MODELS
    sources["alpaca_eval"] = str(upstream_alpaca_eval(up / "alpaca_eval", {m: [2, 1, 1] for m in models}))
    upstream_routellm(up)
    return sources


class CountingDownloader:
    """Local 'downloads' (the paths themselves), counted; optionally failing on one dataset."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.urls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, urls: list[str]) -> list[str]:
        if self.fail_on and any(self.fail_on in u for u in urls):
            raise ConnectionError("the network went away")
        self.urls.extend(urls)
        return list(urls)


def test_a_fetch_is_recorded_resumed_and_verified(tmp_path):
    sources = upstream_everything(tmp_path / "up")
    dest = tmp_path / "public-data"
    # interrupted in FLASK: AlpacaEval is complete and recorded, the rest is not
    with pytest.raises(RuntimeError, match="could not download FLASK"):
        F.fetch_public_data(dest, sources=sources, download=CountingDownloader(fail_on="/flask/"))
    assert F.complete_datasets(dest) == ["alpaca_eval"]
    with pytest.raises(F.IncompleteDownload, match="flask was never fetched completely.*fetch-data"):
        F.verify_fetched(dest)
    # resumed: only what was missing is downloaded again
    lines: list[str] = []
    resumed = CountingDownloader()
    F.fetch_public_data(dest, sources=sources, download=resumed, progress=lines.append)
    assert not any("alpaca_eval" in u for u in resumed.urls) and any("flask" in u for u in resumed.urls)
    assert lines[0] == "alpaca_eval: already fetched and verified" and len(lines) == len(F.DATASETS)
    F.verify_fetched(dest)
    manifest = F.read_manifest(dest)
    assert sorted(manifest["datasets"]) == sorted(F.DATASETS)
    entry = manifest["datasets"]["llmbar"]["files"]["llmbar/LLMBar__Natural.json"]
    assert entry["size"] == (dest / "llmbar" / "LLMBar__Natural.json").stat().st_size and len(entry["sha256"]) == 64
    # nothing left to do
    again = CountingDownloader()
    F.fetch_public_data(dest, sources=sources, download=again)
    assert again.urls == []
    # a file altered or cut short afterwards is named, and only its dataset is fetched again
    path = dest / "flask" / "model_output" / "outputs" / "gpt4.jsonl"
    path.write_text(path.read_text() + " ")
    with pytest.raises(F.IncompleteDownload, match="gpt4.jsonl has .* bytes"):
        F.verify_fetched(dest)
    same_size = dest / "llmbar" / "LLMBar__Natural.json"
    same_size.write_text(same_size.read_text().replace("Hi!", "Ho!"))
    with pytest.raises(F.IncompleteDownload, match="LLMBar__Natural.json does not match its SHA-256"):
        F.verify_fetched(dest, ["llmbar"])
    refetch = CountingDownloader()
    F.fetch_public_data(dest, sources=sources, download=refetch)
    assert {u.split("/up/")[1].split("/")[0] for u in refetch.urls} == {"flask", "llmbar"}
    F.verify_fetched(dest)
    # the loaders read it
    assert len(R.load_llmbar(dest)) == len(F.LLMBAR_SUBSETS)
    gsm8k, mmlu = SW.load_gsm8k(dest), SW.load_mmlu(dest)
    assert gsm8k.weak_answers == ["5"] and gsm8k.weak.tolist() == [0.0] and gsm8k.strong.tolist() == [1.0]
    assert len(mmlu.prompts) == len(F.MMLU_SUBJECTS) and mmlu.tags[0] == "abstract_algebra"


def test_a_truncated_download_is_reported_not_written(tmp_path):
    sources = upstream_everything(tmp_path / "up")
    cut = Path(sources["llmbar"]) / "Dataset" / "LLMBar" / "Natural" / "dataset.json"
    cut.write_text(cut.read_text()[:20])
    with pytest.raises(F.IncompleteDownload, match="(?s)LLMBar__Natural.json.*not valid JSON.*partial or failed download"):
        F.fetch_llmbar(tmp_path / "data", source=sources["llmbar"], download=CountingDownloader())
    assert not (tmp_path / "data" / "llmbar" / "LLMBar__Natural.json").exists()
    flask_file = Path(sources["flask"]) / "model_output" / "outputs" / "gpt4.jsonl"
    flask_file.write_text('{"question_id": 1, "te')
    with pytest.raises(F.IncompleteDownload, match="gpt4.jsonl.*line 1 is not valid JSON"):
        F.fetch_flask(tmp_path / "data", source=sources["flask"], download=CountingDownloader())


def test_the_fetch_data_command(tmp_path, monkeypatch, capsys):
    from blender_lib.cli import main

    # the command lifts the offline switches for its own process; restore them after the test
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(R.SHARED_DATA_ENV_VAR, raising=False)
    monkeypatch.setattr(R.paths, "shared_data_dir", lambda: None)
    fetched = tmp_path / "cache" / "public-data"
    monkeypatch.setattr(R.paths, "fetched_data_dir", lambda: fetched)
    # offline, with no data anywhere: one line saying what to run where there is a network, exit 0
    monkeypatch.setattr(F, "reachable", lambda url, timeout=3.0: False)
    assert main(["fetch-data", "--if-online"]) == 0
    assert "offline" in capsys.readouterr().out
    with pytest.raises(R.RealDataNotFound):
        R.data_root()
    # "online" from local mirrors, through the datasets download manager
    sources = upstream_everything(tmp_path / "up")
    args = [f"--source={name}={base}" for name, base in sources.items()]
    assert main(["fetch-data", *args]) == 0
    out = capsys.readouterr().out
    assert f"into {fetched}" in out and "done" in out
    assert R.data_root() == fetched  # chapter 6 finds it with nothing set
    assert main(["fetch-data", "--if-online"]) == 0
    assert "checksums verified" in capsys.readouterr().out
    # a partial copy makes the command fail clearly, and a rerun resumes
    (fetched / "llmbar" / "LLMBar__Natural.json").unlink()
    monkeypatch.setattr(F, "SOURCES", {**F.SOURCES, "llmbar": str(tmp_path / "gone")})
    assert main(["fetch-data", "--dataset", "llmbar"]) == 2
    assert "could not download LLMBar" in capsys.readouterr().err
    assert main(["fetch-data", f"--source=llmbar={sources['llmbar']}", "--dataset", "llmbar"]) == 0
    F.verify_fetched(fetched)
