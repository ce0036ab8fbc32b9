"""GPT-Rank: pairwise judging of candidates with the paper's 4-choice prompt, and ranks from it.

A judge reads the instruction, the input and two candidates and answers one of four labels.
Two judges share one interface:

- :class:`OpenAIJudge` talks to any OpenAI-compatible server through the ``openai`` client:
  OpenAI or vLLM in the ``paper`` profile, and offline a real ``transformers serve`` process on
  127.0.0.1 that :class:`LocalJudgeServer` starts and always stops.
- :class:`LogProbJudge` runs a causal LM in process and picks the label whose option number
  ("1"–"4") is most probable as the first answer token: no free text, so no parse failures.

Position bias: every pair is judged in both orders and the two verdicts are combined
(:func:`combine_verdicts`); both raw verdicts are kept in ``cmp_results_raw``.

Failures: a reply that arrives but names no label is a verdict (``None``, cached, counted as
unparseable). A request that fails after the client's bounded retries, or whose body is not a chat
completion, is no verdict: it is counted and reported with its reason, never cached, and a rerun
sends exactly those requests again.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch
from scipy.stats import rankdata
from tqdm.auto import tqdm

from .io import JsonlCache
from .models import LoadedModel, accepts_logits_to_keep, load_model, resolve_model_path

if TYPE_CHECKING:
    import pandas as pd

LABELS: tuple[str, ...] = ("A is better", "B is better", "Same good", "Same bad")

# The LLM-Blender GPT-Rank prompt: instruction, input, two candidates, four numbered choices.
JUDGE_PROMPT = """Instruction: {instruction}
Input: {input}
Candidate A: {candidate_a}
Candidate B: {candidate_b}
Given the instruction and input above, please compare the two candidates.
You only have 4 choices to output:
If you think A is better, please output: 1. A is better
If you think B is better, please output: 2. B is better
If you think both are good enough and correctly give the answer, please output: 3. Same good
If you think both are bad and do not follow the instruction, please output: 4. Same bad
Do not output anything else except the 4 choices above.
Output your choice below:"""

# GPT-Rank increments (score of A, score of B) per verdict, as in the official evaluation code.
_INCREMENTS = {"A is better": (1.0, -1.0), "B is better": (-1.0, 1.0), "Same good": (0.5, 0.5), "Same bad": (-0.5, -0.5)}
_SWAP = {"A is better": "B is better", "B is better": "A is better", "Same good": "Same good", "Same bad": "Same bad"}


class JudgeError(ValueError):
    """Bad input to the judge (empty candidate, fewer than two candidates, unknown label)."""


def judge_prompt(instruction: str, input_text: str, candidate_a: str, candidate_b: str) -> str:
    """The 4-choice comparison prompt for one ordered pair. The instruction may be empty when the
    input carries the question (MixInstruct does that for some sources)."""
    asks = [t for t in (instruction, input_text) if isinstance(t, str) and t.strip()]
    if not asks:
        raise JudgeError("cannot judge a pair with an empty instruction (and no input)")
    for name, text in (("candidate A", candidate_a), ("candidate B", candidate_b)):
        if not isinstance(text, str) or not text.strip():
            raise JudgeError(f"cannot judge a pair with an empty {name}")
    return JUDGE_PROMPT.format(
        instruction=(instruction or "").strip(), input=(input_text or "").strip(), candidate_a=candidate_a.strip(), candidate_b=candidate_b.strip()
    )


_LABEL_PATTERNS = [
    (re.compile(r"\bA is better\b", re.I), "A is better"),
    (re.compile(r"\bB is better\b", re.I), "B is better"),
    (re.compile(r"\bsame good\b", re.I), "Same good"),
    (re.compile(r"\bsame bad\b", re.I), "Same bad"),
]


def parse_verdict(reply: str | None) -> str | None:
    """Read a label from a judge reply; ``None`` when it names no label or several.

    Accepts the label text anywhere ("2. B is better", "Answer: Same good"), or a bare option
    number / letter at the start ("3", "B.").
    """
    if reply is not None and not isinstance(reply, str):
        raise TypeError(f"reply must be a string or None, got {type(reply).__name__}")
    if not reply or not reply.strip():
        return None
    found = {label for pattern, label in _LABEL_PATTERNS if pattern.search(reply)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None  # several labels: ambiguous, never guessed
    head = re.match(r"\s*(?:choice|answer|output)?\s*[:\-]?\s*\(?([1-4AB])\b", reply, re.I)
    if head:
        token = head.group(1).upper()
        return {"1": LABELS[0], "A": LABELS[0], "2": LABELS[1], "B": LABELS[1], "3": LABELS[2], "4": LABELS[3]}[token]
    return None


def combine_verdicts(forward: str | None, backward: str | None) -> str | None:
    """Combine the verdicts on (a, b) and on (b, a) into one label for (a, b).

    Each verdict gives GPT-Rank increments; the backward one is mirrored; the two are averaged.
    A positive difference favours a, a negative one b; equal increments are a tie, "Same good"
    when their sum is at least 0 (this includes contradictory verdicts, which cancel).
    A missing (unparseable) verdict leaves the other one alone; both missing gives ``None``.
    """
    frames = []
    if forward is not None:
        frames.append(_INCREMENTS[forward])
    if backward is not None:
        frames.append(_INCREMENTS[_SWAP[backward]])
    if not frames:
        return None
    score_a = sum(f[0] for f in frames) / len(frames)
    score_b = sum(f[1] for f in frames) / len(frames)
    if score_a > score_b:
        return "A is better"
    if score_b > score_a:
        return "B is better"
    return "Same good" if score_a + score_b >= 0 else "Same bad"


# --------------------------------------------------------------------------------------------
# judges


@dataclass
class Verdict:
    label: str | None
    raw: str
    error: str | None = None  # set when the request failed: no verdict at all, never cached


class Judge(Protocol):
    name: str

    def judge(self, prompts: list[str]) -> list[Verdict]: ...


class LogProbJudge:
    """An in-process judge: the most probable option number as the first answer token."""

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 8) -> None:
        if loaded.kind != "causal":
            raise JudgeError(f"a log-probability judge needs a causal LM, {loaded.name!r} is {loaded.kind!r}")
        self.loaded, self.batch_size = loaded, batch_size
        self.name = f"logprob:{loaded.name}"
        positions = getattr(loaded.model.config, "max_position_embeddings", None)
        self.context = positions if isinstance(positions, int) and positions > 0 else None
        tok = loaded.tokenizer
        self.option_ids = []
        for digit in "1234":
            ids = tok.encode(digit, add_special_tokens=False)
            if len(ids) != 1:
                raise JudgeError(f"the tokenizer of {loaded.name!r} does not encode {digit!r} as one token")
            self.option_ids.append(ids[0])

    def render(self, prompt: str) -> str:
        tok = self.loaded.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt + "\n"

    @torch.inference_mode()
    def judge(self, prompts: list[str]) -> list[Verdict]:
        """Verdicts in the order of ``prompts``. Batches hold prompts of similar length (less
        padding), and only the last position's logits are computed where the model allows it."""
        tok, model = self.loaded.tokenizer, self.loaded.model
        encoded = tok([self.render(p) for p in prompts], add_special_tokens=False)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        longest = max(lengths, default=0)
        if self.context is not None and longest > self.context:
            raise JudgeError(f"a judge prompt of {longest} tokens is too long for the context of {self.context} "
                             f"tokens of {self.loaded.name!r}: shorten the candidates")
        trim = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
        order = sorted(range(len(encoded)), key=lambda k: lengths[k])
        verdicts: list[Verdict | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = tok.pad({"input_ids": [encoded[k] for k in rows]}, return_tensors="pt")
            mask = batch["attention_mask"]
            logits = model(input_ids=batch["input_ids"].to(self.loaded.device), attention_mask=mask.to(self.loaded.device),
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.loaded.device),
                           **trim).logits[:, -1, :]  # left padding: the last position is the answer's first token
            option_logprobs = torch.log_softmax(logits.float(), dim=-1)[:, self.option_ids]
            for k, row in zip(rows, option_logprobs):
                raw = json.dumps({"option_logprobs": [round(float(x), 4) for x in row]})
                verdicts[k] = Verdict(label=LABELS[int(row.argmax())], raw=raw)
        return verdicts  # type: ignore[return-value]


