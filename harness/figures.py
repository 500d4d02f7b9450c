"""Pictures of a wrong gradient, for the HTML report: where people would rather look than read.

For a searched failure, the searched inputs' values against their size, the failing ones
marked. For each input compared element by element and found wrong: the checked gradient against the
reference per element (a scatter, the wrong elements marked), beside the error as a heatmap
for a 2-D input or against the input's value for a 1-D one (a sign split shows as the wrong
marks on one side of 0). A small PNG, base64 for inlining, drawn from a record's evidence
(harness.evidence) where the HTML report is written (harness.report), so check_gradients
never pays for it. Tensors reach matplotlib as numpy arrays.
"""

from __future__ import annotations

import base64
import io

import torch

MAX_POINTS = 20_000
"""Elements drawn at most per input: past that, the wrong ones and an even sample of the rest."""


def _drawn(n: int, bad: torch.Tensor) -> torch.Tensor:
    if n <= MAX_POINTS:
        return torch.arange(n)
    sample = torch.linspace(0, n - 1, MAX_POINTS).long()
    return torch.unique(torch.cat([sample, bad.nonzero().flatten()[:MAX_POINTS]]))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(fig, plt) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def search_figure(searched) -> str:
    """The searched inputs' values against their size, failing inputs in red and the
    smallest failing one circled: the part of the domain (values, sizes) where it fails.
    `searched`: harness.evidence.SearchedInputs."""
    plt = _pyplot()
    seen, smallest, labels = searched.seen, searched.smallest, searched.labels
    fig, axes = plt.subplots(1, min(len(smallest), 3), figsize=(9, 3.2), squeeze=False)
    for k, ax in enumerate(axes[0]):
        for tensors, failed in seen:
            t = tensors[k].detach().double().flatten()[:64]
            x = torch.full_like(t, tensors[k].numel())
            ax.scatter(x.numpy(), t.numpy(), s=10 if failed else 6, alpha=0.6,
                       c="#cf222e" if failed else "#1a7f37", marker="x" if failed else "o")
        t = smallest[k].detach().double().flatten()[:64]
        ax.scatter(torch.full_like(t, smallest[k].numel()).numpy(), t.numpy(), s=60,
                   facecolors="none", edgecolors="#0969da", label="smallest failing input")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel(f"elements of {labels[k]}")
        ax.set_ylabel(f"values of {labels[k]} (first 64)")
        ax.legend(fontsize=8, loc="best")
    bad = sum(failed for _, failed in seen)
    fig.suptitle(f"{len(seen)} searched inputs: {bad} failed (red x), {len(seen) - bad} "
                 "passed (green)", fontsize=10)
    return _png(fig, plt)


def gradient_figure(evidence) -> str:
    """Base64 PNG of the failing element-by-element comparisons (harness.evidence.Evidence,
    `reference` against `checked`), or "" when it holds none."""
    shown, reference, checked = evidence.compared, evidence.reference, evidence.checked
    if not shown:
        return ""
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), 2, figsize=(9, 3.1 * len(shown)), squeeze=False)
    for (left, right), v in zip(axes, shown):
        e, a = (t.detach().double().cpu().flatten() for t in (v.reference, v.checked))
        allowed = v.allowed.detach().double().cpu().expand_as(v.reference).flatten()
        err = (a - e).abs()
        bad = ~(err <= allowed)
        keep = _drawn(len(e), bad)
        ok, wrong = keep[~bad[keep]], keep[bad[keep]]
        left.scatter(e[ok].numpy(), a[ok].numpy(), s=8, c="#1a7f37", label="agree")
        left.scatter(e[wrong].numpy(), a[wrong].numpy(), s=18, c="#cf222e", marker="x",
                     label="wrong")
        low, high = float(torch.minimum(e.min(), a.min())), float(torch.maximum(e.max(), a.max()))
        left.plot([low, high], [low, high], c="#6e7781", lw=0.8, ls="--")
        left.set_xlabel(reference)
        left.set_ylabel(checked)
        left.set_title(f"{v.label}: {int(bad.sum())} of {len(e)} elements wrong", fontsize=10)
        left.legend(fontsize=8, loc="best")
        ratio = (err / allowed.clamp_min(1e-300)).clamp(max=1e6)
        if v.reference.dim() == 2:
            image = right.imshow(torch.log10(ratio.clamp_min(1e-3)).view(v.reference.shape).numpy(),
                                 cmap="magma", aspect="auto")
            fig.colorbar(image, ax=right, label="log10 |error| / allowed")
            right.set_title("error per element (> 0: wrong)", fontsize=10)
        elif v.values is not None and v.values.numel() == len(e):
            x = v.values.detach().double().cpu().flatten()
            right.scatter(x[ok].numpy(), ratio[ok].numpy(), s=8, c="#1a7f37")
            right.scatter(x[wrong].numpy(), ratio[wrong].numpy(), s=18, c="#cf222e", marker="x")
            right.axhline(1.0, c="#6e7781", lw=0.8, ls="--")
            right.set_yscale("symlog", linthresh=1e-2)
            right.set_xlabel(f"input value of {v.label}")
            right.set_ylabel("|error| / allowed")
            right.set_title("error against the input's value (above the line: wrong)",
                            fontsize=10)
        else:
            right.axis("off")
    return _png(fig, plt)
