"""The benchmark's own code path, end to end in a few seconds, so it cannot rot: its broker, API,
simulated agents, floor responders, HTTP client, idle-footprint probe, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import bench


def test_short_bench_run_writes_sane_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--agents", "3", "--concurrency", "4", "--duration", "2", "--warmup", "0.5"]
    argv += ["--single", "40", "--idle-footprint", "--idle-seconds", "2", "--out", str(out)]
    assert bench.main(argv) == 0

    report = json.loads((out / "results.json").read_text())
    for mode, concurrency in (("load", 4), ("single", 1)):
        for side in ("system", "floor"):
            figures = report[mode][side]
            assert figures["concurrency"] == concurrency
            assert figures["ok"] > 0
            assert figures["errors"] == {}
            assert figures["success_rate"] == 1.0
            assert figures["throughput_per_s"] > 0
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert report[mode]["ratios"]["p50"] > 0
    assert report["single"]["system"]["ok"] == 40
    assert report["single"]["floor"]["ok"] == 40
    # Every 200 "printed" is exactly one job on a (simulated) printer; 3 warm-up prints included.
    integrity = report["integrity"]
    assert integrity["match"], integrity
    assert integrity["http_printed"] >= 3 + 40 + report["load"]["system"]["ok"]
    # The simulated agents' ledgers share one writer thread per process.
    assert report["sim_ledger_threads"] == 1
    assert report["floor_responders"]["answered"] >= report["load"]["floor"]["ok"] + 40
    idle = report["idle_footprint"]
    assert idle["seconds"] >= 2 and idle["rss_max_mb"] > 0 and idle["cpu_percent"] >= 0
    assert set(report["targets"]) >= {"load_p99_ms", "single_median_vs_floor", "idle_rss_mb"}
    assert report["full_size"] is False
    png = (out / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_bench_rejects_nonsense_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--agents", "0", "--out", str(tmp_path)]) == 2
    assert "at least 1" in capsys.readouterr().err