class OpenAIJudge:
    """A judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, ``transformers serve``)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 16,
        max_concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        from .generate import openai_client

        self.client = openai_client(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self.model, self.max_tokens, self.max_concurrency = model, max_tokens, max_concurrency
        self.name = f"openai:{model}"
        self.failures: list[str] = []

    def _one(self, prompt: str) -> Verdict:
        from .generate import RequestError, chat_completion

        try:
            text, _ = chat_completion(
                self.client,
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_tokens,
                temperature=0.0,
            )
        except RequestError as err:  # recorded and counted, never a crash
            self.failures.append(str(err))
            return Verdict(label=None, raw=f"<request failed: {err}>", error=str(err))
        return Verdict(label=parse_verdict(text), raw=text)

    def judge(self, prompts: list[str]) -> list[Verdict]:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(self._one, prompts))


# --------------------------------------------------------------------------------------------
# a local OpenAI-compatible server (offline default profile)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalJudgeServer:
    """Start ``transformers serve`` on 127.0.0.1 (a free port) for a local model folder; always stop it.

    Use as a context manager. The server binds to the loopback address only and the process is
    terminated on exit, also when the body raises; one entered without ``with`` (a notebook cell
    that fails before its ``stop()``) is terminated when the interpreter exits.
    """

    _PORT_ATTEMPTS = 3  # a free port can be taken by another process before serve binds it

    def __init__(self, model_folder: str | Path, *, startup_timeout: float = 180.0, dtype: str = "auto") -> None:
        self.model_folder = str(Path(model_folder).resolve())
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.dtype = dtype
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "LocalJudgeServer":
        from .paths import cache_dir

        executable = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
        if executable is None:
            raise RuntimeError("the `transformers` command is not installed (pip install 'transformers[serving]')")
        hub_cache = cache_dir() / "hub"  # serve needs an existing hub cache folder, even offline
        hub_cache.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
        for attempt in range(1, self._PORT_ATTEMPTS + 1):
            self.log_path = cache_dir() / f"judge-server-{self.port}.log"
            self._log = open(self.log_path, "wb")
            command = [executable, "serve", self.model_folder, "--host", "127.0.0.1", "--port", str(self.port),
                       "--dtype", self.dtype, "--device", "cpu" if not torch.cuda.is_available() else "auto"]
            self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
            atexit.register(self.stop)  # also stopped when the interpreter exits without stop()
            try:
                self._wait_until_ready()
                return self
            except BaseException as err:
                self.stop()
                log = self.log_path.read_text(errors="replace").lower()
                if not (isinstance(err, RuntimeError) and "address already in use" in log) or attempt == self._PORT_ATTEMPTS:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_until_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the judge server exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the judge server did not answer within {self.startup_timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# judging a dataset


@dataclass
class JudgeStats:
    requests: int = 0
    from_cache: int = 0
    unparseable: int = 0  # replies that arrived but name no label (cached: the judge's answer)
    failed_requests: int = 0  # requests that failed after the client's retries (not cached, retried on a rerun)
    pairs: int = 0
    pairs_without_verdict: int = 0
    position_consistent: int = 0  # pairs whose two orders agree after mirroring
    position_first_preferred: int = 0  # "A is better" verdicts among decisive ones
    decisive: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # "<order> of <example id>: <reason>" per failed request

    @property
    def consistency(self) -> float:
        judged = self.pairs - self.pairs_without_verdict
        return self.position_consistent / judged if judged else float("nan")

    @property
    def first_position_rate(self) -> float:
        return self.position_first_preferred / self.decisive if self.decisive else float("nan")


class LazyJudge:
    """A judge built on first use: a fully cached run never loads a model or starts a server."""

    def __init__(self, name: str, factory: Callable[[], Judge]) -> None:
        self.name, self._factory, self._judge = name, factory, None
        self.failures: list[str] = []

    def judge(self, prompts: list[str]) -> list[Any]:
        if self._judge is None:
            self._judge = self._factory()
        verdicts = self._judge.judge(prompts)
        self.failures = list(getattr(self._judge, "failures", []))
        return verdicts


JUDGE_BACKENDS = ("logprob", "served", "openai")


def make_judge(backend: str, model: str, base_url: str | None = None) -> tuple[LazyJudge, Callable[[], None]]:
    """A judge and a function that releases what it holds (a local server). ``backend``:
    ``"logprob"`` (a local causal LM's label log-probabilities), ``"served"`` (a local folder behind a
    real OpenAI-compatible server started here) or ``"openai"`` (an OpenAI-compatible API at ``base_url``)."""
    server: list[LocalJudgeServer] = []
    if backend == "logprob":
        factory = lambda: LogProbJudge(load_model(model, dtype="bf16"))  # noqa: E731
    elif backend == "served":
        folder, _ = resolve_model_path(model)

        def factory() -> Judge:
            server.append(LocalJudgeServer(folder).__enter__())
            return OpenAIJudge(folder, base_url=server[0].base_url, max_tokens=8, max_concurrency=2)
    elif backend == "openai":
        factory = lambda: OpenAIJudge(model, base_url=base_url)  # noqa: E731
    else:
        raise ValueError(f"unknown judge backend {backend!r}; known: {list(JUDGE_BACKENDS)}")

    def close() -> None:
        for s in server:
            s.stop()

    return LazyJudge(f"{backend}:{model}", factory), close


def verdict_key(judge_name: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([judge_name, prompt]).encode()).hexdigest()


def judge_examples(
    examples: list[dict[str, Any]],
    judge: Judge,
    cache: JsonlCache,
    *,
    both_orders: bool = True,
    chunk_size: int = 64,
    progress: bool = True,
) -> JudgeStats:
    """Judge every candidate pair of every example (in place): ``cmp_results`` and ``cmp_results_raw``.

    Requests go out in chunks; each finished chunk is appended to the cache, so an interrupted
    run resumes without losing or repeating finished verdicts. A failed request (``Verdict.error``)
    is not cached but counted in ``failed_requests`` with its reason in ``failures``; its ordered
    pair is left out of ``cmp_results_raw`` and its pair gets no combined verdict this run (a
    one-order verdict would change once the rerun fills the other order).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    jobs: list[tuple[int, str, str]] = []  # (example index, ordered "a,b" key, prompt)
    for index, ex in enumerate(examples):
        candidates = ex.get("candidates") or []
        if len(candidates) < 2:
            raise JudgeError(f"example {ex.get('id')!r} has {len(candidates)} candidate(s); judging needs at least 2")
        for k, candidate in enumerate(candidates):
            if not isinstance(candidate, dict) or "text" not in candidate:
                raise JudgeError(f"example {ex.get('id')!r}, candidate {k} has no 'text' field")
        models = [c.get("model") for c in candidates]
        repeated = sorted({str(m) for m in models if models.count(m) > 1})
        if repeated:  # their "a,b" keys would collide: one verdict for two different texts
            raise JudgeError(f"example {ex.get('id')!r} has several candidates named {repeated}")
        for first, second in itertools.combinations(candidates, 2):
            orders = [(first, second), (second, first)] if both_orders else [(first, second)]
            for a, b in orders:
                prompt = judge_prompt(ex["instruction"], ex.get("input", ""), a["text"], b["text"])
                jobs.append((index, f"{a['model']},{b['model']}", prompt))
    stats = JudgeStats(requests=len(jobs))
    verdicts: dict[str, dict[str, Any]] = {}
    failed_keys: dict[str, str | None] = {}  # key -> reason, for the requests that failed this run
    bar = tqdm(total=len(jobs), desc=f"judging ({judge.name})", disable=not progress, leave=False)
    for start in range(0, len(jobs), chunk_size):
        chunk = jobs[start : start + chunk_size]
        keys = [verdict_key(judge.name, p) for *_, p in chunk]
        missing = [(k, p) for k, (*_, p) in zip(keys, chunk) if cache.get(k) is None]
        stats.from_cache += len(chunk) - len(missing)
        if missing:
            begin = time.perf_counter()
            fresh = judge.judge([p for _, p in missing])
            stats.seconds += time.perf_counter() - begin
            cache.add_batch([{"key": k, "judge": judge.name, "label": v.label, "raw": v.raw}
                             for (k, _), v in zip(missing, fresh) if v.error is None])
            failed_keys.update({k: v.error for (k, _), v in zip(missing, fresh) if v.error is not None})
        for key in keys:
            if cache.get(key) is not None:
                verdicts[key] = cache.get(key)  # type: ignore[assignment]
        bar.update(len(chunk))
    bar.close()

    for ex in examples:
        ex["cmp_results"], ex["cmp_results_raw"] = {}, {}
    failed_orders: set[tuple[int, str]] = set()
    for index, order, prompt in jobs:
        key = verdict_key(judge.name, prompt)
        if key not in verdicts:
            stats.failed_requests += 1
            stats.failures.append(f"{order} of {examples[index].get('id')!r}: {failed_keys.get(key)}")
            failed_orders.add((index, order))
            continue
        label = verdicts[key]["label"]
        examples[index]["cmp_results_raw"][order] = label
        if label is None:
            stats.unparseable += 1
        elif label in ("A is better", "B is better"):
            stats.decisive += 1
            stats.position_first_preferred += label == "A is better"
    for index, ex in enumerate(examples):
        raw = ex["cmp_results_raw"]
        for first, second in itertools.combinations([c["model"] for c in ex["candidates"]], 2):
            forward, backward = raw.get(f"{first},{second}"), raw.get(f"{second},{first}")
            combined = combine_verdicts(forward, backward)
            stats.pairs += 1
            failed = (index, f"{first},{second}") in failed_orders or (index, f"{second},{first}") in failed_orders
            if combined is None or failed:
                stats.pairs_without_verdict += 1
                continue
            ex["cmp_results"][f"{first},{second}"] = combined
            if forward is not None and backward is not None:
                stats.position_consistent += forward == _SWAP[backward]
    return stats


