"""Kill-and-resume (issue 8, part 2): a real SIGKILL midway, then a rerun.

Training: a child process trains a tiny ZOOTER router (``zooter.train_router`` on a locally built tiny
BERT, through ``blender_lib.training`` with its per-epoch checkpoints) and is SIGKILLed at three
points: mid-epoch, inside an epoch checkpoint (a ``.epoch-K.partial`` folder is left), and inside the
swap of ``best`` (only ``.best.old`` is left). The rerun resumes from the last completed epoch recorded
in ``state.json`` and ends exactly where an uninterrupted run ends: same best epoch, same losses, same
routing probabilities.

Dataset building: a child appends rows to a ``blender_lib.io.JsonlCache`` and is SIGKILLed twice (once
at a random point, once in the middle of a write, so a line is cut short), and a child judging
examples through ``judge.judge_examples`` is SIGKILLed midway. Reruns finish with every row exactly once.

Where a kill must land at a precise point the child waits there (a patched write that sleeps, a slowed
batch); the kill itself is always a real SIGKILL of a separate process. Each test prints one line of
figures. Heavy imports happen in functions, so a child that imports this module to share its data stays
light.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import save_tiny_models

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
DEADLINE = 120.0  # seconds a child may take to reach its kill point on a loaded machine

MODELS = ["alpha", "beta", "gamma"]
MATH = ["what is two plus three", "add seven and one", "what is nine minus four", "multiply six by two",
        "what is five plus five", "subtract three from eight"]
POEMS = ["write a poem about the sea", "compose a short poem about rain", "write a haiku about winter",
         "a poem about the moon please", "write verses about love", "compose a poem about trees"]
HELD_OUT = [("what is four plus six", "math"), ("add nine and two", "math"), ("write a haiku about rain", "poem"),
            ("compose verses about the sea", "poem")]


# --------------------------------------------------------------------------------------------
# shared with the child processes (they import this module)


def router_example(ex_id: str, query: str, tag: str, n: int) -> dict:
    best, worst = 0.9 - 0.1 * (n % 3), 0.1 + 0.05 * (n % 2)
    scores = [best, 0.5, worst] if tag == "math" else [worst, 0.5, best]
    return {"id": ex_id, "instruction": query, "input": "", "output": f"the answer to {query}", "tags": [tag],
            "candidates": [{"model": m, "text": f"{m} answers {query}", "scores": {"bertscore": s}}
                           for m, s in zip(MODELS, scores)]}


def router_data() -> dict[str, Any]:
    """Training and validation examples and their labels (alpha is best at math, gamma at poems)."""
    from blender_lib import zooter as Z

    train = [router_example(f"train-{n}", q, tag, n)
             for n, (q, tag) in enumerate(p for m, q in zip(MATH, POEMS) for p in ((m, "math"), (q, "poem")))]
    val = [router_example(f"val-{n}", q, tag, n) for n, (q, tag) in enumerate(HELD_OUT)]
    labels = Z.enhance_labels(Z.reward_labels(Z.metric_rewards(train, "bertscore"), 0.5), Z.data_tags(train), 0.3)
    labels_val = Z.reward_labels(Z.metric_rewards(val, "bertscore"), 0.5)
    return {"train": train, "val": val, "labels": labels, "labels_val": labels_val}


def router_config(encoder: str, epochs: int) -> Any:
    from blender_lib import zooter as Z

    # head dropout on: a resume must restore the RNG too, not only the weights and the optimizer
    return Z.RouterConfig(backbone=encoder, source_max_length=16, epochs=epochs, batch_size=4, lr=3e-3,
                          warmup_ratio=0.0, seed=0, bf16=False, device="cpu", head_dropout=0.1)


def train(encoder: str, out_dir: str | Path, epochs: int) -> Any:
    from blender_lib import zooter as Z

    d = router_data()
    return Z.train_router(d["train"], d["val"], d["labels"], d["labels_val"], router_config(encoder, epochs),
                          out_dir, progress=False)


class HashJudge:
    """A cheap deterministic judge: the label is a hash of the prompt, about every fifth one unparseable."""

    name = "hash-judge"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.sent = delay, 0

    def judge(self, prompts: list[str]) -> list[Any]:
        from blender_lib.judge import LABELS, Verdict

        self.sent += len(prompts)
        time.sleep(self.delay * len(prompts))
        out = []
        for prompt in prompts:
            h = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            out.append(Verdict(label=None if h % 5 == 0 else LABELS[h % 4], raw=f"hash {h % 100}"))
        return out


def judge_examples_data() -> list[dict]:
    """12 examples of 3 candidates: 3 pairs, both orders, so 72 prompts."""
    return [{"id": f"j{n}", "instruction": f"question number {n}: what is {n} plus {n}?", "input": "",
             "output": str(2 * n), "candidates": [{"model": m, "text": f"{m} says {2 * n + k}"}
                                                 for k, m in enumerate(MODELS)], "cmp_results": {}}
            for n in range(12)]


# --------------------------------------------------------------------------------------------
# child processes


TRAIN_CHILD = r"""
import json, shutil, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_kill_resume as T
import torch
torch.set_num_threads(1)
from blender_lib import persistence as P, zooter as Z

