"""A PyTorch training script runs under gpugrad with only its import lines changed.

The script (its gpugrad twin is in the README) trains an MLP with LayerNorm, GELU, Dropout,
AdamW, OneCycleLR and clip_grad_norm_ on the bundled digits. The test runs the same text twice,
once with PyTorch's imports and once with gpugrad's; between building the model and training
it, it copies gpugrad's initial weights into the PyTorch model and sets every dropout
probability to 0 (both libraries draw different random numbers), then asserts the same loss
after 50 float64 steps. A second case swaps LayerNorm and GELU for Tanh, so the training
pieces (AdamW, OneCycleLR, clip_grad_norm_, Module.double) are checked whatever layers exist.
"""

from __future__ import annotations

import pytest

import gpugrad as gg

TORCH_IMPORTS = """\
import torch
import torch.nn.functional as F
from torch import nn, optim
"""
GPUGRAD_IMPORTS = """\
import gpugrad as torch
import gpugrad.functional as F
from gpugrad import nn, optim
"""
DATA = """\
from gpugrad.data import load_dataset

digits = load_dataset("digits", "train")  # 1,438 8x8 images, 10 classes
"""
MODEL = """\
torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128),
    nn.LayerNorm(128),
    nn.GELU(),
    nn.Dropout(p=0.1),
    nn.Linear(128, 10),
).double()
"""
TRAIN = """\
x_all = torch.tensor(digits.x, dtype=torch.float64)
y_all = torch.tensor(digits.y)
opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=50)
model.train()
for step in range(50):
    start = step * 64 % (x_all.shape[0] - 64)
    x, y = x_all[start : start + 64], y_all[start : start + 64]
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()
    sched.step()
print(f"step {step + 1}: loss {loss.item():.4f}, grad norm {norm.item():.3f}")
"""
TANH_MODEL = MODEL.replace("    nn.LayerNorm(128),\n    nn.GELU(),\n", "    nn.Tanh(),\n")


def gpugrad_script() -> str:
    """The whole script as gpugrad runs it (the README shows this text)."""
    return GPUGRAD_IMPORTS + DATA + "\n" + MODEL + TRAIN


def _run(imports, model_part):
    """Run the script under both libraries; return (gpugrad namespace, torch namespace)."""
    torch = pytest.importorskip("torch")
    ours, theirs = {}, {}
    for ns, head in ((ours, GPUGRAD_IMPORTS), (theirs, TORCH_IMPORTS)):
        exec(compile(head + DATA + model_part, "script (model)", "exec"), ns)
    # the harness, between the two halves: same initial weights, dropout off
    state = {k: torch.tensor(v) for k, v in ours["model"].state_dict().items()}
    theirs["model"].load_state_dict(state)
    for ns in (ours, theirs):
        for m in ns["model"].modules():
            if type(m).__name__ == "Dropout":
                m.p = 0.0
    for ns in (ours, theirs):
        exec(compile(TRAIN, "script (train)", "exec"), ns)
    return ours, theirs


def _same_run(ours, theirs):
    assert ours["loss"].dtype == gg.float64
    assert abs(ours["loss"].item() - theirs["loss"].item()) < 1e-4
    assert abs(ours["norm"].item() - theirs["norm"].item()) < 1e-4 * max(1, theirs["norm"].item())
    assert ours["sched"].get_last_lr() == pytest.approx(theirs["sched"].get_last_lr(), rel=1e-12)
    assert ours["loss"].item() < 1.0, "the script did not train"


def test_the_training_pieces_run_a_pytorch_script_unchanged():
    """AdamW, OneCycleLR, clip_grad_norm_, .double(), Dropout and cross_entropy, with Tanh
    standing in for LayerNorm + GELU."""
    _same_run(*_run(GPUGRAD_IMPORTS, TANH_MODEL))


def test_the_pytorch_mlp_script_runs_with_only_its_imports_changed():
    missing = [name for name in ("LayerNorm", "GELU") if not hasattr(gg.nn, name)]
    if missing:
        pytest.skip(f"gpugrad.nn has no {' or '.join(missing)} yet (the layers work adds them)")
    _same_run(*_run(GPUGRAD_IMPORTS, MODEL))


def test_the_readme_twin_is_the_script():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert gpugrad_script() in readme, "README's PyTorch-script block differs from the test's"