# --------------------------------------------------------------------------------------------
# ranks from comparisons


def comparison_matrix(cmp_results: dict[str, str], models: list[str]) -> np.ndarray:
    """M[i, j] from the verdicts: A better +1/−1, Same good +0.5 to both, Same bad −0.5 to both."""
    index = {m: i for i, m in enumerate(models)}
    matrix = np.zeros((len(models), len(models)))
    for key, label in cmp_results.items():
        a, b = key.split(",")
        if a not in index or b not in index:
            raise JudgeError(f"comparison {key!r} names a model that is not a candidate ({models})")
        if label not in _INCREMENTS:
            raise JudgeError(f"unknown comparison label {label!r} for {key!r}; expected one of {LABELS}")
        inc_a, inc_b = _INCREMENTS[label]
        matrix[index[a], index[b]] += inc_a
        matrix[index[b], index[a]] += inc_b
    return matrix


def gpt_rank_scores(cmp_results: dict[str, str], models: list[str]) -> np.ndarray:
    """Each candidate's GPT-Rank score: its row sum of M (the official evaluation's score)."""
    return comparison_matrix(cmp_results, models).sum(axis=1)


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """Rank 1 = best; ties share the better rank (competition ranking, 1-2-2-4)."""
    return rankdata(-np.asarray(scores, dtype=float), method="min").astype(int)


