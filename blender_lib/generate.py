"""Candidate generation from N LLMs, with a resumable on-disk cache.

A *candidate config* is one "LLM" of the pool: a model plus a decoding / prompting recipe
(greedy or sampled, chat template or few-shot, system prompt, stop strings). Two backends
answer prompts: :class:`TransformersBackend` (local, batched, left padding) and
:class:`OpenAIBackend` (any OpenAI-compatible server: a local ``transformers serve``, vLLM,
OpenAI).

Resuming is exact: prompts are cut into batches over the *whole* prompt list in a fixed
order, each batch is seeded from its own content, and a batch is appended to the cache only
once it is complete. A rerun after a kill skips complete batches and regenerates the rest
exactly as an uninterrupted run would have.

Server requests are independent of each other (one prompt each, seeded per request), so for
:class:`OpenAIBackend` every finished request is cached even when others of its batch failed
after the client's retries; :func:`generate_with_cache` then raises one
:class:`IncompleteGeneration` naming the failures, and a rerun sends only the missing prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Protocol

import torch
from tqdm.auto import tqdm

from .checks import check_field_types
from .io import JsonlCache
from .models import LoadedModel

PromptStyle = Literal["chat", "few_shot"]

# Two short worked examples for base models (Gemma-3-270M has no chat template).
FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Name the largest planet in our solar system.", "Jupiter is the largest planet in our solar system."),
    (
        "Rewrite the sentence in a formal tone.\nGonna be late, traffic is nuts.",
        "I will be arriving late because the traffic is extremely heavy.",
    ),
)


class GenerationError(RuntimeError):
    """A generation request that could not be completed (after retries, for remote backends)."""


class RequestError(RuntimeError):
    """A request to an OpenAI-compatible server that failed after the client's own retries, or
    whose reply body is not a chat completion (truncated or malformed JSON, a wrong shape)."""


class IncompleteGeneration(GenerationError):
    """Some prompts got no generation; the others are done (and cached by :func:`generate_with_cache`).

    ``results`` is aligned with the prompts (``None`` where the request failed); ``failures``
    holds one reason per failed request; ``stats`` is set by :func:`generate_with_cache`.
    """

    def __init__(
        self, message: str, results: list[Generation | None], failures: list[str], stats: GenerationStats | None = None
    ) -> None:
        super().__init__(message)
        self.results, self.failures, self.stats = results, failures, stats


def summarize_failures(failures: list[str], *, top: int = 3) -> str:
    """The most frequent failure reasons with their counts, for one readable error message."""
    counts = Counter(failures).most_common()
    text = "; ".join(f"{n}x {reason}" for reason, n in counts[:top])
    return text + (f"; and {len(counts) - top} other reason(s)" if len(counts) > top else "")


@dataclass(frozen=True)
class CandidateConfig:
    """One member of the LLM pool: a model and how it is prompted and decoded."""

    name: str  # the candidate's "model" name in MixInstruct (unique within a pool)
    model: str  # a name blender_lib.models.load_model understands, or a served model id
    decoding: Literal["greedy", "sample"] = "greedy"
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0  # 0 = off; prefer top_k over top_p for huge vocabularies (Gemma)
    max_new_tokens: int = 96
    prompt_style: PromptStyle = "chat"
    system_prompt: str | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)  # "96" for max_new_tokens, "hot" for temperature: named now, not mid-build
        if not self.name.strip():
            raise ValueError("a candidate config needs a non-empty name")
        if self.max_new_tokens < 1:
            raise ValueError(f"{self.name}: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.decoding not in ("greedy", "sample"):
            raise ValueError(f"{self.name}: decoding must be 'greedy' or 'sample', got {self.decoding!r}")

    @property
    def decoding_method(self) -> str:
        """The MixInstruct ``decoding_method`` label."""
        if self.decoding == "greedy":
            return "greedy"
        return f"top_p_sampling(t={self.temperature},p={self.top_p},k={self.top_k})"

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "CandidateConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown candidate config field(s) {unknown}; known: {sorted(known)}")
        spec = dict(spec)
        if "stop" in spec:
            spec["stop"] = tuple(spec["stop"])
        return cls(**spec)


@dataclass
class Generation:
    text: str
    n_tokens: int


def user_message(instruction: str, input_text: str = "") -> str:
    """The instruction with its optional input, as a user would type it."""
    instruction, input_text = instruction.strip(), (input_text or "").strip()
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def build_prompt(tokenizer: Any, config: CandidateConfig, instruction: str, input_text: str = "") -> str:
    """Render one prompt: the tokenizer's chat template, or few-shot "Question/Answer" for base models."""
    message = user_message(instruction, input_text)
    if config.prompt_style == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{config.name}: prompt_style 'chat' needs a tokenizer with a chat template")
        messages = ([{"role": "system", "content": config.system_prompt}] if config.system_prompt else []) + [
            {"role": "user", "content": message}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEW_SHOT_EXAMPLES)
    preamble = f"{config.system_prompt}\n\n" if config.system_prompt else ""
    return f"{preamble}{shots}Question: {message}\nAnswer:"


