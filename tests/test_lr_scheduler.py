"""LR schedulers against torch.optim.lr_scheduler step by step (lrs and cycled momenta), their
state dicts, and their errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import optim
from gpugrad.optim import lr_scheduler as sched_mod

# Two parameter groups with their own lrs: schedules act per group.
LRS = (0.1, 0.02)


def _opt(lib, kind="SGD", **kw):
    """An optimizer of ``lib`` (gpugrad or torch) over two one-element groups."""
    if lib is gg:
        groups = [{"params": [gg.zeros(1, requires_grad=True)], "lr": lr} for lr in LRS]
        return getattr(optim, kind)(groups, **kw)
    groups = [{"params": [lib.zeros(1, requires_grad=True)], "lr": lr} for lr in LRS]
    return getattr(lib.optim, kind)(groups, **kw)


def _trace(opt, sched, steps, metrics=None):
    """After each optimizer + scheduler step: the lrs, and momentum or beta1 of each group."""
    rows = []
    for k in range(steps):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[k])
        row = list(sched.get_last_lr()) + [g["lr"] for g in opt.param_groups]
        row += [g["betas"][0] if "betas" in g else g.get("momentum", 0.0) for g in opt.param_groups]
        rows.append(row)
    return np.array(rows)


def _compare(make, steps, kind="SGD", opt_kw=None, metrics=None):
    torch = pytest.importorskip("torch")
    opt_kw = opt_kw or {}
    ours_opt, theirs_opt = _opt(gg, kind, **opt_kw), _opt(torch, kind, **opt_kw)
    ours, theirs = make(sched_mod, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
    np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-13)
    a = _trace(ours_opt, ours, steps, metrics)
    b = _trace(theirs_opt, theirs, steps, metrics)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    return ours, ours_opt


class Decay:
    """A callable object: LambdaLR's state dict keeps its attributes."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate**epoch


CASES = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 1.0 / (1 + e)),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [Decay(0.9), lambda e: min(1.0, (e + 1) / 4)]),
    "LinearLR": lambda m, o: m.LinearLR(o),
    "LinearLR-warmup": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=4),
    "LinearLR-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=10),
    "SequentialLR-warmup-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.05, total_iters=5), m.CosineAnnealingLR(o, T_max=20)],
        milestones=[5],
    ),
    "SequentialLR-three": lambda m, o: m.SequentialLR(
        o,
        [m.StepLR(o, 2, gamma=0.5), m.LambdaLR(o, lambda e: 0.9**e), m.LinearLR(o, 0.5)],
        milestones=[4, 9],
    ),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=30),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(
        o, max_lr=0.4, epochs=5, steps_per_epoch=6, anneal_strategy="linear", three_phase=True,
        pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_schedules_match_pytorch_step_by_step(name):
    steps = 30 if name.startswith("OneCycle") else 25
    _compare(CASES[name], steps, opt_kw={"momentum": 0.9})


def test_one_cycle_cycles_adams_beta1_and_rmsprops_momentum_like_pytorch():
    make = CASES["OneCycleLR"]
    _compare(make, 30, kind="Adam", opt_kw={"betas": (0.9, 0.99)})
    _compare(make, 30, kind="AdamW")
    _compare(make, 30, kind="RMSprop", opt_kw={"momentum": 0.5})
    _, opt = _compare(
        lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=20, cycle_momentum=False),
        20,
        kind="Adagrad",
    )
    assert "momentum" not in opt.param_groups[0]


