"""Results of a benchmark run: ratios against the floor, targets, JSON, histogram PNG, text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._drive import PhaseResult

#: The issue's targets, checked on every run (they are meant for 1,000 agents and 30 s).
TARGETS: dict[str, tuple[str, str, float]] = {
    # name: (path in the report, comparison, bound)
    "single_median_vs_floor": ("single.ratios.p50", "<=", 2.0),
    "load_throughput_per_s": ("load.system.throughput_per_s", ">=", 1000.0),
    "load_success_rate": ("load.system.success_rate", ">=", 0.9999),
    "load_p99_ms": ("load.system.p99_ms", "<=", 100.0),
    "load_throughput_vs_floor": ("load.ratios.throughput", ">=", 0.5),
    "idle_rss_mb": ("idle_footprint.rss_max_mb", "<", 60.0),
    "idle_cpu_percent": ("idle_footprint.cpu_percent", "<", 0.5),
}


def ratios(system: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """System / floor for throughput and each latency figure."""
    out: dict[str, float | None] = {}
    for key, name in [
        ("throughput_per_s", "throughput"),
        ("p50_ms", "p50"),
        ("p95_ms", "p95"),
        ("p99_ms", "p99"),
        ("max_ms", "max"),
    ]:
        s, f = system.get(key), floor.get(key)
        out[name] = round(s / f, 3) if s is not None and f else None
    return out


def _lookup(report: dict[str, Any], path: str) -> Any:
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (path, op, bound) in TARGETS.items():
        value = _lookup(report, path)
        met = None
        if isinstance(value, int | float):
            met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
        out[name] = {"value": value, "target": f"{op} {bound:g}", "met": met}
    return out


def write_histogram(path: Path, phases: dict[str, dict[str, PhaseResult]]) -> None:
    """Latency histograms, system over floor, one panel per mode (log-spaced bins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = [m for m in ("load", "single") if phases.get(m)]
    fig, axes = plt.subplots(len(modes) or 1, 1, figsize=(9, 3.6 * max(1, len(modes))))
    axes = np.atleast_1d(axes)
    for ax, mode in zip(axes, modes, strict=False):
        results = phases[mode]
        values = [v for r in results.values() for v in r.latencies_ms if v > 0]
        if not values:
            continue
        bins = np.geomspace(max(min(values), 0.01), max(values) * 1.01, 80)
        for label, result in results.items():
            s = result.summary()
            ax.hist(
                result.latencies_ms,
                bins=bins,
                alpha=0.55,
                label=f"{label}: n={s['ok']}, p50 {s.get('p50_ms')} ms, p99 {s.get('p99_ms')} ms",
            )
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("requests")
        conc = next(iter(results.values())).concurrency
        ax.set_title(f"{mode}: concurrency {conc}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def text_summary(report: dict[str, Any]) -> str:
    lines = []
    for mode in ("load", "single"):
        section = report.get(mode)
        if not section:
            continue
        lines.append(f"== {mode} ==")
        lines.append(
            f"{'':8} {'req':>7} {'ok%':>8} {'rps':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
        )
        for name in ("system", "floor"):
            s = section.get(name)
            if not s:
                continue
            lines.append(
                f"{name:8} {s['requests']:>7} {s['success_rate'] * 100:>8.3f} "
                f"{s['throughput_per_s']:>8.1f} {_ms(s, 'p50_ms')} {_ms(s, 'p95_ms')} "
                f"{_ms(s, 'p99_ms')} {_ms(s, 'max_ms')}"
            )
        for name in ("system", "floor"):
            cpu = (section.get(name) or {}).get("cpu_percent")
            if cpu:
                lines.append(f"{name} CPU%: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
                per = section[name]["cpu_ms_per_request"] or {}
                lines.append(
                    f"{name} CPU ms/request: " + ", ".join(f"{k} {v}" for k, v in per.items())
                )
        if section.get("ratios"):
            r = section["ratios"]
            lines.append(
                "system/floor: " + ", ".join(f"{k} {v}" for k, v in r.items() if v is not None)
            )
    wire = report.get("wire")
    if wire:
        lines.append(
            f"agent replies per test print: {wire['replies_per_print']} "
            f"({wire['replies_published']} published, {wire['replies_folded']} progress replies "
            "replaced by their final before they left)"
        )
    idle = report.get("idle_footprint")
    if idle:
        lines.append(
            f"== idle agent ({idle['seconds']:g} s) == RSS max {idle['rss_max_mb']} MB, "
            f"CPU {idle['cpu_percent']} %"
        )
    lines.append("== targets ==")
    for name, t in report.get("targets", {}).items():
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"{name:28} {t['value']!s:>12} {t['target']:>10}  {mark}")
    return "\n".join(lines)


def _ms(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"
