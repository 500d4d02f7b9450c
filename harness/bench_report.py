"""Bench rows -> one long DataFrame -> bench.csv / .md / .html, a summary pivot with the
CUDA-over-CPU speedup, PNG plots, and the comparison with a baseline run."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import pandas as pd

from harness.report import _atomic_write


def _save_figure(fig, path: Path, dpi: int) -> None:
    """Save a figure atomically (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)

def bench_frame(rows) -> pd.DataFrame:
    """One long frame of BenchRows."""
    return pd.DataFrame([r.as_dict() for r in rows])


def speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """CUDA-over-CPU speedup per (case, mode, dtype, size), against CPU at all cores;
    'unavailable' where either side was not measured."""
    cpu = frame[(frame["device"] == "cpu")]
    cpu = cpu[cpu["threads"] == cpu["threads"].max()] if len(cpu) else cpu
    keys = ["case", "mode", "dtype", "size"]
    merged = cpu[keys + ["median_s"]].merge(
        frame[frame["device"] == "cuda"][keys + ["median_s"]], on=keys, how="left",
        suffixes=("_cpu", "_cuda"))
    ratio = merged["median_s_cpu"] / merged["median_s_cuda"]
    merged["cuda_speedup"] = ratio.map(lambda v: "unavailable" if pd.isna(v) else f"{v:.2f}")
    return merged


def plot_bench(frame: pd.DataFrame, out: Path) -> list[Path]:
    """time against size per device (log-log), one PNG per mode; and the speedup plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    paths = []
    measured = frame.dropna(subset=["median_s"])
    families = measured.groupby("case")["size"].nunique()
    measured = measured[measured["case"].isin(families[families > 1].index)]
    styles = {}  # (device, threads) -> line style, the same in every panel
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for mode, part in measured.groupby("mode"):
        cases = sorted(part["case"].unique())
        ncols = min(4, len(cases))
        nrows = math.ceil(len(cases) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.8),
                                 squeeze=False)
        for ax, case in zip(axes.flat, cases):
            rows = part[part["case"] == case]
            x, xlabel = "numel", "input elements (all inputs)"
            if rows["backward_flop"].notna().all():  # 2-D families: order by work done
                x, xlabel = "backward_flop", "FLOP in one backward"
            for (device, dtype, threads), line in rows.groupby(["device", "dtype", "threads"]):
                key = (device, dtype, threads)
                styles.setdefault(key, colors[len(styles) % len(colors)])
                line = line.sort_values(x)
                ax.errorbar(line[x], line["median_s"] * 1e6,
                            yerr=line["iqr_s"] * 1e6 / 2, color=styles[key], capsize=2,
                            marker="o" if device == "cpu" else "s", markersize=3,
                            label=f"{device} {dtype}, {threads} thread(s)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(case, fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_ylabel("median µs per call", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.3)
        for ax in list(axes.flat)[len(cases):]:
            ax.set_visible(False)
        shown = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                shown.setdefault(label, handle)
        fig.legend(list(shown.values()), list(shown), loc="lower center", ncol=len(shown),
                   fontsize=8)
        fig.suptitle(f"{mode}: time against size (log-log; bars: IQR)", fontsize=11)
        fig.tight_layout(rect=(0, 0.06 if nrows > 1 else 0.1, 1, 0.97))
        path = out / f"bench-{mode.replace('+', '-')}.png"
        _save_figure(fig, path, dpi=100)
        paths.append(path)
    ratios = speedup(frame)
    numeric = pd.to_numeric(ratios["cuda_speedup"], errors="coerce")
    if not numeric.notna().any():  # no CUDA device: no empty axis, the report says it in words
        return paths
    fig, ax = plt.subplots(figsize=(9, 4.8))
    ratios = ratios.assign(speedup=numeric).dropna(subset=["speedup"])
    sizes = frame.drop_duplicates(["case", "size"]).set_index(["case", "size"])["numel"]
    for (case, mode), line in ratios.groupby(["case", "mode"]):
        x = [sizes[(case, s)] for s in line["size"]]
        ax.plot(x, line["speedup"], marker="o", label=f"{case} {mode}")
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("input elements (all inputs)")
    ax.set_ylabel("CUDA speedup over CPU (all cores)")
    ax.set_title("speedup against size")
    fig.tight_layout()
    path = out / "bench-speedup.png"
    _save_figure(fig, path, dpi=110)
    return paths + [path]


def _us(seconds) -> str:
    return "" if pd.isna(seconds) else f"{seconds * 1e6:,.1f}"


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (case, size, mode): median µs at 1 thread, at all cores and on CUDA, the
    IQR as a share of the median, the speedup, throughput and flags. What a reader scans."""
    keys = ["case", "size", "mode", "dtype"]
    cpu = frame[frame["device"] == "cpu"]
    top = cpu["threads"].max() if len(cpu) else 0
    lines = []
    for key, part in frame.groupby(keys, sort=False):
        line = dict(zip(keys, key))
        line["elements"] = int(part["numel"].max())
        for label, rows in (("cpu 1 thread µs", cpu_rows(part, 1)),
                            (f"cpu {top} threads µs", cpu_rows(part, top)),
                            ("cuda µs", part[part["device"] == "cuda"])):
            if top == 1 and label.startswith("cpu 1 thread"):
                continue
            if not len(rows):
                line[label] = ""
                continue
            row = rows.iloc[0]
            if pd.isna(row["median_s"]):
                line[label] = "unavailable" if "unavailable" in str(row["flags"]) else "error"
            else:
                line[label] = f"{_us(row['median_s'])} ±{row['iqr_s'] / row['median_s']:.0%}"
        best = part.dropna(subset=["median_s"]).sort_values("median_s").head(1)
        line["GB/s"] = _rate(best, "gb_per_s")
        line["GFLOP/s"] = _rate(best, "gflop_per_s")
        line["of copy bw"] = ("" if best.empty or pd.isna(best["fraction_of_copy"].iloc[0])
                              else f"{best['fraction_of_copy'].iloc[0]:.0%}")
        memory = part["peak_memory_bytes"].dropna()
        line["peak MiB"] = f"{memory.max() / 2**20:.2f}" if len(memory) else ""
        line["flags"] = "; ".join(sorted({f for f in part["flags"].fillna("").astype(str)
                                          if f and "unavailable" not in f}))
        lines.append(line)
    out = pd.DataFrame(lines)
    ratios = speedup(frame).set_index(["case", "mode", "dtype", "size"])["cuda_speedup"]
    out["cuda speedup"] = [ratios.get((r.case, r.mode, r.dtype, r.size), "")
                           for r in out.itertuples()]
    return out