def gpt_ranks(example: dict[str, Any]) -> dict[str, int]:
    """GPT-Rank of every candidate of one judged example."""
    models = [c["model"] for c in example["candidates"]]
    ranks = ranks_from_scores(gpt_rank_scores(example.get("cmp_results") or {}, models))
    return dict(zip(models, (int(r) for r in ranks)))


# --------------------------------------------------------------------------------------------
# the paper's Table 2 columns from pairwise verdicts

# The bases of Table 2's ">= Vic" and ">= OA" columns, as the published MixInstruct names them.
TABLE2_BASES: dict[str, str] = {"Vic": "vicuna-13b-1.1", "OA": "oasst-sft-4-pythia-12b-epoch-3.5"}
TIE_RULES = ("original", "corrected")


def at_least_as_good(cmp_results: dict[str, str], selected: str, base: str, rule: str = "original") -> float | None:
    """Whether ``selected`` is at least as good as ``base`` by the judge's verdict on the pair; None
    when the pair has no verdict.

    ``rule="original"`` is the paper's Table 2: a win or either kind of tie counts 1, and the base
    itself counts 1 (it is as good as itself). ``rule="corrected"`` is the computation posted in the
    official repository's issue #6 ("Issue with calculating >= Vic and OA"): a win 1, "Same good" 0.5,
    "Same bad" 0, a loss 0, and the base itself 0.5; it gives PairRanker 58.29% against Vicuna, not
    the table's figure."""
    if rule not in TIE_RULES:
        raise ValueError(f"rule must be one of {TIE_RULES}, got {rule!r}")
    if selected == base:
        return 1.0 if rule == "original" else 0.5
    label, flipped = cmp_results.get(f"{selected},{base}"), False
    if label is None:
        label, flipped = cmp_results.get(f"{base},{selected}"), True
    if label is None:
        return None
    if label not in _INCREMENTS:
        raise JudgeError(f"unknown comparison label {label!r} for {selected} vs {base}; expected one of {LABELS}")
    if label in ("Same good", "Same bad"):
        return 1.0 if rule == "original" else (0.5 if label == "Same good" else 0.0)
    return float((label == "A is better") != flipped)


