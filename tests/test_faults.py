"""Fault tests: the judge and generation clients against ONE real ``transformers serve`` (SmolLM2-135M)
behind a real fault-injecting proxy (``tests/fault_proxy.py``), both on 127.0.0.1.

Nothing is mocked: requests go through the real ``openai`` client (its own timeouts, retries and
backoff), a real HTTP proxy and a real server. The proxy's plan picks the faulty requests by their
prompt text, so each scenario is deterministic with concurrent requests. Every test prints one
line of figures: requests sent, faults injected, results kept, duplicates in the cache.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from fault_proxy import ALWAYS, FAULT_KINDS, OFF_FORMAT_TEXT, RETRIED_BY_CLIENT, Fault, FaultProxy

from blender_lib.generate import CandidateConfig, GenerationCache, IncompleteGeneration, OpenAIBackend, generate_with_cache
from blender_lib.io import JsonlCache
from blender_lib.judge import LocalJudgeServer, OpenAIJudge, judge_examples
from blender_lib.models import resolve_model_path

pytestmark = pytest.mark.slow

# A real request here takes ~0.6 s (judge, 4 tokens) to ~1 s (generation); the client gives up
# after TIMEOUT_S and retries at most MAX_RETRIES times (openai's backoff: ~0.4-0.5 s, or Retry-After).
TIMEOUT_S = 3.0
MAX_RETRIES = 1
RETRY_AFTER_S = 1
# Faults that reach the client as a reply from the real server (forwarded upstream first).
FORWARDED = {"cut", "truncate", "off_format"}
# What the client reports for each fault that still fails after its retries.
REASONS = {
    "delay": "APITimeoutError",
    "429": "RateLimitError",
    "500": "InternalServerError",
    "drop": "APIConnectionError",
    "cut": "APIConnectionError",
    "truncate": "malformed reply body",
    "malformed": "malformed reply body",
    "wrong_shape": "not a chat completion",
}


@dataclass
class Served:
    server: LocalJudgeServer
    model: str  # the served model id (its folder)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One real ``transformers serve`` for the whole module, or a skip saying why it cannot start."""
    try:
        folder, _ = resolve_model_path("smollm2-135m-instruct")
    except Exception as err:  # noqa: BLE001 - any reason the offline model is missing is a skip
        pytest.skip(f"the offline SmolLM2-135M model is not available: {err}")
    with pytest.MonkeyPatch.context() as env, contextlib.ExitStack() as stack:
        # One thread: on a small shared CPU, oversubscribed torch threads make serve ~10x slower.
        env.setenv("OMP_NUM_THREADS", "1")
        try:
            server = stack.enter_context(LocalJudgeServer(folder))
        except (RuntimeError, OSError) as err:  # OSError covers TimeoutError
            pytest.skip(f"`transformers serve` could not start: {err}")
        # Warm up outside the fault budget (the first request may be slower).
        OpenAIJudge(folder, base_url=server.base_url, max_tokens=2, timeout=120, max_retries=0).judge(["Say 1."])
        yield Served(server, folder)


@pytest.fixture
def proxy(served: Served) -> Iterator[FaultProxy]:
    if served.server.process is None:
        pytest.fail("the module's server was already stopped (the stop test must run last, in file order)")
    with FaultProxy(f"http://127.0.0.1:{served.server.port}", delay_s=TIMEOUT_S + 1, retry_after_s=RETRY_AFTER_S) as p:
        yield p


def cache_figures(path: Path) -> tuple[int, int]:
    """(lines, duplicated keys) of a JSONL cache file."""
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()] if path.exists() else []
    return len(keys), len(keys) - len(set(keys))


def figure(test: str, proxy: FaultProxy, kept: int, total: int, path: Path, failures: list[str]) -> str:
    lines, duplicates = cache_figures(path)
    counts = proxy.counts
    reasons = f" ({failures[0][:110]!r})" if failures else ""
    line = (f"[{test}] requests sent {counts.received} (forwarded {counts.forwarded}), faults injected "
            f"{counts.injected} {dict(counts.faults)}, results kept {kept}/{total}, failed reported {len(failures)}{reasons}, "
            f"cache lines {lines}, duplicates {duplicates}")
    print(line)
    return line


def expected_retries(proxy: FaultProxy, match: str, attempts: int) -> None:
    arrivals = proxy.arrivals(match)
    assert len(arrivals) == attempts, f"{match!r}: {len(arrivals)} attempts, expected {attempts}"


def check_retry_spacing(proxy: FaultProxy, kind: str, match: str) -> None:
    """Retry-After is honoured; a held request is retried only after the client's timeout."""
    first, second = proxy.arrivals(match)[:2]
    if kind == "429":
        assert second.at - first.at >= 0.9 * RETRY_AFTER_S
    if kind == "delay":
        assert second.at - first.at >= 0.9 * TIMEOUT_S


