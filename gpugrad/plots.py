"""The training plots: loss and accuracy curves, and the flow of the gradients per layer.

Losses and gradient norms span orders of magnitude over a run, so both are drawn on log
scales; the best epoch (by validation accuracy) is marked on every panel; every value is a
marked point, so a single epoch (or a value between gaps) shows; values that are not finite (a
diverging run) are left out with a note saying so: a panel is never blank without a reason.
"""

from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import atomic_write


def _save(fig, path: Path) -> None:
    """PNG through a temporary file, so a crash never leaves a half-written plot behind."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _drawable(values) -> list[float]:
    """NaN where a value cannot be drawn (matplotlib leaves a gap there)."""
    return [v if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values]


def _notes(history: list[dict], keys) -> list[str]:
    notes = []
    if len(history) == 1:
        notes.append("a single epoch: one point per curve")
    bad = sorted(
        {
            h["epoch"]
            for h in history
            for k in keys
            if not (isinstance(h.get(k), int | float) and math.isfinite(h[k]))
        }
    )
    if bad:
        notes.append(f"not finite (not drawn) at epoch {', '.join(map(str, bad))}")
    return notes


def _mark_best(ax, best: dict | None, label: bool) -> None:
    if best:
        text = f"best val acc {best['val_acc']:.2%} (epoch {best['epoch']})" if label else None
        ax.axvline(best["epoch"], color="tab:green", linestyle=":", linewidth=1.5, label=text)


def _note(fig, notes: list[str]) -> None:
    if notes:  # below the panels, inside the constrained layout
        fig.supxlabel("; ".join(notes), fontsize="small", color="tab:red")


def _epoch_axis(ax, epochs) -> None:
    """Whole epochs on the x axis, all of them shown even where no value is drawable."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    pad = max(1.0, 0.03 * (epochs[-1] - epochs[0]))
    ax.set_xlim(epochs[0] - pad, epochs[-1] + pad)


def _log_scale_if_positive(ax, series) -> None:
    values = [v for s in series for v in s if not math.isnan(v)]
    if values and min(values) > 0:
        ax.set_yscale("log")


def write_plots(
    history: list[dict], out_dir: Path, title: str = "", best: dict | None = None
) -> str | None:
    """Write curves.png and grad_flow.png; return a one-line reason if they were skipped."""
    try:
        # The object-oriented API with the Agg canvas: no pyplot, no global backend switch,
        # works without a display.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        return f"plots skipped: matplotlib is not installed ({e}); pip install 'gpugrad[train]'"
    epochs = [h["epoch"] for h in history]
    # Markers: a point between values that cannot be drawn (or a run of one epoch) shows.
    marker = {"marker": "o", "markersize": 5 if len(history) == 1 else 3}

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    losses = []
    for split, style in (("train", "-"), ("val", "--")):
        loss = _drawable(h[f"{split}_loss"] for h in history)
        acc = [100 * v for v in _drawable(h[f"{split}_acc"] for h in history)]
        losses.append(loss)
        loss_ax.plot(epochs, loss, style, label=split, **marker)
        acc_ax.plot(epochs, acc, style, label=split, **marker)
    _log_scale_if_positive(loss_ax, losses)
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{title} loss".strip())
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title} accuracy".strip())
    for ax in (loss_ax, acc_ax):
        _epoch_axis(ax, epochs)
        _mark_best(ax, best, label=ax is acc_ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    _note(fig, _notes(history, ("train_loss", "val_loss", "train_acc", "val_acc")))
    _save(fig, out_dir / "curves.png")

    fig = Figure(figsize=(7, 4.9), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    layers = list(history[0]["grad_norm"])
    norms = []
    for i, name in enumerate(layers):
        values = _drawable(h["grad_norm"].get(name, math.nan) for h in history)
        norms.append(values)
        ax.plot(epochs, values, marker="o", markersize=3, label=f"layer {i + 1} ({name})")
    _log_scale_if_positive(ax, norms)
    _epoch_axis(ax, epochs)
    _mark_best(ax, best, label=True)
    ax.set(
        xlabel="epoch",
        ylabel="mean L2 norm of the weight gradient per step",
        title="gradient flow: input layer first, output layer last",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    flat = [{"epoch": h["epoch"], **h["grad_norm"]} for h in history]
    _note(fig, _notes(flat, layers))
    _save(fig, out_dir / "grad_flow.png")
    return None
