"""The table `make bench` prints: each scenario beside its baseline, the issue's target and whether
it holds."""

from __future__ import annotations

from typing import Any

# scenario -> (baseline key, target ratio to it)
RATIO_TARGETS = {
    "trivial": ("trivial_rps", 0.8),
    "read": ("asyncpg_read_rps", 0.5),
    "list": ("asyncpg_list_rps", 0.5),
    "replay": ("asyncpg_read_rps", 0.5),
    "create_async": ("raw_create_rps", 0.6),
}
TAIL_TARGET = 3.0  # p99 <= 3 x p50 for trivial, read, list, replay


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def rows(results: dict[str, Any]) -> list[list[str]]:
    """scenario, req/s, p50, p99, p99/p50, baseline, its value, ratio, target, met."""
    base = results["baselines"]
    scenarios = results["scenarios"]
    out: list[list[str]] = []
    for name, figures in scenarios.items():
        rps, p50, p99 = figures["rps"], figures["p50_ms"], figures["p99_ms"]
        tail = p99 / p50 if p50 else float("nan")
        baseline, value, ratio, target, met = "", "", "", "", None
        cpu_ratio = ""
        if name in RATIO_TARGETS:
            key, goal = RATIO_TARGETS[name]
            runs = results.get("baseline_runs", {})
            beside = runs.get(f"{key}_beside_{name}") or runs.get(key) or {}
            reference = beside.get("rps") or base.get(key) or 0.0
            baseline, value = key, f"{reference:,.0f}"
            ratio = f"{rps / reference:.2f}" if reference else ""
            tail_goal = f", p99 <= {TAIL_TARGET:g} x p50" if name != "create_async" else ""
            target = f">= {goal} x{tail_goal}"
            met = bool(reference) and rps >= goal * reference
            if name != "create_async":
                met = met and tail <= TAIL_TARGET
            if beside.get("server_cpu_cores") and figures.get("server_cpu_cores"):
                # Requests per CPU-second of the server process, facade over baseline: what a busy
                # machine (the server not getting a whole core) moves least.
                mine = rps / figures["server_cpu_cores"]
                theirs = reference / beside["server_cpu_cores"]
                cpu_ratio = f"{mine / theirs:.2f}"
        elif name == "create_sync_c1":
            direct = base.get("direct_upstream_p50_ms")
            baseline, value = "direct_upstream_p50_ms", f"{direct:.2f} ms"
            target = "p50 <= direct + 5 ms"
            met = p50 <= direct + 5
        elif name == "create_sync_c32":
            target, met = ">= 300 req/s", rps >= 300
        out.append(
            [
                name,
                f"{rps:,.0f}",
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{tail:.1f}",
                baseline,
                value,
                ratio,
                cpu_ratio,
                target,
                _mark(met),
            ]
        )
    if "pgbench_create_tps" in base and "create_async" in scenarios:
        tps = base["pgbench_create_tps"]
        ratio = scenarios["create_async"]["rps"] / tps if tps else float("nan")
        out.append(
            [
                "create_async",
                "",
                "",
                "",
                "",
                "pgbench_create_tps",
                f"{tps:,.0f}",
                f"{ratio:.2f}",
                "",
                "-",
            ]
        )
    bound = base.get("bound_per_s")
    for name, goal in (("relay_drain", None), ("relay_latency", 0.9)):
        if name not in results:
            continue
        per_s = results[name]["commands_per_s"]
        run = results[name]
        label = name
        if not run.get("finished", True):
            label = (
                f"{name} ({run['delivered']:,} of {run['commands']:,} in {run['seconds']:.0f} s)"
            )
        else:
            label = f"{name} ({run['commands']:,})"
        if goal is None:
            out.append(
                [
                    label,
                    f"{per_s:,.0f}/s",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    ">= 2,000/s",
                    _mark(per_s >= 2000),
                ]
            )
        else:
            ratio = per_s / bound if bound else float("nan")
            out.append(
                [
                    label,
                    f"{per_s:,.0f}/s",
                    "",
                    "",
                    "",
                    "bound_per_s",
                    f"{bound:,.0f}",
                    f"{ratio:.2f}",
                    ">= 0.9 x",
                    _mark(ratio >= 0.9),
                ]
            )
    scale = results.get("store_scale")
    if scale:
        for kind in ("read", "list"):
            small, large = scale[f"{kind}_10k_rps"], scale[f"{kind}_1m_rps"]
            ratio = large / small if small else float("nan")
            # The same ratio with each figure taken over the raw app's at the same size and time:
            # what a machine that got busier or quieter between the two sizes moves less.
            raw_small = results["baselines"].get(f"asyncpg_{kind}_rps")
            raw_large = scale.get(f"asyncpg_{kind}_1m_rps")
            shown = f"{ratio:.2f}"
            if raw_small and raw_large and small:
                shown += f" ({(large / raw_large) / (small / raw_small):.2f} beside raw)"
            out.append(
                [
                    f"store_scale {kind} {scale['rows_large']:,}",
                    f"{large:,.0f}",
                    "",
                    "",
                    "",
                    f"{kind} at {scale['rows_small']:,}",
                    f"{small:,.0f}",
                    shown,
                    ">= 0.9 x",
                    _mark(ratio >= 0.9),
                ]
            )
    memory = results.get("memory")
    if memory:
        for name in ("api_rss_mb", "relay_rss_mb"):
            value = memory.get(name)
            text = "" if value is None else f"{value:.0f} MB"
            out.append(
                [
                    f"memory {name[:-7]}",
                    text,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "<= 150 MB",
                    _mark(None if value is None else value <= 150),
                ]
            )
    # Rows without a per-CPU ratio get an empty cell there.
    return [r if len(r) == len(HEAD) else [*r[:8], "", *r[8:]] for r in out]


HEAD = [
    "scenario",
    "req/s",
    "p50 ms",
    "p99 ms",
    "p99/p50",
    "baseline",
    "baseline value",
    "ratio",
    "ratio per CPU-s",
    "target",
    "met",
]


def markdown(results: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(results)]
    return "\n".join(lines)


def print_table(results: dict[str, Any]) -> None:
    table = [HEAD, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    for n, cells in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "\nserver and wrk CPU per scenario (cores; wrk well under 1.0 = the load generator was not "
        "the limit):"
    )
    for name, figures in results["scenarios"].items():
        print(
            f"  {name:<16} server {figures['server_cpu_cores']:.2f}  "
            f"wrk {figures['wrk_cpu_cores']:.2f}"
        )
    print("\nmarkdown:\n" + markdown(results))
