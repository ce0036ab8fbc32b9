"""Download the public data chapter 6 reads, from where its authors publish it, into a folder laid
out as :mod:`blender_lib.real_data` reads it (the layout of the project's ``../shared/data``).

``fetch_public_data(folder)`` once, online; then ``real_data.load_*(folder)`` or the chapter's
``data_root`` parameter. The files come from GitHub (tatsu-lab/alpaca_eval, kaistAI/FLASK,
princeton-nlp/LLMBar, lm-sys/FastChat) and from the Hugging Face space that hosts MT-Bench's model
answers, through the ``datasets`` library's download manager (its cache, its retries, its offline
switch ``HF_DATASETS_OFFLINE``). FLASK, LLMBar and MT-Bench files are stored as published (LLMBar
under flat names); AlpacaEval's per-model files are joined into the two files the loader reads:
one row per instruction with every model's output, and one compact row per GPT-4 judgment.

A fetch is resumable and checked: every finished dataset is recorded in ``MANIFEST.json`` with
the size and SHA-256 of each file it wrote, so a second run skips what is complete and verified,
and :func:`verify_fetched` tells a complete copy from a partial one (an interrupted download, a
truncated or edited file). A downloaded JSON file that does not parse is reported as a partial
download, never written. ``blender-book fetch-data`` runs all of this into the user cache
(:func:`blender_lib.paths.fetched_data_dir`), where :func:`blender_lib.real_data.data_root` finds it.

Nothing here runs at import or in the default profile; the book never writes this data into the
repository.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .io import atomic_write_json, atomic_write_text
from .paths import FETCH_MANIFEST
from .real_data import ALPACA_ANNOTATIONS_FILE, ALPACA_ANNOTATOR, ALPACA_WIDE_FILE, FLASK_SETS
from .strong_weak import MT_BENCH_JUDGMENTS

GITHUB_RAW = "https://raw.githubusercontent.com"
# Where each dataset lives: a base URL (or a local folder laid out like the upstream repository).
SOURCES: dict[str, str] = {
    "alpaca_eval": f"{GITHUB_RAW}/tatsu-lab/alpaca_eval/main",
    "flask": f"{GITHUB_RAW}/kaistAI/FLASK/main",
    "llmbar": f"{GITHUB_RAW}/princeton-nlp/LLMBar/main",
    "mt_bench": f"{GITHUB_RAW}/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench",
    # FastChat's own download script takes the pregenerated answers from this space.
    "mt_bench_answers": "https://huggingface.co/spaces/lmsys/mt-bench/resolve/main/data/mt_bench/model_answer",
    "routellm": f"{GITHUB_RAW}/lm-sys/RouteLLM/main/routellm/evals",  # chapter 8's strong/weak routing data
}
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology", "college_chemistry",
    "college_computer_science", "college_mathematics", "college_medicine", "college_physics", "computer_security",
    "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic", "global_facts",
    "high_school_biology", "high_school_chemistry", "high_school_computer_science", "high_school_european_history",
    "high_school_geography", "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing", "medical_genetics", "miscellaneous",
    "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory", "professional_accounting",
    "professional_law", "professional_medicine", "professional_psychology", "public_relations", "security_studies",
    "sociology", "us_foreign_policy", "virology", "world_religions")
ALPACA_REFERENCE = "text_davinci_003"  # AlpacaEval 1's reference, the one alpaca_eval_gpt4 judged against
# Every AlpacaEval 1 model with outputs and GPT-4 verdicts: chapter 6's pool is chosen among them, and its
# reward model trains on all of their pairs.
BOOK_ALPACA_MODELS = ("gpt4_1106_preview", "gpt4", "tulu-2-dpo-70b", "gpt4_0314", "Yi-34B-Chat", "llama-2-70b-chat-hf",
                      "claude", "claude-2", "cohere", "zephyr-7b-beta", "gpt-3.5-turbo-0301", "tulu-2-dpo-13b",
                      "tulu-2-dpo-7b", "llama-2-13b-chat-hf", "wizardlm-13b", "guanaco-65b", "llama-2-7b-chat-hf",
                      "vicuna-13b", "oasst-rlhf-llama-33b", "falcon-40b-instruct", "alpaca-farm-ppo-human", "phi-2",
                      "alpaca-7b", "text_davinci_001")
FLASK_MODELS = ("alpaca_13b", "bard", "chatgpt", "claude_v1", "davinci_003", "gpt4", "llama2_chat_13b",
                "llama2_chat_70b", "tulu_13b", "tulu_30b", "tulu_65b", "tulu_7b", "vicuna_13b", "vicuna_33b",
                "wizardlm_13b")
MT_BENCH_MODELS = ("gpt-4", "gpt-3.5-turbo", "claude-v1", "vicuna-13b-v1.3", "alpaca-13b", "llama-13b")
# LLMBar's flat file names (as real_data.llmbar_subsets lists them) and their folders upstream.
LLMBAR_SUBSETS: dict[str, str] = {
    "LLMBar__Natural": "LLMBar/Natural",
    "LLMBar__Adversarial__Neighbor": "LLMBar/Adversarial/Neighbor",
    "LLMBar__Adversarial__GPTInst": "LLMBar/Adversarial/GPTInst",
    "LLMBar__Adversarial__GPTOut": "LLMBar/Adversarial/GPTOut",
    "LLMBar__Adversarial__Manual": "LLMBar/Adversarial/Manual",
    "Processed__MT-Bench": "Processed/MT-Bench",
    "Processed__FairEval": "Processed/FairEval",
    "Processed__LLMEval2": "Processed/LLMEval^2",
}
DATASETS = ("alpaca_eval", "flask", "llmbar", "mt_bench", "routellm")
MANIFEST_FORMAT = 1


class IncompleteDownload(RuntimeError):
    """A fetched folder that is partial or altered; the message names each bad file and the fix."""

Downloader = Callable[[list[str]], list[str]]  # URLs (or local paths) -> local files, same order


def datasets_downloader(*, force: bool = False) -> Downloader:
    """The ``datasets`` library's download manager: cached, retried, resumed after an interruption,
    and refused when ``HF_DATASETS_OFFLINE=1`` (``blender-book fetch-data`` lifts that for its own
    process). ``force`` downloads every file anew instead of reusing the cache."""
    from datasets import DownloadConfig, DownloadManager

    manager = DownloadManager(download_config=DownloadConfig(force_download=force, max_retries=3))

    def download(urls: list[str]) -> list[str]:
        return [str(p) for p in manager.download(list(urls))]

    return download


def _url(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{quote(path)}" if "://" in base else str(Path(base) / path)


def _fetch(base: str, paths: Sequence[str], download: Downloader, what: str) -> list[Path]:
    urls = [_url(base, p) for p in paths]
    try:
        return [Path(p) for p in download(urls)]
    except Exception as err:  # network, HTTP 404, offline mode: say which dataset and where
        raise RuntimeError(f"could not download {what} from {base} ({len(urls)} files, e.g. {urls[0]}): "
                           f"{type(err).__name__}: {err}") from err


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _loads(text: str, where: str) -> Any:
    """JSON from downloaded text; text that does not parse is a partial or failed download."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise IncompleteDownload(f"{where} is not valid JSON ({err}): a partial or failed download. "
                                 f"Run `blender-book fetch-data` again to download it anew.") from err