def cut_at_stop(text: str, stop: Iterable[str]) -> str:
    """Truncate at the first stop string (the model may emit it, or run past it in a batch)."""
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip()


def batch_seed(config: CandidateConfig, prompts: list[str]) -> int:
    """A seed derived from the config's seed and the batch content, stable across processes."""
    digest = hashlib.sha256(json.dumps([config.seed, prompts]).encode()).hexdigest()
    return int(digest[:8], 16)


class Backend(Protocol):
    def generate(self, prompts: list[str], config: CandidateConfig) -> list[Generation]: ...


class TransformersBackend:
    """Batched local generation with a loaded causal LM (left padding, stop strings)."""

    def __init__(self, loaded: LoadedModel) -> None:
        if loaded.kind != "causal":
            raise ValueError(f"generation needs a causal LM, {loaded.name!r} is {loaded.kind!r}")
        self.loaded = loaded

    @torch.inference_mode()
    def generate(self, prompts: list[str], config: CandidateConfig) -> list[Generation]:
        tok, model = self.loaded.tokenizer, self.loaded.model
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.loaded.device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=config.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            repetition_penalty=config.repetition_penalty,
        )
        if config.decoding == "sample":
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k or None)
            torch.manual_seed(batch_seed(config, prompts))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if config.stop:
            kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        output = model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        results = []
        for row in new_tokens:
            n = int((row != tok.pad_token_id).sum())
            text = tok.decode(row, skip_special_tokens=True)
            results.append(Generation(text=cut_at_stop(text, config.stop), n_tokens=n))
        return results


def chat_completion(client: Any, **request: Any) -> tuple[str, int | None]:
    """The reply text and completion-token count of one chat completion request.

    The client itself retries 429 (honouring Retry-After), 5xx, timeouts and dropped connections,
    at most ``max_retries`` times. What is still failing afterwards, and a body that is not a chat
    completion (truncated or malformed JSON, no choices), raises :class:`RequestError` with the
    reason: never a crash, and never mistaken for a reply.
    """
    from openai import OpenAIError

    try:
        reply = client.chat.completions.create(**request)
    except OpenAIError as err:
        raise RequestError(f"{type(err).__name__}: {str(err)[:200]}") from err
    except ValueError as err:  # json.JSONDecodeError: the client does not wrap a body it cannot parse
        raise RequestError(f"malformed reply body ({type(err).__name__}: {str(err)[:120]})") from err
    # Without strict validation the client returns whatever JSON came (or the text of a non-JSON body).
    choices = getattr(reply, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    content = getattr(message, "content", None)
    if message is None or not (content is None or isinstance(content, str)):
        raise RequestError(f"reply is not a chat completion: {str(reply)[:120]!r}")
    tokens = getattr(getattr(reply, "usage", None), "completion_tokens", None)
    return content or "", tokens if isinstance(tokens, int) else None


def openai_client(base_url: str | None, api_key: str | None, *, timeout: float, max_retries: int) -> Any:
    """An ``openai`` client for OpenAI (base_url None) or any compatible server (vLLM, a local one).

    Local servers need no key; the client's own retries back off on 429/5xx and dropped connections.
    """
    from openai import OpenAI

    return OpenAI(
        base_url=base_url,
        api_key=api_key or os.environ.get("OPENAI_API_KEY", "not-needed-for-local-servers"),
        timeout=timeout,
        max_retries=max_retries,
    )


class OpenAIBackend:
    """Any OpenAI-compatible server through the ``openai`` client, with bounded concurrency.

    Prompts are sent as the user message of a chat completion (the server applies the
    model's chat template). Timeouts and retries with backoff are the client's own. A request
    still failing after them never loses the others: :meth:`generate` waits for all and raises
    :class:`IncompleteGeneration` carrying the finished results.
    """

    # One request per prompt, seeded per request: a prompt's reply does not depend on its batch,
    # so generate_with_cache may cache single successes and later send only the missing prompts.
    independent_requests = True

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 3,
    ) -> None:
        self.client = openai_client(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self.max_concurrency = max_concurrency

    def _one(self, message: str, config: CandidateConfig) -> Generation:
        messages = ([{"role": "system", "content": config.system_prompt}] if config.system_prompt else []) + [
            {"role": "user", "content": message}
        ]
        sampling = (
            {"temperature": config.temperature, "top_p": config.top_p}
            if config.decoding == "sample"
            else {"temperature": 0.0}
        )
        try:
            text, tokens = chat_completion(
                self.client,
                model=config.model,
                messages=messages,
                max_tokens=config.max_new_tokens,
                stop=list(config.stop) or None,
                seed=config.seed,
                **sampling,
            )
        except RequestError as err:
            raise GenerationError(f"{config.name}: request to the server failed: {err}") from err
        return Generation(text=cut_at_stop(text, config.stop), n_tokens=tokens if tokens is not None else len(text.split()))

    def generate(self, prompts: list[str], config: CandidateConfig) -> list[Generation]:
        """``prompts`` here are user messages (see :func:`user_message`), not rendered templates.

        Raises :class:`IncompleteGeneration` (after every request has finished) when some failed.
        """
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self._one, m, config) for m in prompts]
        results: list[Generation | None] = []
        failures: list[str] = []
        for future in futures:
            try:
                results.append(future.result())
            except GenerationError as err:
                results.append(None)
                failures.append(str(err))
        if failures:
            raise IncompleteGeneration(
                f"{len(failures)} of {len(prompts)} request(s) failed: {summarize_failures(failures)}", results, failures
            )
        return [r for r in results if r is not None]  # all of them: nothing failed


