"""The training plots: loss and accuracy curves, and the flow of the gradients per layer."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import atomic_write


def _save(fig, path: Path) -> None:
    """PNG through a temporary file, so a crash never leaves a half-written plot behind."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def write_plots(history: list[dict], out_dir: Path, title: str = "") -> str | None:
    """Write curves.png and grad_flow.png; return a one-line reason if they were skipped."""
    try:
        # The object-oriented API with the Agg canvas: no pyplot, no global backend switch,
        # works without a display.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        return f"plots skipped: matplotlib is not installed ({e}); pip install 'gpugrad[train]'"
    epochs = [h["epoch"] for h in history]

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("val", "--")):
        loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=split)
        acc_ax.plot(epochs, [100 * h[f"{split}_acc"] for h in history], style, label=split)
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{title} loss".strip())
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title} accuracy".strip())
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, out_dir / "curves.png")

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    layers = list(history[0]["grad_norm"])
    for i, name in enumerate(layers):
        values = [h["grad_norm"].get(name, float("nan")) for h in history]
        ax.plot(epochs, values, marker="o", markersize=3, label=f"layer {i + 1} ({name})")
    ax.set_yscale("log")
    ax.set(
        xlabel="epoch",
        ylabel="mean L2 norm of the weight gradient per step",
        title="gradient flow: input layer first, output layer last",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    _save(fig, out_dir / "grad_flow.png")
    return None