def table2_row(examples: list[dict[str, Any]], selections: list[int], *, rule: str = "original",
               bases: dict[str, str] = TABLE2_BASES, top_k: tuple[int, ...] = (1, 2, 3)) -> dict[str, float]:
    """One method's row of the paper's Table 2 from the judge's verdicts: its mean GPT-Rank (the rank
    of the selected candidate among all, 1 = best), the percentage of examples where it is at least as
    good as each base (:func:`at_least_as_good`, examples without that verdict left out), and the
    percentage where it is among the GPT-Rank top k. Examples without verdicts are left out."""
    if len(selections) != len(examples):
        raise ValueError(f"got {len(selections)} selections for {len(examples)} examples")
    ranks, versus = [], {name: [] for name in bases}
    for ex, k in zip(examples, selections):
        if not ex.get("cmp_results"):
            continue
        chosen = ex["candidates"][k]["model"]
        ranks.append(gpt_ranks(ex)[chosen])
        for name, base in bases.items():
            value = at_least_as_good(ex["cmp_results"], chosen, base, rule)
            if value is not None:
                versus[name].append(value)
    if not ranks:
        raise ValueError("no example has verdicts (cmp_results)")
    row = {"GPT-Rank": float(np.mean(ranks))}
    row.update({f">= {name} %": 100 * float(np.mean(v)) if v else float("nan") for name, v in versus.items()})
    row.update({f"Top-{k} %": 100 * float(np.mean([r <= k for r in ranks])) for k in top_k})
    row["judged examples"] = float(len(ranks))
    return row