# --------------------------------------------------------------------------------------------
# cache


def cache_key(config: CandidateConfig, prompt: str) -> str:
    """Key of one generation: everything that changes its text (config minus its pool name, prompt)."""
    recipe = {k: v for k, v in asdict(config).items() if k != "name"}
    return hashlib.sha256(json.dumps([recipe, prompt], sort_keys=True).encode()).hexdigest()


# The generation cache is the generic append-only JSONL cache.
GenerationCache = JsonlCache


@dataclass
class GenerationStats:
    generated: int = 0
    from_cache: int = 0
    tokens: int = 0
    seconds: float = 0.0
    failed: int = 0  # requests that still failed after the client's retries (not cached)
    failures: list[str] = field(default_factory=list)  # one reason per failed request

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def generate_with_cache(
    backend: Backend,
    config: CandidateConfig,
    prompts: list[str],
    cache: GenerationCache,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[Generation], GenerationStats]:
    """Answer every prompt, reading complete batches from the cache and generating the others.

    Batches are formed over the full prompt list sorted by length (less padding), so their
    composition, and hence their seeds, never depend on what was already cached. A backend with
    ``independent_requests`` (a server) is sent only the uncached prompts of a batch.

    When some requests fail (:class:`IncompleteGeneration` from the backend), every other batch is
    still generated and every finished result cached; then one :class:`IncompleteGeneration` is
    raised with the count and reasons, ``results`` aligned with ``prompts`` and ``stats``. A rerun
    generates only the missing ones.
    """
    if not prompts:
        return [], GenerationStats()
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    results: list[Generation | None] = [None] * len(prompts)
    stats = GenerationStats()
    bar = tqdm(total=len(prompts), desc=config.name, disable=not progress, leave=False)
    for indices in batches:
        batch_prompts = [prompts[i] for i in indices]
        keys = [cache_key(config, p) for p in batch_prompts]
        cached = [cache.get(k) for k in keys]
        for i, row in zip(indices, cached):
            if row is not None:
                results[i] = Generation(text=row["text"], n_tokens=row["n_tokens"])
        missing = [j for j, row in enumerate(cached) if row is None]
        todo = missing
        if missing and not getattr(backend, "independent_requests", False):
            todo = list(range(len(indices)))  # a local batch is generated whole: its seed and padding depend on all of it
        stats.from_cache += len(indices) - len(todo)
        if todo:
            start = time.perf_counter()
            try:
                generated: list[Generation | None] = list(backend.generate([batch_prompts[j] for j in todo], config))
            except IncompleteGeneration as err:
                generated = list(err.results)
                stats.failures.extend(err.failures)
            stats.seconds += time.perf_counter() - start
            done = [(j, g) for j, g in zip(todo, generated) if g is not None]
            stats.generated += len(done)
            stats.failed += len(todo) - len(done)
            stats.tokens += sum(g.n_tokens for _, g in done)
            cache.add_batch(
                [
                    {"key": keys[j], "candidate": config.name, "model": config.model, "text": g.text, "n_tokens": g.n_tokens}
                    for j, g in done
                ]
            )
            for j, g in done:
                results[indices[j]] = g
        bar.update(len(indices))
    bar.close()
    if stats.failed:
        # Raised only now, after every batch was tried and every finished result cached: the
        # caller's list must stay aligned with its prompts, so a gap is an error, not a shorter list.
        raise IncompleteGeneration(
            f"{config.name}: {stats.failed} of {len(prompts)} generation request(s) failed after the client's retries; "
            f"the {len(prompts) - stats.failed} others are cached and a rerun generates only the missing ones. "
            f"Reasons: {summarize_failures(stats.failures)}",
            results,
            list(stats.failures),
            stats,
        )
    return [r for r in results if r is not None], stats