PLATEAU = {
    "min-rel": (dict(patience=2, factor=0.5), [5, 4, 4, 4.1, 4, 3.9996, 4, 4, 4, 3, 3, 3, 3, 3]),
    "min-abs-cooldown": (
        dict(patience=1, threshold=0.5, threshold_mode="abs", cooldown=2, min_lr=[0.05, 0.0]),
        [5, 4.8, 4.6, 4.0, 3.9, 3.8, 3.7, 3.6, 3.5, 3.4, 3.3, 3.2, 3.1, 3.0],
    ),
    "max-rel-eps": (
        dict(mode="max", patience=0, factor=0.9, eps=0.005, min_lr=0.01),
        [0.1, 0.2, 0.2, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
    ),
}


@pytest.mark.parametrize("name", list(PLATEAU))
def test_reduce_lr_on_plateau_matches_pytorch(name):
    kw, metrics = PLATEAU[name]
    sched, _ = _compare(lambda m, o: m.ReduceLROnPlateau(o, **kw), len(metrics), metrics=metrics)
    assert sched.last_epoch == len(metrics)


def test_plateau_takes_a_tensor_metric_and_counts_bad_epochs():
    opt = _opt(gg)
    plateau = optim.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for loss in (1.0, 1.0, 1.0):
        plateau.step(gg.tensor(loss))
    assert plateau.get_last_lr() == [0.05, 0.01] and plateau.num_bad_epochs == 0


@pytest.mark.parametrize(
    "name", ["LambdaLR-per-group", "SequentialLR-warmup-cosine", "OneCycleLR", "LinearLR"]
)
def test_state_dict_round_trip_continues_like_an_uninterrupted_run(name):
    make = CASES[name]
    opt = _opt(gg, momentum=0.9)
    sched = make(sched_mod, opt)
    straight = _trace(opt, sched, 20)

    opt = _opt(gg, momentum=0.9)
    sched = make(sched_mod, opt)
    _trace(opt, sched, 8)
    saved_opt, saved = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    assert "optimizer" not in saved
    opt2 = _opt(gg, momentum=0.9)
    sched2 = make(sched_mod, opt2)  # a fresh schedule, then the saved state over it
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    resumed = _trace(opt2, sched2, 12)
    np.testing.assert_allclose(resumed, straight[8:], rtol=1e-13)


def test_lambda_state_dict_keeps_callable_objects_but_not_functions():
    opt = _opt(gg)
    sched = optim.LambdaLR(opt, [Decay(0.5), lambda e: 1.0])
    saved = sched.state_dict()
    assert saved["lr_lambdas"] == [{"rate": 0.5}, None]
    fresh = optim.LambdaLR(_opt(gg), [Decay(0.9), lambda e: 1.0])
    fresh.load_state_dict(saved)
    assert fresh.lr_lambdas[0].rate == 0.5 and "lr_lambdas" in saved


def test_resuming_with_last_epoch_matches_pytorch():
    torch = pytest.importorskip("torch")
    for make in (
        lambda m, o: m.CosineAnnealingLR(o, T_max=10, last_epoch=4),
        lambda m, o: m.LinearLR(o, start_factor=0.2, total_iters=6, last_epoch=3),
        lambda m, o: m.StepLR(o, 3, last_epoch=5),
    ):
        ours_opt, theirs_opt = _opt(gg), _opt(torch)
        for o in (ours_opt, theirs_opt):
            for g in o.param_groups:
                g["initial_lr"] = g["lr"] * 2
        ours, theirs = make(sched_mod, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
        a, b = _trace(ours_opt, ours, 10), _trace(theirs_opt, theirs, 10)
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_errors_name_the_scheduler_and_the_fix():
    opt = _opt(gg)
    with pytest.raises(ValueError, match="start_factor must be in"):
        optim.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="lr_lambda has 3 values, the optimizer has 2"):
        optim.LambdaLR(opt, [lambda e: 1.0] * 3)
    with pytest.raises(ValueError, match="give total_steps, or epochs and steps_per_epoch"):
        optim.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="Adagrad has no momentum or betas.*cycle_momentum=False"):
        optim.OneCycleLR(_opt(gg, "Adagrad"), max_lr=0.1, total_steps=5)
    one = optim.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        one.step()
    with pytest.raises(ValueError, match="step 4 is past total_steps=3"):
        one.step()
    with pytest.raises(ValueError, match="factor must be < 1.0"):
        optim.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        optim.ReduceLROnPlateau(opt, mode="up")
    other = _opt(gg)
    with pytest.raises(ValueError, match="scheduler 1 .*steps another optimizer"):
        optim.SequentialLR(opt, [optim.LinearLR(opt), optim.LinearLR(other)], milestones=[2])
    with pytest.raises(ValueError, match="2 schedulers need 1 milestone"):
        optim.SequentialLR(opt, [optim.LinearLR(opt), optim.LinearLR(opt)], milestones=[])
    with pytest.raises(ValueError, match="ReduceLROnPlateau, whose step\\(\\) needs the metric"):
        optim.SequentialLR(opt, [optim.ReduceLROnPlateau(opt)], milestones=[])
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        optim.LinearLR([])


def test_warmup_then_cosine_by_hand():
    opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1.0)
    warm = optim.LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=3)
    cos = optim.CosineAnnealingLR(opt, T_max=4)
    sched = optim.SequentialLR(opt, [warm, cos], milestones=[3])
    lrs = [sched.get_last_lr()[0]]
    for _ in range(7):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    expected = [0.25, 0.5, 0.75] + [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(lrs, expected, atol=1e-15)


@pytest.mark.parametrize("name", ["SequentialLR-warmup-cosine", "OneCycleLR", "plateau"])
def test_state_dicts_survive_a_checkpoint_file(name, tmp_path):
    """What `gpugrad train --resume` needs: the state through save/load_checkpoint."""
    from gpugrad.checkpoint import load_checkpoint, save_checkpoint

    def make(o):
        if name == "plateau":
            return optim.ReduceLROnPlateau(o, patience=1, cooldown=1)
        return CASES[name](sched_mod, o)

    metrics = [3.0, 2.0, 2.0, 2.5, 2.2, 2.1, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    opt = _opt(gg, momentum=0.9)
    sched = make(opt)
    straight = _trace(opt, sched, 12, metrics if name == "plateau" else None)

    opt = _opt(gg, momentum=0.9)
    sched = make(opt)
    _trace(opt, sched, 5, metrics[:5] if name == "plateau" else None)
    save_checkpoint(tmp_path / "c.npz", {"opt": opt.state_dict(), "sched": sched.state_dict()})
    state = load_checkpoint(tmp_path / "c.npz")
    opt2 = _opt(gg, momentum=0.9)
    sched2 = make(opt2)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    resumed = _trace(opt2, sched2, 7, metrics[5:] if name == "plateau" else None)
    np.testing.assert_allclose(resumed, straight[5:], rtol=1e-13)