def table2_judge_columns(examples: list[dict[str, Any]], selections: dict[str, list[int]], *,
                         bases: dict[str, str] = TABLE2_BASES) -> "pd.DataFrame":
    """Table 2's judge columns for every selector (:func:`table2_row`): GPT-Rank, Top-k and, for each
    base among the candidates (Vicuna and Open Assistant in the published MixInstruct), ">= base" by
    the paper's tie rule and by the corrected one ("(corrected)"). A pool without the bases gets no
    ">=" column, rather than a column of blanks."""
    import pandas as pd

    models = {c["model"] for ex in examples for c in ex["candidates"]}
    present = {name: base for name, base in bases.items() if base in models}
    rows = {}
    for selector, chosen in selections.items():
        row = table2_row(examples, chosen, rule="original", bases=present)
        corrected = table2_row(examples, chosen, rule="corrected", bases=present)
        row.update({f">= {name} % (corrected)": corrected[f">= {name} %"] for name in present})
        rows[selector] = row
    columns = ["GPT-Rank", *[f">= {n} %{rule}" for n in present for rule in ("", " (corrected)")],
               *[c for c in next(iter(rows.values())) if c.startswith("Top-")], "judged examples"]
    return pd.DataFrame.from_dict(rows, orient="index")[columns]


# --------------------------------------------------------------------------------------------
# how far can a judge be trusted?