def generate_candidates(
    examples: list[dict[str, Any]],
    pool: list[CandidateConfig],
    cache: GenerationCache,
    *,
    load: Any = None,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str = "auto",
    progress: bool = True,
) -> dict[str, GenerationStats]:
    """Add one candidate per pool member to every example (in place); returns stats per member.

    Models are loaded once per distinct model name (``load`` defaults to
    :func:`blender_lib.models.load_model`) and only when some batch is not cached.
    """
    from .models import load_model

    if len(pool) < 2:
        raise ValueError(f"an LLM pool needs at least 2 candidate configs, got {len(pool)}")
    names = [c.name for c in pool]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique in a pool, got {names}")
    load = load or (lambda name: load_model(name, device=device, dtype=dtype))
    loaded: dict[str, LoadedModel] = {}
    stats: dict[str, GenerationStats] = {}
    _check_instructions(examples)
    for config in pool:
        tokenizer = _tokenizer_for(config.model, loaded, load)
        prompts = [build_prompt(tokenizer, config, ex["instruction"], ex.get("input", "")) for ex in examples]
        _check_prompt_lengths(examples, prompts, tokenizer, config)
        lazy = _LazyBackend(config.model, loaded, load)
        outputs, stats[config.name] = generate_with_cache(
            lazy, config, prompts, cache, batch_size=batch_size, progress=progress
        )
        for ex, out in zip(examples, outputs):
            ex.setdefault("candidates", [])
            ex["candidates"] = [c for c in ex["candidates"] if c["model"] != config.name] + [
                {
                    "model": config.name,
                    "decoding_method": config.decoding_method,
                    "text": out.text,
                    "n_tokens": out.n_tokens,
                    "scores": {},
                }
            ]
    return stats


_TOKENIZERS: dict[str, Any] = {}


def _check_instructions(examples: list[dict[str, Any]]) -> None:
    """Every example must ask something: an 'instruction' field, and it or 'input' non-empty."""
    for n, ex in enumerate(examples):
        name = ex.get("id", n) if isinstance(ex, dict) else n
        if not isinstance(ex, dict) or "instruction" not in ex:
            raise ValueError(f"example {name!r} lacks the field 'instruction'")
        texts = [ex.get("instruction"), ex.get("input") or ""]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"example {name!r}: instruction and input must be strings")
        if not any(t.strip() for t in texts):
            raise ValueError(f"example {name!r}: instruction and input are both empty: nothing to answer")


def _context_length(model: str) -> int | None:
    """The model's maximum positions from its config (None when the config does not say)."""
    from .models import model_config

    _, _, config = model_config(model)
    for field_name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, field_name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_prompt_lengths(examples: list[dict[str, Any]], prompts: list[str], tokenizer: Any,
                          config: CandidateConfig) -> None:
    """Refuse, before any generation, a prompt that cannot fit the model's context with its answer."""
    limit = _context_length(config.model)
    if limit is None:
        return
    for n, (ex, prompt) in enumerate(zip(examples, prompts)):
        if len(prompt) < limit:  # a token is at least one character: no need to tokenize short prompts
            continue
        tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if tokens + config.max_new_tokens > limit:
            raise GenerationError(f"{config.name}: the prompt of example {ex.get('id', n)!r} is too long: {tokens} tokens "
                                  f"+ {config.max_new_tokens} new tokens exceed the model's context of {limit}")