# --------------------------------------------------------------------------------------------
# the judge

JUDGE_EXAMPLES = [
    {"id": "q1", "instruction": "What is the capital of France?", "input": "",
     "candidates": [{"model": "m1", "text": "Paris is the capital of France."}, {"model": "m2", "text": "I like turtles."}]},
    {"id": "q2", "instruction": "Which planet is the largest?", "input": "",
     "candidates": [{"model": "m1", "text": "Jupiter is the largest planet."}, {"model": "m2", "text": "Bananas are yellow."}]},
]
TRANSIENT_J = "Candidate A: I like turtles"  # q1, order m2,m1: a fault that clears within the client's retries
PERSISTENT_J = "Candidate A: Jupiter"  # q2, order m1,m2: a fault that outlasts them


def run_judge(proxy: FaultProxy, model: str, path: Path):
    examples = copy.deepcopy(JUDGE_EXAMPLES)
    judge = OpenAIJudge(model, base_url=proxy.base_url, max_tokens=4, max_concurrency=2, timeout=TIMEOUT_S, max_retries=MAX_RETRIES)
    return examples, judge_examples(examples, judge, JsonlCache.open(path), progress=False)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_judge_keeps_results_reports_failures_and_a_rerun_fills_them(kind, served, proxy, tmp_path):
    path = tmp_path / "judgments.jsonl"
    if kind in RETRIED_BY_CLIENT:
        proxy.set_plan(Fault(kind, TRANSIENT_J, times=1), Fault(kind, PERSISTENT_J, times=ALWAYS))
    else:  # a reply arrived: the client does not retry it
        proxy.set_plan(Fault(kind, TRANSIENT_J, times=ALWAYS))
    examples, stats = run_judge(proxy, served.model, path)
    kept = len(JsonlCache.open(path).entries)
    figure(f"judge/{kind}", proxy, kept, stats.requests, path, stats.failures)
    assert stats.requests == 4 and cache_figures(path)[1] == 0
    received, injected = proxy.counts.received, proxy.counts.injected
    assert proxy.counts.forwarded == received - injected + (injected if kind in FORWARDED else 0)

    if kind == "off_format":  # a reply, not a failure: cached as an unparseable verdict, never re-asked
        assert stats.failed_requests == 0 and not stats.failures and stats.unparseable >= 1 and kept == 4
        assert examples[0]["cmp_results_raw"]["m2,m1"] is None
        assert OFF_FORMAT_TEXT in {row["raw"] for row in JsonlCache.open(path).entries.values()}
        assert received == 4 and injected == 1
        missing = 0
    elif kind in RETRIED_BY_CLIENT:
        assert received == 4 + 1 + MAX_RETRIES and injected == 1 + 1 + MAX_RETRIES
        expected_retries(proxy, TRANSIENT_J, 2)  # failed once, then answered
        expected_retries(proxy, PERSISTENT_J, 1 + MAX_RETRIES)  # bounded
        check_retry_spacing(proxy, kind, TRANSIENT_J)
        assert stats.failed_requests == 1 and kept == 3 and len(stats.failures) == 1
        assert stats.failures[0].startswith("m1,m2 of 'q2': ") and REASONS[kind] in stats.failures[0], stats.failures
        assert set(examples[0]["cmp_results_raw"]) == {"m1,m2", "m2,m1"}  # the transient fault lost nothing
        assert set(examples[1]["cmp_results_raw"]) == {"m2,m1"} and examples[1]["cmp_results"] == {}
        missing = 1
    else:
        assert received == 4 and injected == 1  # not retried: the reply arrived, it is just broken
        assert stats.failed_requests == 1 and kept == 3
        assert stats.failures[0].startswith("m2,m1 of 'q1': ") and REASONS[kind] in stats.failures[0], stats.failures
        assert set(examples[0]["cmp_results_raw"]) == {"m1,m2"} and examples[0]["cmp_results"] == {}
        missing = 1

    proxy.healthy()
    again, rerun = run_judge(proxy, served.model, path)
    figure(f"judge/{kind} rerun", proxy, len(JsonlCache.open(path).entries), rerun.requests, path, rerun.failures)
    assert proxy.counts.received == missing and rerun.from_cache == 4 - missing and rerun.failed_requests == 0
    assert cache_figures(path) == (4, 0)
    assert all(len(ex["cmp_results_raw"]) == 2 for ex in again)


# --------------------------------------------------------------------------------------------
# generation

PROMPTS = [f"Name one animal whose name starts with the letter {letter}." for letter in "BCD"]
TRANSIENT_G = "letter B."
PERSISTENT_G = "letter C."