def _parsed_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise IncompleteDownload(f"{what} ({path}) is not UTF-8 text: a partial or failed download. "
                                 f"Run `blender-book fetch-data` again to download it anew.") from err
    return _loads(text, f"{what} ({path})")


def _json_rows(path: Path, what: str) -> list[dict]:
    rows = _parsed_json(path, what)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{what} ({path}) is not a JSON list of objects")
    return rows


def _need_text(row: Mapping[str, Any], key: str, what: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{what}: a row has no text field {key!r} (fields: {sorted(row)})")
    return value


def fetch_alpaca_eval(dest: str | Path, models: Sequence[str] = BOOK_ALPACA_MODELS, *,
                      annotator: str = ALPACA_ANNOTATOR, reference: str = ALPACA_REFERENCE,
                      leaderboard_dir: str | None = "data_AlpacaEval", source: str = SOURCES["alpaca_eval"],
                      download: Downloader | None = None) -> dict[str, int]:
    """AlpacaEval's outputs and one annotator's judgments for ``models``, joined into
    ``dest/alpaca_eval/`` (the wide outputs file and the compact annotations file), with the
    annotator's published leaderboard (``src/alpaca_eval/leaderboards/<leaderboard_dir>/``; None: none).

    Upstream each model has ``results/<model>/model_outputs.json`` and
    ``results/<model>/<annotator>/annotations.json``; the reference model's outputs give the
    instructions, their order (the prompt ids) and their source dataset. Outputs and judgments are
    matched to prompts by exact instruction text; what does not match is counted, not guessed.
    Returns the counts."""
    if not models:
        raise ValueError("name at least one AlpacaEval model to fetch")
    if reference in models:
        raise ValueError(f"{reference!r} is the reference: it is fetched anyway, leave it out of models")
    download = download or datasets_downloader()
    out_paths = _fetch(source, [f"results/{m}/model_outputs.json" for m in (reference, *models)], download,
                       "AlpacaEval model outputs")
    ann_paths = _fetch(source, [f"results/{m}/{annotator}/annotations.json" for m in models], download,
                       f"AlpacaEval {annotator} annotations")
    outputs = {m: _json_rows(p, f"{m}'s AlpacaEval outputs") for m, p in zip((reference, *models), out_paths)}
    prompts = [(_need_text(r, "instruction", reference), r.get("dataset") or "") for r in outputs[reference]]
    ids = {instruction: n for n, (instruction, _) in enumerate(prompts)}
    wide = [{"id": n, "instruction": instruction, "dataset": dataset, "outputs": {}}
            for n, (instruction, dataset) in enumerate(prompts)]
    counts = {"prompts": len(wide), "unmatched_outputs": 0, "judgments": 0, "unmatched_judgments": 0}
    for model, rows in outputs.items():
        for row in rows:
            n = ids.get(_need_text(row, "instruction", model))
            if n is None:
                counts["unmatched_outputs"] += 1
            else:
                wide[n]["outputs"][model] = row.get("output")
    compact = []
    for model, path in zip(models, ann_paths):
        for row in _json_rows(path, f"{model}'s {annotator} annotations"):
            n = ids.get(_need_text(row, "instruction", f"{model}'s annotations"))
            if n is None:
                counts["unmatched_judgments"] += 1
                continue
            compact.append({"id": n, "annotator_config": annotator, "annotator": row.get("annotator", annotator),
                            "generator_1": row.get("generator_1"), "generator_2": row.get("generator_2"),
                            "preference": row.get("preference"), "file_model": model})
    counts["judgments"] = len(compact)
    folder = Path(dest) / "alpaca_eval"
    _write_jsonl(folder / ALPACA_WIDE_FILE, wide)
    _write_jsonl(folder / ALPACA_ANNOTATIONS_FILE, compact)
    if leaderboard_dir:
        name = f"{annotator}_leaderboard.csv"
        [board] = _fetch(source, [f"src/alpaca_eval/leaderboards/{leaderboard_dir}/{name}"], download,
                         "the AlpacaEval leaderboard")
        _copy(board, folder / "leaderboards" / f"{leaderboard_dir}__{name}")
    return counts


def _copy(path: Path, target: Path) -> None:
    """Copy a downloaded file into place once it parses: a truncated JSON or JSONL file is a partial
    download, reported, never written."""
    text = path.read_text(encoding="utf-8")
    if target.suffix == ".json":
        _loads(text, f"{target.name} ({path})")
    elif target.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                _loads(line, f"{target.name} ({path}): line {number}")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)