NON_ANSWER = "I don't know."


def known_answer_pairs(examples: list[dict[str, Any]], *, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs whose right verdict is known: the reference against a non-answer and against the
    reference of an unrelated example. A judge worth its name prefers the reference."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(examples), size=min(n, len(examples)), replace=False)
    pairs = []
    for i in chosen:
        ex = examples[int(i)]
        other = examples[int((i + len(examples) // 2) % len(examples))]
        for kind, wrong in (("non-answer", NON_ANSWER), ("unrelated reference", other["output"])):
            pairs.append({"id": f"{ex['id']}/{kind}", "instruction": ex["instruction"], "input": ex.get("input", ""),
                          "output": ex["output"], "kind": kind,
                          "candidates": [{"model": "reference", "text": ex["output"]}, {"model": "wrong", "text": wrong}]})
    return pairs


def known_answer_accuracy(
    examples: list[dict[str, Any]], judge: Judge, cache: JsonlCache, *, n: int = 20, seed: int = 0
) -> dict[str, float]:
    """Share of known-answer pairs where the judge's combined (both orders) verdict prefers the
    reference, per kind of wrong answer; 'tie' is the share judged a tie. Chance is about 1/3."""
    pairs = known_answer_pairs(examples, n=n, seed=seed)
    judge_examples(pairs, judge, cache, both_orders=True, progress=False)
    result: dict[str, float] = {}
    for kind in ("non-answer", "unrelated reference"):
        verdicts = [p["cmp_results"].get("reference,wrong") for p in pairs if p["kind"] == kind]
        result[f"prefers reference ({kind})"] = sum(v == "A is better" for v in verdicts) / len(verdicts)
        result[f"tie ({kind})"] = sum(v in ("Same good", "Same bad") for v in verdicts) / len(verdicts)
    return result


def judge_reliability_summary(known: dict[str, float], *, trusted_at: float = 0.8) -> str:
    """One sentence on whether a judge's known-answer accuracy lets its GPT-Rank be read as quality."""
    non_answer = known["prefers reference (non-answer)"]
    unrelated = known["prefers reference (unrelated reference)"]
    if min(non_answer, unrelated) >= trusted_at:
        return (f"The judge prefers the reference over a non-answer in {non_answer:.0%} and over an unrelated "
                f"answer in {unrelated:.0%} of known-answer pairs: its GPT-Rank can be read as a quality signal.")
    return (f"The judge prefers the reference over a non-answer in only {non_answer:.0%} and over an unrelated "
            f"answer in only {unrelated:.0%} of known-answer pairs (trusted at >= {trusted_at:.0%}): it cannot tell "
            f"a right answer from a wrong one, so the GPT-Rank it produces here is noise, not quality. "
            f"Read quality from the reference metrics in this profile, and from GPT-4 judgments in chapter 6.")