mode, encoder, out, marker = sys.argv[2:6]
if mode == "mid-epoch":  # a slow disk or a big batch: every batch takes 0.3 s, so the kill lands inside an epoch
    collate = Z.RouterModel.collate
    def slow(self, items):
        time.sleep(0.3)
        return collate(self, items)
    Z.RouterModel.collate = slow
elif mode == "in-checkpoint":  # stop inside the checkpoint of epoch 2, before its folder is renamed into place
    write = Z.RouterModel._write
    def stuck(self, folder):
        write(self, folder)
        if Path(folder).parent.name == ".epoch-2.partial":
            Path(marker).write_text("in checkpoint")
            time.sleep(600)
    Z.RouterModel._write = stuck
elif mode == "in-publish":  # stop inside the swap of best: the old one moved aside, the new one not yet in
    replace_dir = P.replace_dir
    def stuck(staging, target):
        if target.name == "best" and target.exists():
            old = target.with_name(".best.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            Path(marker).write_text("in publish")
            time.sleep(600)
        replace_dir(staging, target)
    P.replace_dir = stuck
    T.train(encoder, out, 2)  # a finished 2-epoch run with its best published ...
report = T.train(encoder, out, 3)  # ... or a fresh one; asked for 3 epochs
print(json.dumps({"done": report.epochs_completed}))
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def start(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, str(TESTS_DIR), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))


