"""benchmarks/run_all.py: the FLOPs/MFU arithmetic, the report's JSON and Markdown, and one cheap part run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import run_all  # noqa: E402


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.4), ("NVIDIA GH200 480GB", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 366.0),
    ("Tesla T4", None), ("", None), (None, None),
])
def test_peak_bf16_table(name: str | None, peak: float | None) -> None:
    assert run_all.peak_bf16_tflops(name) == peak


def test_flops_and_mfu_arithmetic() -> None:
    assert run_all.training_flops(1_000_000, 1_000) == 6e9  # 6 x parameters x tokens
    assert run_all.training_flops(0, 10) == 0.0
    with pytest.raises(ValueError):
        run_all.training_flops(-1, 10)
    # 110M parameters at 100k tokens/s = 6.6e13 FLOP/s; an A100's 312 TFLOPS bf16 peak -> 21.15 %
    assert run_all.mfu(110_000_000, 100_000, 312.0) == pytest.approx(6.6e13 / 3.12e14)
    assert run_all.mfu(110_000_000, 100_000, 312.0) == pytest.approx(0.21154, abs=1e-5)
    assert run_all.mfu(110_000_000, 100_000, None) is None  # a CPU: no peak, no MFU
    fig = run_all.flops_figures(11_091_075, 2_000.0, "NVIDIA H100 80GB HBM3")
    assert fig["peak_bf16_dense_tflops"] == 989.4
    assert fig["model_tflops_per_second"] == pytest.approx(6 * 11_091_075 * 2_000 / 1e12, abs=1e-4)
    assert fig["mfu"] == pytest.approx(6 * 11_091_075 * 2_000 / 989.4e12, abs=1e-5)
    cpu = run_all.flops_figures(11_091_075, 2_000.0, None)
    assert cpu["mfu"] is None and cpu["model_tflops_per_second"] > 0 and "CPU" in cpu["mfu_note"]


def test_select_parts_and_sizes() -> None:
    assert run_all.select_parts([], False, has_cuda=False) == ["generation_judge", "pairranker", "router", "fuser",
                                                                "chapters"]
    assert "pairranker_device" in run_all.select_parts([], False, has_cuda=True)
    assert run_all.select_parts(["fuser,router"], True, has_cuda=False) == ["router", "fuser"]
    assert run_all.select_parts(["pairranker_device"], True, has_cuda=False) == ["pairranker_device"]
    for bad in (["nope"], ["chapters"]):
        with pytest.raises(SystemExit):
            run_all.select_parts(bad, True, has_cuda=False)
    full, quick, gpu = (run_all.sizes_for(q, c) for q, c in ((False, False), (True, False), (False, True)))
    assert set(full) == set(quick) == set(run_all.PARTS)
    assert quick["generation_judge"]["prompts"] < full["generation_judge"]["prompts"]
    assert gpu["pairranker_device"]["train_batch_size"] > full["pairranker_device"]["train_batch_size"]


def test_cache_written(tmp_path: Path) -> None:
    (tmp_path / "baselines" / "router-a").mkdir(parents=True)
    (tmp_path / "judge-server-1.log").write_text("x")
    before = run_all.cache_snapshot(tmp_path)
    assert "judge-server-1.log" not in before
    os.utime(tmp_path / "baselines", ns=(1, 1))
    (tmp_path / "baselines" / "router-b").mkdir()
    (tmp_path / ".locks").mkdir()
    (tmp_path / "judge-server-2.log").write_text("x")
    assert run_all.cache_written(before, run_all.cache_snapshot(tmp_path)) == ["baselines/router-b"]
    assert run_all.cache_written(before, before) == []


def _report() -> dict:
    fig = run_all.figure
    return {
        "command": "benchmarks/run_all.py", "mode": "full", "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:10:00+00:00", "total_seconds": 600.0, "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [2.0, 1.5, 1.0], "notes": ["a note"],
        "machine": {"cpu_model": "Some CPU", "cpu_count": 2, "torch_threads": 2, "torch": "2", "memory_gib": 8.0,
                    "gpu": None},
        "parts": {
            "router": {"status": "ok", "peak_rss_mib": 600.0,
                       "figures": [fig("router", "ZOOTER router, batch 64", 120.5, "queries/s", device="cpu",
                                       dtype="float32")]},
            "pairranker": {"status": "skipped", "reason": "no venv"},
            "chapters": {"status": "ok", "peak_rss_mib": 900.0, "total_seconds": 30.5, "all_ok": True,
                         "how": "How.", "notes": ["Warm.", "Nothing written."],
                         "chapters": [{"chapter": "02_explore", "seconds": 30.5, "status": "ok", "peak_rss_mib": 900.0,
                                       "wrote_to_cache": [], "cache_entries_written": 0}],
                         "figures": [fig("chapters", "chapter 02_explore", 30.5, "s")]},
        },
    }


def test_report_files(tmp_path: Path) -> None:
    report = _report()
    run_all.write_report(report, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [f["figure"] for f in data["figures"]] == ["ZOOTER router, batch 64", "chapter 02_explore"]
    md = (tmp_path / "results.md").read_text()
    assert "| router | ZOOTER router, batch 64 | 120.5 | queries/s | cpu, float32 | 600 |" in md
    assert "| 02_explore | 30.5 | ok | nothing | 900 |" in md
    assert "**whole book** | **30.5** (0.5 min)" in md
    assert "**pairranker** skipped: no venv" in md and "Some CPU, 2 cores" in md


@pytest.mark.slow
def test_run_all_quick_router(tmp_path: Path) -> None:
    """The real command on its cheapest part: a cached (or freshly trained small) router."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONHASHSEED="0")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--skip-chapters",
                          "--only", "router", "--out-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["mode"] == "quick" and data["parts_run"] == ["router"]
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch_threads"] >= 1 and data["machine"]["cpu_model"]
    assert len(data["load_average_before"]) == 3 and len(data["load_average_after"]) == 3
    assert data["started"] <= data["finished"]
    part = data["parts"]["router"]
    assert part["status"] == "ok" and part["peak_rss_mib"] > 100 and part["seconds"] > 0
    units = {f["unit"] for f in data["figures"]}
    assert units == {"queries/s"} and all(f["value"] > 0 for f in data["figures"])
    assert "| router | ZOOTER router" in (tmp_path / "results.md").read_text()
