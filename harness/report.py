"""Records -> one pandas DataFrame -> correctness.csv / .md / .html and a printed summary."""

from __future__ import annotations

import math
import os
import platform
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch

from harness.record import Record

COLUMNS = ["case", "check", "dtype", "device", "status", "max_abs_err", "max_rel_err",
           "input", "index", "expected", "actual", "allowed", "pattern", "message", "seed",
           "seconds", "source"]


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record, in a fixed column order."""
    return pd.DataFrame([r.as_dict() for r in records], columns=COLUMNS)


def summary(frame: pd.DataFrame) -> str:
    """'162 rows: 150 pass, 2 fail, 0 error, 10 skip' plus one line per failing row."""
    counts = frame["status"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in ("pass", "fail", "error", "skip")]
    lines = [f"{len(frame)} rows, {frame['case'].nunique()} cases: {', '.join(parts)}"]
    for row in frame[frame["status"].isin(["fail", "error"])].itertuples():
        first = str(row.message).splitlines()[0] if row.message else ""
        detail = row.pattern or first
        lines.append(f"  {row.status.upper()} {row.case} {row.check} {row.dtype} {row.device}: "
                     f"{detail}")
    return "\n".join(lines)


def failure_details(frame: pd.DataFrame, limit: int = 10) -> str:
    """The full diagnosis of the first `limit` failing rows, then erroring ones."""
    bad = pd.concat([frame[frame["status"] == "fail"], frame[frame["status"] == "error"]])
    blocks = [str(m) for m in bad["message"].head(limit)]
    if len(bad) > limit:
        blocks.append(f"... and {len(bad) - limit} more in correctness.md")
    return "\n\n".join(blocks)


def environment() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unavailable",
    }


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a report is never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _markdown(frame: pd.DataFrame, seed: int | None) -> str:
    env = environment()
    head = [
        "# Gradient correctness report", "",
        f"torch {env['torch']}, Python {env['python']} ({env['machine']}), CUDA: {env['cuda']}, "
        f"seed {seed}", "",
        "```", summary(frame), "```", "",
    ]
    table = frame[["case", "check", "dtype", "device", "status", "max_abs_err", "max_rel_err",
                   "pattern"]].copy()
    for col in ("max_abs_err", "max_rel_err"):
        table[col] = table[col].map(lambda v: "" if pd.isna(v) else f"{v:.2e}")
    body = [table.to_markdown(index=False), ""]
    failures = frame[frame["status"].isin(["fail", "error"])]
    if len(failures):
        body += ["## Failures", ""]
        for row in failures.itertuples():
            body += [f"### {row.case} / {row.check} / {row.dtype} / {row.device}", "",
                     "```", str(row.message), "```", ""]
    return "\n".join(head + body)


def write(frame: pd.DataFrame, report_dir: str | Path, seed: int | None = None,
          name: str = "correctness") -> list[Path]:
    """Write <name>.csv, <name>.md and <name>.html under `report_dir`."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.html"]
    _atomic_write(paths[0], frame.to_csv(index=False))
    _atomic_write(paths[1], _markdown(frame, seed))
    styled = frame.drop(columns=["message"]).to_html(index=False, na_rep="", float_format="%.3g")
    _atomic_write(paths[2], "<html><head><meta charset='utf-8'><title>Gradient correctness"
                  "</title></head><body><h1>Gradient correctness</h1><pre>"
                  f"{summary(frame)}</pre>{styled}</body></html>\n")
    return paths


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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    ratios = speedup(frame)
    numeric = pd.to_numeric(ratios["cuda_speedup"], errors="coerce")
    fig, ax = plt.subplots(figsize=(9, 4.8))
    if numeric.notna().any():
        ratios = ratios.assign(speedup=numeric).dropna(subset=["speedup"])
        sizes = frame.drop_duplicates(["case", "size"]).set_index(["case", "size"])["numel"]
        for (case, mode), line in ratios.groupby(["case", "mode"]):
            x = [sizes[(case, s)] for s in line["size"]]
            ax.plot(x, line["speedup"], marker="o", label=f"{case} {mode}")
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "CUDA unavailable on this machine: no speedup measured",
                ha="center", va="center", transform=ax.transAxes)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("input elements (all inputs)")
    ax.set_ylabel("CUDA speedup over CPU (all cores)")
    ax.set_title("speedup against size")
    fig.tight_layout()
    path = out / "bench-speedup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return paths + [path]


def write_bench(frame: pd.DataFrame, report_dir: str | Path, info: dict) -> list[Path]:
    """bench.csv, bench.md, bench.html and the PNG plots under `report_dir`."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    ratios = speedup(frame)
    shown = frame.assign(
        median_us=frame["median_s"].map(lambda v: "" if pd.isna(v) else f"{v * 1e6:.1f}"),
        iqr_us=frame["iqr_s"].map(lambda v: "" if pd.isna(v) else f"{v * 1e6:.1f}"),
    ).drop(columns=["median_s", "iqr_s"])
    machine = ", ".join(f"{k}: {v}" for k, v in info.items())
    _atomic_write(out / "bench.csv", frame.to_csv(index=False))
    _atomic_write(out / "bench.md", "\n".join([
        "# Backward-pass timing", "", machine, "",
        shown.to_markdown(index=False), "", "## CUDA over CPU", "",
        ratios.to_markdown(index=False), ""]))
    _atomic_write(out / "bench.html", "<html><head><meta charset='utf-8'><title>Backward "
                  f"timing</title></head><body><h1>Backward-pass timing</h1><p>{machine}</p>"
                  f"{shown.to_html(index=False, na_rep='')}<h2>CUDA over CPU</h2>"
                  f"{ratios.to_html(index=False, na_rep='')}"
                  "<h2>Plots</h2><img src='bench-backward.png'>"
                  "<img src='bench-forward-backward.png'><img src='bench-speedup.png'>"
                  "</body></html>\n")
    return [out / "bench.csv", out / "bench.md", out / "bench.html", *plot_bench(frame, out)]


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