def _tokenizer_for(model: str, loaded: dict[str, LoadedModel], load: Any) -> Any:
    """Prompts need only the tokenizer (chat template); load it without the weights when possible."""
    if model in loaded:
        return loaded[model].tokenizer
    if model not in _TOKENIZERS:
        from transformers import AutoTokenizer

        from .models import model_config

        path, _, _ = model_config(model)  # an unknown name: ModelNotFoundError, not the hub's OSError
        _TOKENIZERS[model] = AutoTokenizer.from_pretrained(path)
    return _TOKENIZERS[model]


class _LazyBackend:
    """Loads the model on the first uncached batch, so a fully cached build loads no weights."""

    def __init__(self, model: str, loaded: dict[str, LoadedModel], load: Any) -> None:
        self.model, self.loaded, self.load = model, loaded, load

    def generate(self, prompts: list[str], config: CandidateConfig) -> list[Generation]:
        if self.model not in self.loaded:
            self.loaded[self.model] = self.load(self.model)
        return TransformersBackend(self.loaded[self.model]).generate(prompts, config)


__all__ = [
    "CandidateConfig",
    "Generation",
    "GenerationCache",
    "GenerationError",
    "GenerationStats",
    "IncompleteGeneration",
    "OpenAIBackend",
    "RequestError",
    "TransformersBackend",
    "build_prompt",
    "cache_key",
    "chat_completion",
    "cut_at_stop",
    "generate_candidates",
    "generate_with_cache",
    "user_message",
    "POOLS",
    "pool_configs",
]


# --------------------------------------------------------------------------------------------
# LLM pools

_GEMMA_STOPS = ("\nQuestion:", "\nAnswer:", "\n\n\n")

POOLS: dict[str, list[dict[str, Any]]] = {
    # Offline default: two real small LLMs under five decoding / prompting recipes.
    "default": [
        {"name": "smollm2-greedy", "model": "smollm2-135m-instruct"},
        {"name": "smollm2-concise", "model": "smollm2-135m-instruct",
         "system_prompt": "You are a helpful assistant. Answer correctly and concisely, in at most three sentences."},
        {"name": "smollm2-t0.7", "model": "smollm2-135m-instruct", "decoding": "sample", "temperature": 0.7, "top_p": 0.9},
        {"name": "gemma3-fewshot-greedy", "model": "gemma3-270m", "prompt_style": "few_shot", "stop": _GEMMA_STOPS,
         "repetition_penalty": 1.2},
        {"name": "gemma3-fewshot-t0.8", "model": "gemma3-270m", "prompt_style": "few_shot", "decoding": "sample",
         "temperature": 0.8, "top_k": 40, "stop": _GEMMA_STOPS, "repetition_penalty": 1.2},
    ],
    # Paper scale (GPU + internet): open instruct LLMs from the hub, served locally or by vLLM.
    "paper": [
        {"name": "qwen2.5-1.5b-instruct", "model": "Qwen/Qwen2.5-1.5B-Instruct"},
        {"name": "smollm2-1.7b-instruct", "model": "HuggingFaceTB/SmolLM2-1.7B-Instruct"},
        {"name": "llama-3.2-1b-instruct", "model": "meta-llama/Llama-3.2-1B-Instruct"},
        {"name": "gemma-2-2b-it", "model": "google/gemma-2-2b-it"},
        {"name": "phi-3.5-mini-instruct", "model": "microsoft/Phi-3.5-mini-instruct"},
        {"name": "qwen2.5-3b-instruct", "model": "Qwen/Qwen2.5-3B-Instruct"},
        {"name": "mistral-7b-instruct", "model": "mistralai/Mistral-7B-Instruct-v0.3"},
    ],
}


def pool_configs(pool: str | list[dict[str, Any]], *, max_new_tokens: int | None = None, seed: int = 0) -> list[CandidateConfig]:
    """A named pool from ``POOLS`` or an explicit list of config dicts, with shared overrides."""
    if isinstance(pool, str):
        if pool not in POOLS:
            raise ValueError(f"unknown LLM pool {pool!r}; known pools: {sorted(POOLS)} (or pass a list of configs)")
        specs = POOLS[pool]
    else:
        specs = pool
    configs = []
    for spec in specs:
        spec = {"seed": seed, **spec}
        if max_new_tokens is not None:
            spec["max_new_tokens"] = max_new_tokens
        configs.append(CandidateConfig.from_dict(spec))
    return configs