def run_generation(proxy: FaultProxy, model: str, path: Path):
    config = CandidateConfig(name="served-greedy", model=model, max_new_tokens=4)
    backend = OpenAIBackend(base_url=proxy.base_url, max_concurrency=2, timeout=TIMEOUT_S, max_retries=MAX_RETRIES)
    # batch_size=2: batches [B, C] and [D]; a failure in the first must not stop the second.
    return generate_with_cache(backend, config, PROMPTS, GenerationCache.open(path), batch_size=2, progress=False)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_generation_keeps_results_reports_failures_and_a_rerun_fills_them(kind, served, proxy, tmp_path):
    path = tmp_path / "generations.jsonl"
    if kind in RETRIED_BY_CLIENT:
        proxy.set_plan(Fault(kind, TRANSIENT_G, times=1), Fault(kind, PERSISTENT_G, times=ALWAYS))
        failing = PERSISTENT_G
    else:
        proxy.set_plan(Fault(kind, TRANSIENT_G, times=ALWAYS))
        failing = TRANSIENT_G
    if kind == "off_format":  # any text is a generation: kept as it came
        outputs, stats = run_generation(proxy, served.model, path)
        figure(f"generation/{kind}", proxy, stats.generated, len(PROMPTS), path, stats.failures)
        assert stats.failed == 0 and stats.generated == 3 and outputs[0].text == OFF_FORMAT_TEXT
        assert proxy.counts.received == 3 and cache_figures(path) == (3, 0)
        missing = 0
        first_texts = {p: g.text for p, g in zip(PROMPTS, outputs)}
    else:
        with pytest.raises(IncompleteGeneration, match="1 of 3 generation request") as info:
            run_generation(proxy, served.model, path)
        error = info.value
        assert error.stats is not None
        figure(f"generation/{kind}", proxy, error.stats.generated, len(PROMPTS), path, error.failures)
        assert error.stats.failed == 1 and len(error.failures) == 1 and REASONS[kind] in error.failures[0], error.failures
        assert error.stats.generated == 2 and cache_figures(path) == (2, 0)
        assert [r is None for r in error.results] == [failing in p for p in PROMPTS]  # aligned with the prompts
        if kind in RETRIED_BY_CLIENT:
            assert proxy.counts.received == 3 + 1 + MAX_RETRIES and proxy.counts.injected == 1 + 1 + MAX_RETRIES
            expected_retries(proxy, TRANSIENT_G, 2)
            expected_retries(proxy, PERSISTENT_G, 1 + MAX_RETRIES)
            check_retry_spacing(proxy, kind, TRANSIENT_G)
        else:
            assert proxy.counts.received == 3 and proxy.counts.injected == 1
        missing = 1
        first_texts = {p: g.text for p, g in zip(PROMPTS, error.results) if g is not None}

    proxy.healthy()
    outputs, rerun = run_generation(proxy, served.model, path)
    figure(f"generation/{kind} rerun", proxy, rerun.generated + rerun.from_cache, len(PROMPTS), path, rerun.failures)
    assert proxy.counts.received == missing and rerun.generated == missing and rerun.from_cache == 3 - missing
    assert cache_figures(path) == (3, 0) and all(g.text for g in outputs)
    assert all(g.text == first_texts[p] for p, g in zip(PROMPTS, outputs) if p in first_texts)  # cached ones unchanged


# --------------------------------------------------------------------------------------------
# servers: loopback only, always stopped (this test stops the module's server: it must stay last)


def listening_addresses(process: psutil.Process, port: int) -> set[str]:
    return {c.laddr.ip for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_proxy_and_server_bind_loopback_only_and_the_server_stops_when_the_body_raises(served, proxy):
    server = served.server
    assert server.process is not None and server.base_url.startswith("http://127.0.0.1:")
    assert listening_addresses(psutil.Process(server.process.pid), server.port) == {"127.0.0.1"}
    assert listening_addresses(psutil.Process(), proxy.address[1]) == {"127.0.0.1"}
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for address in others:  # the ports are unreachable through this machine's other addresses
        for port in (server.port, proxy.address[1]):
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass
    print(f"[servers] server 127.0.0.1:{server.port}, proxy 127.0.0.1:{proxy.address[1]}; "
          f"refused on {len(others)} other address(es)")

    process, port = server.process, server.port
    # A real `with` body that raises through the (already entered) server, as a failing notebook cell would.
    with pytest.raises(RuntimeError, match="a failing cell"), contextlib.ExitStack() as stack:
        stack.push(server)
        raise RuntimeError("a failing cell")
    assert process.poll() is not None and server.process is None
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # nothing listens on its port any more