def fetch_flask(dest: str | Path, models: Sequence[str] = FLASK_MODELS, *, source: str = SOURCES["flask"],
                download: Downloader | None = None) -> dict[str, int]:
    """FLASK's evaluation sets and the chosen models' outputs, as published, into ``dest/flask/``."""
    download = download or datasets_downloader()
    sets = [f"evaluation_set/{name}" for name in FLASK_SETS.values()]
    answers = [f"model_output/outputs/{m}.jsonl" for m in models]
    paths = _fetch(source, [*sets, *answers], download, "FLASK")
    for relative, path in zip([*sets, *answers], paths):
        _copy(path, Path(dest) / "flask" / relative)
    return {"files": len(paths), "models": len(models)}


def fetch_llmbar(dest: str | Path, subsets: Sequence[str] = tuple(LLMBAR_SUBSETS), *,
                 source: str = SOURCES["llmbar"], download: Downloader | None = None) -> dict[str, int]:
    """LLMBar's gold-labelled pair sets into ``dest/llmbar/<subset>.json`` (flat names, e.g.
    ``LLMBar__Natural``; upstream ``Dataset/LLMBar/Natural/dataset.json``)."""
    unknown = [s for s in subsets if s not in LLMBAR_SUBSETS]
    if unknown:
        raise ValueError(f"unknown LLMBar subsets {unknown}; known: {list(LLMBAR_SUBSETS)}")
    download = download or datasets_downloader()
    paths = _fetch(source, [f"Dataset/{LLMBAR_SUBSETS[s]}/dataset.json" for s in subsets], download, "LLMBar")
    for subset, path in zip(subsets, paths):
        _copy(path, Path(dest) / "llmbar" / f"{subset}.json")
    return {"subsets": len(paths)}


