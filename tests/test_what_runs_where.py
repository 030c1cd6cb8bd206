"""Which implementation runs where is read from the op table itself, and the documentation
agrees with it: kernels/README.md's "wired to" column, `gpugrad info --ops`."""

from __future__ import annotations

import re
from pathlib import Path

import gpugrad as gg
from gpugrad import cli
from gpugrad.backends.cuda import KERNELS
from gpugrad.runs_where import what_runs_where

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZER_KERNELS = {  # kernels no op runs: the optimizers' steps and gradient clipping
    "sgd_step": "optimizers: SGD step",
    "adam_step": "optimizers: Adam and AdamW step",
    "rmsprop_step": "optimizers: RMSprop step",
    "adagrad_step": "optimizers: Adagrad step",
    "grad_norm_partials": "optimizers: nn.utils.clip_grad_norm_",
    "grad_scale": "optimizers: nn.utils.clip_grad_norm_",
    "grad_clamp": "optimizers: nn.utils.clip_grad_value_",
}


def _expand(cell):
    """`softmax_fwd_{warp,block}` -> softmax_fwd_warp, softmax_fwd_block."""
    name = cell.strip().strip("`")
    m = re.fullmatch(r"(\w*)\{([\w,]+)\}(\w*)", name)
    if not m:
        return [name]
    return [m.group(1) + part + m.group(3) for part in m.group(2).split(",")]


def _readme_wiring():
    table = {}
    text = (ROOT / "kernels" / "README.md").read_text()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        wired = cells[4]
        if wired.startswith("optimizers:"):
            targets = {wired}
        else:
            targets = {re.sub(r"\s*\(.*\)$", "", w).strip() for w in wired.split(", ")}
        for kernel in _expand(cells[0]):
            table[kernel] = targets
    return table


def _registry_wiring():
    table = {}
    for name, op in gg.OPS.items():
        for direction, paths in (
            ("forward", op.fast_paths["cuda"]),
            ("backward", op.fast_backward_paths["cuda"]),
        ):
            for path in paths:
                for kernel in path.kernels:
                    table.setdefault(kernel, set()).add(f"{name} {direction}")
    for kernel, what in OPTIMIZER_KERNELS.items():
        table[kernel] = {what}
    return table


def test_every_kernel_a_fast_path_names_exists():
    defined = {k for bases in KERNELS.values() for k in bases}
    named = {k for k in _registry_wiring()}
    assert named - defined == set(), f"fast paths name kernels KERNELS lacks: {named - defined}"
    assert defined - named == set(), f"kernels no fast path or optimizer runs: {defined - named}"


def test_the_kernels_readme_wiring_column_agrees_with_the_op_table():
    readme, registry = _readme_wiring(), _registry_wiring()
    assert set(readme) == set(registry), (
        f"kernels/README.md lists {sorted(set(readme) - set(registry))} that nothing runs and "
        f"misses {sorted(set(registry) - set(readme))}"
    )
    wrong = {k: (readme[k], registry[k]) for k in readme if readme[k] != registry[k]}
    assert not wrong, f"README 'wired to' vs the op table: {wrong}"


def test_info_ops_prints_every_fast_path_then_the_reference(capsys):
    assert cli.main(["info", "--ops"]) == 0
    out = capsys.readouterr().out
    for row in what_runs_where():
        for name, _ in row["paths"]:
            assert name in out
    assert "reference only, on every device" in out
    assert "backends.cuda.launchers.relu_backward (relu_bwd)" in out


def test_an_op_lists_its_implementations_in_the_order_tried():
    impl = gg.OPS["bias_act"].implementations()
    assert impl["cpu"]["forward"] == ["gpugrad.backends.cpu.bias_act", "reference"]
    assert impl["cuda"]["backward"][-1] == "reference"
    assert gg.OPS["add"].implementations()["cuda"] == {
        "forward": ["reference"],
        "backward": ["reference"],
    }