def cpu_rows(part: pd.DataFrame, threads: int) -> pd.DataFrame:
    return part[(part["device"] == "cpu") & (part["threads"] == threads)]


def _rate(best: pd.DataFrame, column: str) -> str:
    if best.empty or pd.isna(best[column].iloc[0]):
        return ""
    return f"{best[column].iloc[0]:,.1f}"


_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td:nth-child(-n+4){text-align:left}
tr.noisy td{background:#fff6d5} tr.error td{background:#fde0e0}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.machine td:first-child{font-weight:bold;text-align:left}
details{margin-top:1em}
</style>"""


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        texts = ["" if pd.isna(v) else str(v) for v in row]
        flags = texts[list(frame.columns).index("flags")] if "flags" in frame.columns else ""
        css = "error" if "error" in flags else "noisy" if "noisy" in flags else ""
        cells = "".join(f"<td>{html.escape(v)}</td>" for v in texts)
        body.append(f"<tr class='{css}'>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_bench(frame: pd.DataFrame, report_dir: str | Path, info: dict) -> list[Path]:
    """bench.csv (every measurement), bench.md and bench.html (machine, summary, plots, then
    every measurement) and the PNG plots under `report_dir`."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_bench(frame, out)
    table = summary(frame)
    noisy = int(frame["flags"].fillna("").str.contains("noisy").sum())
    measured = int(frame["median_s"].notna().sum())
    methods = "; ".join(sorted(set(frame["memory_method"].dropna()) - {"unavailable",
                                                                       "not measured"}))
    note = (f"{measured} measurements ({noisy} flagged noisy: IQR over 10% of the median); "
            "times are medians over at least the asked repeats, ± is the IQR over the median; "
            f"peak memory: {methods}.")
    long = frame.assign(median_us=frame["median_s"].map(_us), iqr_us=frame["iqr_s"].map(_us)
                        ).drop(columns=["median_s", "iqr_s"])
    _atomic_write(out / "bench.csv", frame.to_csv(index=False))
    load = str(info.get("machine load", ""))
    machine_md = pd.DataFrame(list(info.items()), columns=["machine", "value"])
    _atomic_write(out / "bench.md", "\n".join([
        "# Backward-pass timing", "", *([f"**{load}**", ""] if load.startswith("MACHINE LOAD")
                                         else []),
        machine_md.to_markdown(index=False), "", note, "",
        "## Summary", "", table.to_markdown(index=False), "", "## Plots", "",
        *[f"![{p.stem}]({p.name})" for p in plots], "", "## Every measurement", "",
        long.to_markdown(index=False), ""]))
    machine = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                      for k, v in info.items())
    images = "".join(f"<img src='{p.name}' alt='{p.stem}'>" for p in plots)
    if not any(p.stem == "bench-speedup" for p in plots):
        images += ("<p><b>No CUDA device</b> was measured on this machine, so there is no "
                   "CUDA-over-CPU speedup to plot; the CUDA columns say 'unavailable'.</p>")
    _atomic_write(out / "bench.html", "<!doctype html><html><head><meta charset='utf-8'>"
                  f"<title>Backward-pass timing</title>{_STYLE}</head><body>"
                  "<h1>Backward-pass timing</h1>"
                  + (f"<p style='background:#fff8c5;padding:6px'><b>{html.escape(load)}</b></p>"
                     if load.startswith("MACHINE LOAD") else "")
                  + "<nav><a href='#plots'>plots</a> · "
                  "<a href='#summary'>summary</a> · <a href='#machine'>machine</a> · "
                  "<a href='#measurements'>every measurement</a></nav>"
                  f"<h2 id='plots'>Plots</h2>{images}"
                  f"<h2 id='summary'>Summary</h2><p>{html.escape(note)}</p>{_html_table(table)}"
                  f"<h2 id='machine'>Machine</h2><table class='machine'>{machine}</table>"
                  f"<h2 id='measurements'>Every measurement ({len(frame)} rows)</h2><details>"
                  f"<summary>show</summary>{_html_table(long)}</details></body></html>\n")
    return [out / "bench.csv", out / "bench.md", out / "bench.html", *plots]


