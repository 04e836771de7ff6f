"""``benchmarks/results/REPORT.md`` and its plots, from the JSON files ``make bench`` writes.

    python -m benchmarks.report [--results benchmarks/results]

Every figure is set against its target (issue 8's load targets, issue 5's planner targets, issue 21's
several-server targets), with the
pure-Python baselines (``CUMULO_CODEC=python`` for the fleet, ``CUMULO_PLANNER=python`` for deploys)
beside them. Plots (PNG, matplotlib): hosts Up over time in both storms, and the deploy latency
distribution. A missing result file leaves its rows out and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

Target = tuple[str, str, str, Callable[[float], bool], str]  # file, key, label, meets, target text

TARGETS: list[Target] = [
    ("fleet", "all_up_s", "10,000 agents Up over TLS, cold start (s)", lambda v: v <= 15, "≤ 15"),
    ("fleet", "restart_all_up_s", "10,000 agents Up over TLS after a restart (s)", lambda v: v <= 15, "≤ 15"),
    ("fleet", "rss_per_agent_kb", "server memory per TLS connection (KB)", lambda v: v <= 16, "≤ 16"),
    ("fleet", "cold_server_cpu_ms_per_agent", "server CPU per agent in the cold storm, TLS (ms)",
     lambda v: True, "—"),
    ("fleet-tcp", "all_up_s", "10,000 agents Up over plain TCP, cold start (s)", lambda v: v <= 10, "≤ 10"),
    ("fleet-tcp", "restart_all_up_s", "... after a restart (s)", lambda v: v <= 10, "≤ 10"),
    ("fleet-tcp", "rss_per_agent_kb", "server memory per plain connection (KB)", lambda v: v <= 10, "≤ 10"),
    ("fleet-tcp", "ping_p99_ms", "ping round trip p99 over plain TCP (ms)", lambda v: v <= 5, "≤ 5"),
    ("fleet-tcp", "cold_server_cpu_ms_per_agent", "server CPU per agent in the cold storm, TCP (ms)",
     lambda v: True, "—"),
    ("fleet-tcp", "server_cpu_us_per_ping", "server CPU per ping at steady state, TCP (µs)",
     lambda v: v <= 25, "≤ 25"),
    ("fleet-tcp", "fanout_s", "CheckHealth to all 10,000 over TCP, answered (s)", lambda v: v <= 1, "≤ 1"),
    ("fleet", "server_cpu_us_per_ping", "server CPU per ping at steady state, TLS (µs)", lambda v: v <= 25,
     "≤ 25"),
    ("fleet", "false_alerts", "hosts that went Alert", lambda v: v == 0, "0"),
    ("fleet", "ping_p50_ms", "ping round trip p50 at 1,000/s (ms)", lambda v: True, "—"),
    ("fleet", "ping_p99_ms", "ping round trip p99 at 1,000/s (ms)", lambda v: v <= 5, "≤ 5"),
    ("fleet", "fanout_s", "CheckHealth to all 10,000, all answered (s)", lambda v: v <= 1, "≤ 1"),
    ("deploy", "deploys_per_s", "deploys/s, API call to Running, 1,000 hosts", lambda v: v >= 500, "≥ 500"),
    ("deploy", "p50_ms", "deploy latency p50 (ms)", lambda v: True, "—"),
    ("deploy", "p99_ms", "deploy latency p99 (ms)", lambda v: v <= 250, "≤ 250"),
    ("deploy", "db_statements_per_deploy", "database statements per deploy", lambda v: v <= 10, "≤ 10"),
    ("deploy", "overcommits", "hosts over their capacity", lambda v: v == 0, "0"),
    ("deploy", "duplicate_ips", "addresses given twice", lambda v: v == 0, "0"),
    ("deploy", "server_cpu_ms_per_deploy", "server CPU per deploy (ms)", lambda v: True, "—"),
    ("deploy-postgresql", "deploys_per_s", "deploys/s on PostgreSQL", lambda v: v >= 500, "≥ 500"),
    ("deploy-postgresql", "p99_ms", "deploy latency p99 on PostgreSQL (ms)", lambda v: v <= 250, "≤ 250"),
    ("deploy-postgresql", "overcommits", "hosts over their capacity, PostgreSQL", lambda v: v == 0, "0"),
    ("deploy-postgresql", "duplicate_ips", "addresses given twice, PostgreSQL", lambda v: v == 0, "0"),
    ("cluster", "takeover_s", "3 servers: one killed, its agents Up elsewhere (s)", lambda v: v <= 30,
     "≤ 30"),
    ("cluster", "forward_rtt_p99_ms", "3 servers: API call forwarded to the host's server, p99 (ms)",
     lambda v: v <= 20, "≤ 20"),
    ("cluster", "jobs_lost", "3 servers: accepted jobs left pending after a kill", lambda v: v == 0, "0"),
    ("cluster", "deploys_per_s", "3 servers: deploys/s across their APIs, 3,000 hosts", lambda v: True, "—"),
    ("cluster-single", "deploys_per_s", "1 server, the same on PostgreSQL: deploys/s", lambda v: True, "—"),
    ("tenancy", "p99_ms", "domain admin, 500 VMs of 10,000 listed, p99 (ms)", lambda v: v <= 100, "≤ 100"),
]
BASELINES = {"fleet": "fleet-python-codec", "fleet-tcp": "fleet-tcp-python-codec",
             "deploy": "deploy-python-planner",
             "deploy-postgresql": "", "cluster": "", "cluster-single": "", "tenancy": ""}


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: Path) -> list[str]:
    lines = [
        "| figure | target | measured | met | pure-Python baseline |",
        "|---|---|---|---|---|",
    ]
    missing = set()
    for name, key, label, meets, target in TARGETS:
        data = load(results, name)
        if data is None:
            missing.add(name)
            continue
        base = load(results, BASELINES[name]) if BASELINES[name] else None
        value = data.get(key)
        met = "—" if target == "—" or value is None else ("yes" if meets(float(value)) else "**no**")
        lines.append(f"| {label} | {target} | {fmt(value)} | {met} | {fmt(base.get(key)) if base else '—'} |")
    planner = load(results, "planner")
    if planner is not None:
        native = planner["native"]
        fast = "yes" if native["decisions_per_s"] >= 10000 else "**no**"
        lines.append(
            f"| planner decisions/s, {planner['hosts']:,} hosts | ≥ 10,000 | "
            f"{native['decisions_per_s']:,.0f} | {fast} | "
            f"{planner['python']['decisions_per_s']:,.0f} |"
        )
        lines.append(
            f"| planner decision p99 (µs) | ≤ 200 | {native['p99_us']:,.0f} | "
            f"{'yes' if native['p99_us'] <= 200 else '**no**'} | {planner['python']['p99_us']:,.0f} |"
        )
    ha = load(results, "ha")
    if ha is not None:
        recover = ha.get("recover_s")
        met = "yes" if recover is not None and recover <= 30 and not ha["lost"] and not ha["duplicates"] \
            and not ha["false_downs"] else "**no**"
        lines.append(
            f"| HA: {ha['kill']} of {ha['hosts']} hosts killed, last VM back (s) | ≤ 30, 0 lost, 0 twice, "
            f"0 false Down | {recover} ({ha['lost']} lost, {ha['duplicates']} twice, "
            f"{ha['false_downs']} false Down) | {met} | — |"
        )
    else:
        missing.add("ha")
    codec = load(results, "codec")
    if codec is not None:
        scan = codec["ping"]["scan"]
        lines.append(
            f"| frame scans/s (ping frames) | — | {scan['native']:,.0f} | — | {scan['python']:,.0f} |"
        )
    boot = load(results, "guest-boot")
    if boot is not None:
        targets: tuple[tuple[str, str, float | None], ...] = (("KVM", "kvm", 3.0), ("TCG", "tcg", None))
        for label, key, goal in targets:
            run = boot[key]
            if run.get("runs"):
                value = (
                    f"{run['marker_median']:.2f} (min {run['marker_min']:.2f}, max {run['marker_max']:.2f})"
                )
                met = "—" if goal is None else ("yes" if run["marker_median"] <= goal else "**no**")
            else:
                value, met = f"no marker: {run.get('failed', '')}", "—" if goal is None else "**no**"
            lines.append(
                f"| real guest, deploy call to console marker, {label} (s) | "
                f"{'≤ 3' if goal else '—'} | {value} | {met} | — |"
            )
    else:
        missing.add("guest-boot")
    for name in sorted(missing):
        lines.append(f"| ({name}.json missing: run `make bench`) | | | | |")
    return lines


def plots(results: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib is not installed: no plots)"]
    made = []
    fleet, base = load(results, "fleet"), load(results, "fleet-python-codec")
    if fleet is not None and "storms" in fleet:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for data, label, style in ((fleet, "C codec", "-"), (base, "Python codec", "--")):
            if data is None or "storms" not in data:
                continue
            for storm, color in (("cold", "tab:blue"), ("restart", "tab:orange")):
                series = data["storms"][storm]
                ax.plot(
                    [t for t, _ in series],
                    [n for _, n in series],
                    style,
                    color=color,
                    label=f"{storm} start, {label}",
                )
        ax.set_xlabel("seconds")
        ax.set_ylabel("hosts Up")
        ax.set_title(f"{fleet['agents']:,} simulated agents coming Up")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(results / "fleet-storms.png", dpi=110)
        plt.close(fig)
        made.append("![hosts Up over time](fleet-storms.png)")
    deploy, dbase = load(results, "deploy"), load(results, "deploy-python-planner")
    if deploy is not None and deploy.get("latencies_ms"):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for data, label in ((deploy, "Cython planner"), (dbase, "Python planner")):
            if data is not None and data.get("latencies_ms"):
                ax.hist(data["latencies_ms"], bins=60, alpha=0.6, label=label)
        ax.set_xlabel("deployVirtualMachine to Running (ms)")
        ax.set_ylabel("VMs")
        ax.set_title(
            f"{deploy['vms']:,} deploys on {deploy['hosts']:,} hosts, {deploy['concurrency']} at once"
        )
        ax.legend()
        fig.tight_layout()
        fig.savefig(results / "deploy-latency.png", dpi=110)
        plt.close(fig)
        made.append("![deploy latency](deploy-latency.png)")
    return made


def render(results: Path) -> str:
    lines = [
        "# Benchmark report",
        "",
        "<!-- Written by `python -m benchmarks.report` (run by `make bench`); the figures come from the",
        "JSON files beside it. -->",
        "",
        f"Machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}. Commands: "
        "see [docs/benchmarks.md](../../docs/benchmarks.md).",
        "",
        *table(results),
        "",
        *plots(results),
        "",
    ]
    return "\n".join(lines)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    results = Path(args.results)
    (results / "REPORT.md").write_text(render(results))
    print(f"wrote {results / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
