"""``mnp bench fabric --report DIR``: ``report.html`` with PNG plots (matplotlib, headless), tables and facts.

Plots: ``latency.png`` and ``bandwidth.png`` (log-log against message size, one colour per path the messages
took: shm, tcp, efa; one line style per call path: C reference solid, numba dashed, mpi4py dotted; the band around
each line is the min-max over the repetitions) and ``md.png`` (ns/day against ranks: all on one node over shared
memory, and the same ranks across nodes). Tables hold the medians with min-max; the facts are the machine's and
mnp's decisions (transport and why, interface, /dev/shm).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bench.fabric import FabricResult
from bench.osu.runs import OsuFigures

__all__ = ["plot_md", "plot_osu", "write_report"]

COLOURS = {"shm": "#1b7837", "tcp": "#2166ac", "efa": "#b2182b"}
STYLES = {"c": "-", "numba": "--", "mpi4py": ":"}
MARKERS = {"c": "o", "numba": "s", "mpi4py": "^"}
PATH_NAMES = {"c": "C reference", "numba": "numba", "mpi4py": "mpi4py"}
WHERE = {"shm": "shared memory (1 node)", "tcp": "network, tcp (2 nodes)", "efa": "network, EFA (2 nodes)"}


def _size_label(n: float) -> str:
    n = int(n)
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1024 else f"{n} B"


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 9.5})
    return plt


def plot_osu(figs: list[OsuFigures], title: str, ylabel: str, out: Path) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=110)
    for f in figs:
        med = [g.median for g in f.figures]
        colour = COLOURS.get(f.transport, "#555555")
        ax.plot(f.sizes, med, STYLES.get(f.path, "-"), marker=MARKERS.get(f.path, "o"), markersize=4,
                color=colour, label=f"{WHERE.get(f.transport, f.transport)}, {PATH_NAMES.get(f.path, f.path)}")
        ax.fill_between(f.sizes, [g.min for g in f.figures], [g.max for g in f.figures], color=colour, alpha=0.12,
                        linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({s for f in figs for s in f.sizes})
    ticks = [s for s in sizes if s in (1, 8, 64, 512) or (s >= 4096 and (s.bit_length() - 1) % 2 == 0)]
    ax.set_xticks(ticks, [_size_label(s) for s in ticks])
    ax.set_xlabel("message size (bytes, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper left", frameon=True, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_md(result: FabricResult, out: Path) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    labels = {"shm": "one node, shared memory", "net": "across nodes, network"}
    for where, colour, marker in (("shm", COLOURS["shm"], "o"), ("net", COLOURS["tcp"], "s")):
        runs = sorted(((m.first["ranks"], m) for w, m in result.md if w == where), key=lambda rm: rm[0])
        if where == "net":  # one rank is the same run in both placements: start the line there
            runs = sorted([*((r, m) for w, m in result.md if w == "shm" for r in [m.first["ranks"]] if r == 1),
                           *runs], key=lambda rm: rm[0])
        if not runs:
            continue
        x = [r for r, _ in runs]
        f = [m.figure("ns_per_day") for _, m in runs]
        med = [g.median for g in f]
        ax.errorbar(x, med, yerr=[[m - g.min for m, g in zip(med, f)], [g.max - m for m, g in zip(med, f)]],
                    fmt="-" + marker, color=colour, capsize=4, label=labels[where])
    first = result.md[0][1].first if result.md else {}
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("ns/day (higher is better)")
    ax.set_title(f"MD, LJ {first.get('atoms', '?')} atoms: ns/day against ranks\n"
                 "(1 ns = 1000 tau, dt 0.005 tau; bars: min-max over the runs)", fontsize=11)
    ranks = sorted({m.first["ranks"] for _, m in result.md})
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.35)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _osu_table(figs: list[OsuFigures]) -> str:
    head = ["Size"] + [f"{f.transport} {f.path}" for f in figs]
    rows = []
    for s in figs[0].sizes:
        rows.append([_size_label(s)] + [f.figures[f.sizes.index(s)].short() if s in f.sizes else "-" for f in figs])
    return _table(head, rows)


def _facts(result: FabricResult) -> list[list[str]]:
    f = result.facts
    shm = f.get("dev_shm_bytes_per_node") or {}
    rows = [["MPI", str(f.get("mpi_library"))], ["network transport", f"{f.get('network')}: {f.get('network_why')}"],
            ["interface", f"{f.get('iface') or '-'} ({f.get('iface_why') or '-'})"],
            ["/dev/shm", ", ".join(f"node {k}: {v / 2**20:.0f} MiB" for k, v in sorted(shm.items()) if v) or
             (f"{f['dev_shm_bytes'] / 2**20:.0f} MiB" if f.get("dev_shm_bytes") else "-")],
            ["CPU", f"{f.get('cpu')}, {f.get('cpus')} CPU(s) per node"], ["kernel", str(f.get("kernel"))],
            ["transparent huge pages", str(f.get("thp"))], ["nodes", f"{f.get('nodes')} ("
                                                            f"{'local, isolated' if f.get('local') else 'hosts'})"],
            ["call paths", ", ".join(f.get("paths") or [])], ["repetitions per figure", str(f.get("reps"))],
            ["versions", ", ".join(f"{k} {v}" for k, v in (f.get("versions") or {}).items())]]
    return rows


def write_report(result: FabricResult, out_dir: Path) -> Path:
    """Write the plots and ``report.html`` into ``out_dir``; the path of ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = ["<h1>mnp bench fabric</h1>",
             "<p>Shared memory within a node against the network between nodes. Every figure is the median of "
             f"{result.facts.get('reps')} separate jobs; min-max beside it (bands in the plots).</p>",
             "<h2>Machine and mnp's decisions</h2>", _table(["", ""], _facts(result))]
    lat, bw = result.osu_for("latency"), result.osu_for("bw")
    if lat:
        plot_osu(lat, "OSU latency (osu_latency method): half round trip", "latency (us, log scale; lower is better)",
                 out_dir / "latency.png")
        parts += ["<h2>Latency</h2>", '<img src="latency.png" alt="latency against message size">',
                  _osu_table(lat)]
    if bw:
        plot_osu(bw, "OSU bandwidth (osu_bw method): window of 64", "bandwidth (MB/s, log scale; higher is better)",
                 out_dir / "bandwidth.png")
        parts += ["<h2>Bandwidth</h2>", '<img src="bandwidth.png" alt="bandwidth against message size">',
                  _osu_table(bw)]
    if result.md:
        plot_md(result, out_dir / "md.png")
        rows = [[str(m.first["ranks"]), str(m.first["nodes"]), w, m.figure("ns_per_day").short(".3f"),
                 m.figure("steps_per_s").short(), f"{100 * m.figure('comm_share').median:.1f}"] for w, m in result.md]
        parts += ["<h2>Molecular dynamics</h2>", '<img src="md.png" alt="MD ns/day against ranks">',
                  _table(["ranks", "nodes", "where", "ns/day", "steps/s", "comm. %"], rows)]
    extra = result.ratios() + result.notes() + [f"skipped: {s}" for s in result.skipped]
    if extra:
        parts += ["<h2>Ratios and notes</h2>", "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in extra) +
                  "</ul>"]
    parts.append("<h2>Jobs</h2><p>" + html.escape(" ".join(j for f in result.osu for j in f.jobs) + " " +
                                                  " ".join(j for _, m in result.md for j in m.jobs)) +
                 "</p><p>Each is kept by mnp: <code>mnp status JOB</code>, <code>mnp logs JOB</code>.</p>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%;border:1px solid #eee}")
    index = out_dir / "report.html"
    index.write_text("<!doctype html><html><head><meta charset='utf-8'><title>mnp bench fabric</title>"
                     f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    return index