BASELINE_KEYS = ["case", "mode", "device", "dtype", "size", "threads"]


def compare_baseline(frame: pd.DataFrame, baseline: pd.DataFrame,
                     threshold: float = 0.10) -> pd.DataFrame:
    """Add `vs_baseline`: a row is slower (or faster) only when its median moved by more than
    `threshold` of the old median AND by more than the two measurements' IQRs together."""
    old = baseline[BASELINE_KEYS + ["median_s", "iqr_s"]].rename(
        columns={"median_s": "baseline_median_s", "iqr_s": "baseline_iqr_s"})
    merged = frame.merge(old, on=BASELINE_KEYS, how="left")

    def verdict(row) -> str:
        if pd.isna(row["median_s"]) or pd.isna(row["baseline_median_s"]):
            return "no baseline" if pd.isna(row["baseline_median_s"]) else "not measured"
        change = row["median_s"] - row["baseline_median_s"]
        noise = (row["iqr_s"] or 0) + (row["baseline_iqr_s"] or 0)
        ratio = row["median_s"] / row["baseline_median_s"]
        if abs(change) <= max(threshold * row["baseline_median_s"], noise):
            return "within noise"
        return f"{'slower' if change > 0 else 'faster'} x{ratio:.2f}"

    merged["vs_baseline"] = merged.apply(verdict, axis=1)
    return merged