def fetch_mt_bench(dest: str | Path, models: Sequence[str] = MT_BENCH_MODELS, *, source: str = SOURCES["mt_bench"],
                   answers_source: str = SOURCES["mt_bench_answers"], routellm_source: str = SOURCES["routellm"],
                   download: Downloader | None = None) -> dict[str, int]:
    """MT-Bench's questions and GPT-4 reference answers (FastChat) and the chosen models'
    pregenerated answers (the lmsys/mt-bench space) into ``dest/mt_bench/``."""
    download = download or datasets_downloader()
    files = ["question.jsonl", "reference_answer/gpt-4.jsonl"]
    for relative, path in zip(files, _fetch(source, files, download, "MT-Bench questions")):
        _copy(path, Path(dest) / "mt_bench" / relative)
    answers = _fetch(answers_source, [f"{m}.jsonl" for m in models], download, "MT-Bench model answers")
    for model, path in zip(models, answers):
        _copy(path, Path(dest) / "mt_bench" / "model_answer" / f"{model}.jsonl")
    # RouteLLM's GPT-4 scores of its strong and weak model on MT-Bench (chapter 8)
    judged = _fetch(routellm_source, ["mt_bench/judgements.jsonl"], download, "RouteLLM's MT-Bench judgments")[0]
    _copy(judged, Path(dest) / MT_BENCH_JUDGMENTS)
    return {"models": len(models)}


def fetch_routellm(dest: str | Path, *, source: str = SOURCES["routellm"], download: Downloader | None = None) -> dict[str, int]:
    """RouteLLM's strong/weak correctness data into ``dest/routellm/``: GSM8K (with both models'
    responses) and every MMLU subject (``mmlu_responses/mmlu_<subject>.csv``)."""
    download = download or datasets_downloader()
    files = ["gsm8k/gsm8k_responses.csv", *[f"mmlu/responses/mmlu_{s}.csv" for s in MMLU_SUBJECTS]]
    for relative, path in zip(files, _fetch(source, files, download, "RouteLLM")):
        target = "gsm8k_responses.csv" if relative.startswith("gsm8k/") else f"mmlu_responses/{Path(relative).name}"
        _copy(path, Path(dest) / "routellm" / target)
    return {"files": len(files)}