def kill_when(process: subprocess.Popen, ready: Any, what: str) -> float:
    """Poll until ``ready()``; then SIGKILL the child. Returns the seconds it ran."""
    begin = time.monotonic()
    while not ready():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the child exited ({process.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() - begin > DEADLINE:
            process.kill()
            pytest.fail(f"the child did not reach {what} within {DEADLINE:.0f} s")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    return time.monotonic() - begin


def completed_epochs(out: Path) -> int:
    """The completed epochs state.json records; 0 before it exists. It must always parse (atomic writes)."""
    path = out / "state.json"
    if not path.exists():
        return 0
    return json.loads(path.read_text(encoding="utf-8"))["completed_epochs"]


# --------------------------------------------------------------------------------------------
# (a) training: SIGKILL at three points, resume, compare with an uninterrupted run


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> str:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = {w for text in [*MATH, *POEMS, *(q for q, _ in HELD_OUT)] for w in text.split()}
    dirs = save_tiny_models(tmp_path_factory.mktemp("tiny-kill"), specials + sorted(words), ("encoder",))
    return str(dirs["encoder"])


@pytest.fixture(scope="module")
def uninterrupted(encoder, tmp_path_factory) -> dict[str, Any]:
    """The references: one 3-epoch run, and a 2-epoch run continued to 3 (the in-publish child's calls)."""
    whole = tmp_path_factory.mktemp("whole")
    two_then_three = tmp_path_factory.mktemp("two-then-three")
    after_two = train(encoder, two_then_three, 2)
    best_after_two = probabilities(Path(after_two.best_dir))
    return {"whole": train(encoder, whole, 3), "two_then_three": train(encoder, two_then_three, 3),
            "best_after_two": best_after_two}


def probabilities(folder: Path) -> Any:
    from blender_lib import zooter as Z

    router = Z.RouterModel.from_pretrained(folder, device="cpu")
    return router.probabilities([*MATH[:3], *POEMS[:3], *(q for q, _ in HELD_OUT)])


@pytest.mark.slow  # a child process that imports torch and transformers: about 10 s each
@pytest.mark.parametrize("kill_point", ["mid-epoch", "in-checkpoint", "in-publish"])
def test_a_killed_router_training_resumes_to_what_an_uninterrupted_run_gives(kill_point, encoder, uninterrupted,
                                                                             tmp_path):
    import numpy as np

    out, marker = tmp_path / "run", tmp_path / "marker"
    child = start(TRAIN_CHILD, kill_point, encoder, str(out), str(marker))
    if kill_point == "mid-epoch":
        seconds = kill_when(child, lambda: completed_epochs(out) >= 1, "the first checkpoint")
    else:
        seconds = kill_when(child, marker.exists, kill_point)

    # What the kill left: state.json parses and points at a complete checkpoint; anything half-written
    # sits in a dot-folder that nothing reads.
    done = completed_epochs(out)
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert done >= 1 and (out / f"epoch-{done}" / "model" / "baseline.json").is_file()
    assert (out / f"epoch-{done}" / "train_state").is_dir()
    if kill_point == "in-checkpoint":
        assert done == 1 and ".epoch-2.partial" in leftovers and not (out / "epoch-2").exists()
    if kill_point == "in-publish":
        assert done == 3 and ".best.old" in leftovers and not (out / "best").exists()
        # a reader that asks for best meanwhile gets the previous complete one, never a half-swapped folder
        np.testing.assert_allclose(probabilities(out / "best"), uninterrupted["best_after_two"], rtol=0, atol=1e-6)

    resumed = train(encoder, out, 3)
    reference = uninterrupted["two_then_three" if kill_point == "in-publish" else "whole"]
    assert resumed.resumed_from_epoch == done and resumed.epochs_completed == 3
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the leftovers were cleared
    assert resumed.best_epoch == reference.best_epoch
    assert resumed.train_loss == pytest.approx(reference.train_loss, rel=1e-6, abs=1e-7)
    assert [v["top1_mean_metric_rank"] for v in resumed.val] == [v["top1_mean_metric_rank"] for v in reference.val]
    after, before = probabilities(Path(resumed.best_dir)), probabilities(Path(reference.best_dir))
    gap = float(np.abs(after - before).max())
    assert gap <= 1e-6
    print(f"\n[kill-resume] router training, SIGKILL {kill_point} {seconds:.1f} s after the child started: state.json completed_epochs="
          f"{done}, left {leftovers or 'nothing'}; resumed from epoch {resumed.resumed_from_epoch}, trained "
          f"{3 - resumed.resumed_from_epoch} epoch(s); best epoch {resumed.best_epoch} (uninterrupted "
          f"{reference.best_epoch}); max |prob difference| on 10 queries {gap:.1e}")


# --------------------------------------------------------------------------------------------
# (b) dataset building: an append-only cache and judge_examples


CACHE_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import blender_lib.io as io_mod
from blender_lib.io import JsonlCache

path, n_rows, batch, tear = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "tear"

class TornWrite:  # a slow disk: the first batch this process appends stops half-written
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)
    def write(self, text):
        half = len(text) // 2
        self.handle.write(text[:half])
        self.handle.flush()
        os.fsync(self.handle.fileno())
        print("torn", flush=True)
        time.sleep(600)
        self.handle.write(text[half:])
    def __getattr__(self, name):
        return getattr(self.handle, name)

if tear:
    io_mod.open = lambda *a, **k: TornWrite(open(*a, **k))

cache = JsonlCache.open(path)
print(json.dumps({"rows_at_start": len(cache.entries), "truncated_lines": cache.truncated_lines}), flush=True)
for start in range(0, n_rows, batch):
    rows = [{"key": f"row-{i:04d}", "value": i, "text": f"generated text number {i} " * 3}
            for i in range(start, min(start + batch, n_rows))]
    if all(cache.get(r["key"]) for r in rows):
        continue  # built before the kill
    cache.add_batch(rows)
    time.sleep(0.02)
print(json.dumps({"rows": len(cache.entries)}), flush=True)
"""


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def complete_rows(path: Path) -> int:
    return sum(1 for line in lines_of(path)[:-1] if line.strip())  # every line but a cut-off tail


def test_an_append_only_cache_killed_twice_ends_with_every_row_once(tmp_path):
    from blender_lib.io import JsonlCache

    n_rows, batch = 400, 7
    path = tmp_path / "rows.jsonl"

    # kill 1: at a random point of the build
    child = start(CACHE_CHILD, str(path), str(n_rows), str(batch), "plain")
    kill_when(child, lambda: path.exists() and complete_rows(path) >= 60, "60 rows")
    after_first_kill = complete_rows(path)
    assert after_first_kill < n_rows, "the first kill must land midway"

    # kill 2: in the middle of a write, so the last line is cut short
    child = start(CACHE_CHILD, str(path), str(n_rows), str(batch), "tear")
    kill_when(child, lambda: child.stdout.readline().strip() == "torn", "a torn write")
    tail = lines_of(path)[-1]
    assert tail and not path.read_bytes().endswith(b"\n"), "the second kill must leave a line cut short"
    before_resume = complete_rows(path)

    # resume: the cut line is dropped and counted, the rest is kept, and the build finishes
    reopened = JsonlCache.open(path)
    truncated = reopened.truncated_lines
    assert truncated == 1 and len(reopened.entries) == before_resume
    assert path.read_bytes().endswith(b"\n")  # rewritten without the broken tail before any append
    child = start(CACHE_CHILD, str(path), str(n_rows), str(batch), "plain")
    _, err = child.communicate(timeout=DEADLINE)
    assert child.returncode == 0, err[-2000:]

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    keys = [r["key"] for r in rows]
    duplicates = len(keys) - len(set(keys))
    missing = sorted({f"row-{i:04d}" for i in range(n_rows)} - set(keys))
    print(f"\n[kill-resume] JsonlCache build of {n_rows} rows: {after_first_kill} rows written before kill 1, "
          f"{before_resume} complete rows + 1 cut line before kill 2 was resumed, truncated lines dropped "
          f"{truncated}, rows after resume {len(rows)}, duplicates {duplicates}, missing {len(missing)}")
    assert duplicates == 0 and not missing and len(rows) == n_rows
    assert all(r["value"] == int(r["key"][4:]) for r in rows)  # each row intact, none half-merged with another


JUDGE_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import test_kill_resume as T
from blender_lib.io import JsonlCache
from blender_lib.judge import judge_examples

judge_examples(T.judge_examples_data(), T.HashJudge(delay=0.05), JsonlCache.open(sys.argv[2]), chunk_size=6,
               progress=False)
print("finished", flush=True)
"""


def test_judging_killed_midway_resumes_without_repeating_or_losing_a_verdict(tmp_path):
    from blender_lib.io import JsonlCache
    from blender_lib.judge import judge_examples

    path = tmp_path / "judgments.jsonl"
    child = start(JUDGE_CHILD, str(path))
    kill_when(child, lambda: path.exists() and complete_rows(path) >= 18, "18 verdicts")
    before = complete_rows(path)
    total = 12 * 3 * 2
    assert before < total, "the kill must land midway"

    cache = JsonlCache.open(path)
    cached = len(cache.entries)
    assert cached == before
    resumed_examples, judge = judge_examples_data(), HashJudge()
    stats = judge_examples(resumed_examples, judge, cache, chunk_size=6, progress=False)
    reference_examples = judge_examples_data()
    reference = judge_examples(reference_examples, HashJudge(), JsonlCache.open(tmp_path / "whole.jsonl"),
                               chunk_size=6, progress=False)

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    keys = [r["key"] for r in rows]
    duplicates = len(keys) - len(set(keys))
    print(f"\n[kill-resume] judge_examples of {total} ordered pairs: {before} verdicts written before the kill, "
          f"truncated lines dropped {cache.truncated_lines}, from cache on resume {stats.from_cache}, requests sent "
          f"on resume {judge.sent}, rows after resume {len(rows)}, duplicates {duplicates}, unparseable "
          f"{stats.unparseable} (uninterrupted run: {reference.unparseable})")
    assert stats.requests == total and stats.from_cache == cached
    assert judge.sent == total - stats.from_cache  # only what the kill had not finished
    assert duplicates == 0 and len(set(keys)) == total
    assert [ex["cmp_results"] for ex in resumed_examples] == [ex["cmp_results"] for ex in reference_examples]
    assert [ex["cmp_results_raw"] for ex in resumed_examples] == [ex["cmp_results_raw"] for ex in reference_examples]
    assert (stats.unparseable, stats.pairs_without_verdict) == (reference.unparseable, reference.pairs_without_verdict)