def fetch_public_data(dest: str | Path, datasets: Sequence[str] = DATASETS, *,
                      sources: Mapping[str, str] | None = None, download: Downloader | None = None,
                      progress: Callable[[str], None] | None = None, force: bool = False) -> Path:
    """Everything chapters 6 and 8 read (the AlpacaEval pool, FLASK, LLMBar, MT-Bench, RouteLLM's
    strong/weak data) into ``dest``, with
    each dataset's default models; returns ``dest``, ready for ``real_data.data_root(dest)`` or the
    chapter's ``data_root`` parameter. ``sources`` overrides a dataset's base URL (a mirror, or a
    local folder laid out like the upstream repository).

    Resumable: a dataset already recorded in ``dest/MANIFEST.json`` whose files still match their
    sizes and checksums is skipped; each dataset is recorded only once all its files are written, so
    an interrupted fetch redoes at most the dataset it was in (the download manager's cache keeps the
    files it had already downloaded). ``progress`` receives one line per dataset; ``force`` fetches
    every dataset anew, downloads included."""
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"unknown datasets {unknown}; known: {list(DATASETS)}")
    where = {**SOURCES, **(sources or {})}
    download = download or datasets_downloader(force=force)
    say = progress or (lambda line: None)
    steps: dict[str, Callable[[], Any]] = {
        "alpaca_eval": lambda: fetch_alpaca_eval(dest, source=where["alpaca_eval"], download=download),
        "flask": lambda: fetch_flask(dest, source=where["flask"], download=download),
        "llmbar": lambda: fetch_llmbar(dest, source=where["llmbar"], download=download),
        "mt_bench": lambda: fetch_mt_bench(dest, source=where["mt_bench"], answers_source=where["mt_bench_answers"],
                                           routellm_source=where["routellm"], download=download),
        "routellm": lambda: fetch_routellm(dest, source=where["routellm"], download=download),
    }
    complete = set() if force else set(complete_datasets(dest))
    for name in datasets:
        if name in complete:
            say(f"{name}: already fetched and verified")
            continue
        start = time.perf_counter()
        steps[name]()
        entry = record_dataset(dest, name)
        size = sum(f["size"] for f in entry["files"].values())
        say(f"{name}: {len(entry['files'])} files, {size / 1e6:.1f} MB in {time.perf_counter() - start:.0f} s")
    return Path(dest)


# -- the manifest: what a finished fetch wrote, with sizes and checksums ---------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(dest: str | Path) -> dict[str, Any]:
    """``dest/MANIFEST.json`` (an empty manifest when there is none yet)."""
    path = Path(dest) / FETCH_MANIFEST
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    manifest = _parsed_json(path, "the fetch manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IncompleteDownload(f"{path} is not a manifest of format {MANIFEST_FORMAT}; delete {Path(dest)} and fetch again")
    return manifest


def record_dataset(dest: str | Path, name: str) -> dict[str, Any]:
    """Record every file under ``dest/<name>/`` (size and SHA-256) as one finished dataset."""
    folder = Path(dest) / name
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise IncompleteDownload(f"fetching {name} wrote no file under {folder}")
    entry = {"fetched": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "files": {p.relative_to(dest).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}}
    manifest = read_manifest(dest)
    manifest["datasets"][name] = entry
    atomic_write_json(Path(dest) / FETCH_MANIFEST, manifest)
    return entry


def dataset_problems(dest: str | Path, name: str, *, checksums: bool = True,
                     manifest: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with one fetched dataset (empty: complete and verified); ``manifest``: already read."""
    entry = (manifest or read_manifest(dest))["datasets"].get(name)
    if entry is None:
        return [f"{name} was never fetched completely into {dest}"]
    problems = []
    for relative, expected in entry["files"].items():
        path = Path(dest) / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{relative} has {path.stat().st_size} bytes, {expected['size']} were fetched")
        elif checksums and _sha256(path) != expected["sha256"]:
            problems.append(f"{relative} does not match its SHA-256 of {expected['sha256'][:12]}...")
    return problems


def complete_datasets(dest: str | Path, *, checksums: bool = True) -> list[str]:
    """The datasets fetched completely into ``dest`` whose files still match the manifest."""
    if not (Path(dest) / FETCH_MANIFEST).is_file():
        return []
    manifest = read_manifest(dest)
    return [name for name in manifest["datasets"]
            if not dataset_problems(dest, name, checksums=checksums, manifest=manifest)]


def verify_fetched(dest: str | Path, datasets: Sequence[str] = DATASETS, *, checksums: bool = True) -> None:
    """Raise :class:`IncompleteDownload` naming every dataset of ``datasets`` that is absent, partial or
    altered in ``dest``, with the command that completes it."""
    manifest = read_manifest(dest)
    problems = [p for name in datasets for p in dataset_problems(dest, name, checksums=checksums, manifest=manifest)]
    if problems:
        raise IncompleteDownload(f"the public data in {dest} is incomplete: " + "; ".join(problems)
                                 + ". Run `blender-book fetch-data` (online) to resume the download.")


# -- is the network there? ---------------------------------------------------------------------------

def reachable(url: str = SOURCES["alpaca_eval"], *, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (a local folder: it exists)."""
    parts = urlsplit(url)
    if not parts.scheme:
        return Path(url).exists()
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
