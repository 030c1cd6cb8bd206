"""The training-recipe options of ``gpugrad train``: --norm, --activation gelu|silu,
--label-smoothing, --clip-grad-norm, --warmup-epochs and --scheduler onecycle|plateau.

Each is refused with one line when it cannot apply, reaches the model, loss, optimizer or
schedule it names (read back from the log, metrics.json and the checkpoint), survives a stop
and --resume bit for bit, and a model with normalization layers reloads for gpugrad predict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn, optim
from gpugrad.checkpoint import load_checkpoint
from gpugrad.data import load_dataset
from gpugrad.nn.utils import get_total_norm
from gpugrad.serialization import load_metadata
from gpugrad.train import TrainConfig, Trainer, run_cli

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--dataset", "moons", "--hidden", "8", "--no-plots", "--quiet"]


def gpugrad(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=180,
    )


def one_line_error(proc, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--loss", "mse", "--label-smoothing", "0.1"],
            "gpugrad train: --label-smoothing 0.1: applies to --loss cross_entropy only, not to "
            "--loss mse; drop --label-smoothing (or choose --loss cross_entropy)",
        ),
        (["--label-smoothing", "1"], "--label-smoothing 1: must be a finite number in [0, 1)"),
        (["--clip-grad-norm", "0"], "--clip-grad-norm 0: must be a finite number > 0"),
        (["--clip-grad-norm", "nan"], "--clip-grad-norm nan: must be a finite number > 0"),
        (
            ["--warmup-epochs", "30"],
            "--warmup-epochs 30: must be an integer >= 1 and below --epochs 30, so that epochs "
            "remain for the schedule after it; lower it or raise --epochs",
        ),
        (
            ["--scheduler", "onecycle", "--epochs", "3", "--warmup-epochs", "3"],
            "--warmup-epochs 3: must be an integer >= 1 and below --epochs 3",
        ),
        (["--warmup-epochs", "0"], "--warmup-epochs 0: must be an integer >= 1 and below"),
        (
            ["--optimizer", "sgd", "--momentum", "0.5", "--scheduler", "onecycle"],
            "--momentum 0.5: applies to a --scheduler other than onecycle only, not to "
            "--scheduler onecycle, which cycles the momentum itself (0.95 down to 0.85 and "
            "back); drop --momentum (or choose a --scheduler other than onecycle)",
        ),
        (
            ["--norm", "batch", "--batch-size", "719"],  # 720 samples: a last batch of one
            "--norm batch: with --batch-size 719, a batch of the 720 training samples holds 1 "
            "sample, and batch norm needs at least 2 to estimate a variance; choose another "
            "--batch-size, or --norm layer",
        ),
    ],
)
def test_each_new_option_is_refused_with_one_line_before_anything_is_written(
    tmp_path, args, message
):
    one_line_error(gpugrad("train", *SMALL, *args, cwd=tmp_path), message)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_norm_is_refused_by_the_parser(tmp_path):
    proc = gpugrad("train", "--norm", "group", cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --norm: invalid choice: 'group'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_new_options_and_choices(tmp_path):
    proc = gpugrad("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    for needle in (
        "--norm {none,layer,batch}",
        "--label-smoothing S",
        "--clip-grad-norm X",
        "--warmup-epochs N",
        "{none,step,cosine,onecycle,plateau}",
        "gelu",
        "silu",
    ):
        assert needle in help_text, needle


# ----------------------------------------------------------------------------- they take effect


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory) -> Path:
    """gpugrad train on moons with every new option but the two schedules."""
    cwd = tmp_path_factory.mktemp("recipe")
    args = ["--norm", "layer", "--activation", "gelu", "--label-smoothing", "0.1"]
    args += ["--clip-grad-norm", "0.5", "--warmup-epochs", "1", "--epochs", "3", "--out", "run"]
    proc = gpugrad("train", *SMALL, *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    (cwd / "run" / "stdout.txt").write_text(proc.stdout)
    return cwd / "run"


def test_the_options_reach_the_model_summary_and_metrics(recipe_run):
    first, *epochs = (recipe_run / "stdout.txt").read_text().splitlines()
    # MLP 2-8-2 with a LayerNorm(8): 24 + 18 weights and biases, and 16 for the norm.
    assert "model MLP 2-8-2 gelu layernorm, 58 parameters" in first
    assert "adam lr 0.003, cosine schedule after 1 warm-up epoch, label smoothing 0.1, " in first
    assert "grad norm clipped to 0.5, batch 64" in first
    assert epochs[0].startswith("epoch 1/3") and "grad norm " in epochs[0]
    assert "/12 clipped)" in epochs[0]  # moons: 720 samples, 12 batches of 64
    metrics = json.loads((recipe_run / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["norm"], config["activation"], config["label_smoothing"]) == (
        "layer",
        "gelu",
        0.1,
    )
    assert (config["clip_grad_norm"], config["warmup_epochs"]) == (0.5, 1)
    assert metrics["num_parameters"] == 58
    state = load_checkpoint(recipe_run / "checkpoint.npz")
    assert state["model"]["1.weight"].shape == (8,) and "1.running_mean" not in state["model"]


def test_the_warm_up_starts_at_lr_over_25_then_the_schedule_runs_over_the_rest(recipe_run):
    lrs = [h["lr"] for h in json.loads((recipe_run / "metrics.json").read_text())["epochs"]]
    # Epoch 1 warms up at 3e-3 / 25; then cosine over the 2 remaining epochs: 3e-3, 1.5e-3.
    assert lrs == pytest.approx([3e-3 / 25, 3e-3, 1.5e-3], rel=1e-12)


def test_the_reported_losses_are_the_label_smoothed_cross_entropy(recipe_run):
    metrics = json.loads((recipe_run / "metrics.json").read_text())
    model = nn.MLP([2, 8, 2], activation="gelu", norm="layer")
    model.load_state_dict(load_checkpoint(recipe_run / "checkpoint.npz")["model"])
    test = load_dataset("moons", "test")
    with gg.no_grad():
        logits = model.eval()(gg.tensor(test.x))
        smoothed = F.cross_entropy(logits, gg.tensor(test.y), label_smoothing=0.1).item()
        plain = F.cross_entropy(logits, gg.tensor(test.y)).item()
    assert metrics["test"]["loss"] == pytest.approx(smoothed, rel=1e-5)
    assert abs(smoothed - plain) > 1e-2


def test_clipping_bounds_every_step_and_the_epoch_records_the_norm_before_it(tmp_path):
    seen = []

    def after_step(trainer, epoch, batch):  # the gradients the step used are still there
        seen.append(float(get_total_norm([p.grad for p in trainer.model.parameters()]).item()))

    cfg = _small(tmp_path, clip_grad_norm=0.05, epochs=2)
    result = Trainer(cfg, callback=after_step).fit()
    assert result.status == "done" and len(seen) == 2 * 12
    assert max(seen) <= 0.05 * (1 + 1e-5)
    for h in result.history:
        assert h["clipped_steps"] == h["steps"] == 12 and h["clip_norm"] > 0.05
    unclipped = Trainer(_small(tmp_path / "free", epochs=2)).fit().history
    assert "clip_norm" not in unclipped[0]


def test_onecycle_steps_after_every_batch_as_pytorchs_recipe(tmp_path):
    lrs, betas = [], []

    def after_step(trainer, epoch, batch):
        group = trainer.optimizer.param_groups[0]
        lrs.append(group["lr"])
        betas.append(group["betas"][0])

    result = Trainer(_small(tmp_path, scheduler="onecycle"), callback=after_step).fit()
    assert result.status == "done"
    # The same schedule on its own: OneCycleLR(opt, max_lr=lr, epochs, steps_per_epoch=12).
    opt = optim.Adam([gg.zeros(1, requires_grad=True)], lr=3e-3)
    reference = optim.OneCycleLR(opt, max_lr=3e-3, epochs=4, steps_per_epoch=12)
    expected_lrs, expected_betas = [], []
    for _ in range(4 * 12):
        opt.step()
        reference.step()
        expected_lrs.append(opt.param_groups[0]["lr"])
        expected_betas.append(opt.param_groups[0]["betas"][0])
    assert lrs == expected_lrs and betas == expected_betas
    # An epoch records the lr of its last step.
    assert [h["lr"] for h in result.history] == expected_lrs[10::12]


def test_onecycle_warms_up_for_the_given_epochs(tmp_path):
    cfg = _small(tmp_path, scheduler="onecycle", warmup_epochs=1)
    trainer = Trainer(cfg)
    assert trainer.scheduler._schedule_phases[0]["end_step"] == 12 - 1  # the peak: step 12
    assert trainer.fit().status == "done"


@pytest.mark.parametrize("val_fraction", [0.1, 0.0])
def test_plateau_steps_with_the_validation_loss_or_without_one_the_training_loss(
    tmp_path, monkeypatch, val_fraction
):
    # An lr this small leaves the loss flat: the plateau cuts it after 6 epochs without a
    # better metric (patience 5).
    cfg = _small(tmp_path, scheduler="plateau", epochs=8, lr=1e-7, val_fraction=val_fraction)
    metrics, step = [], optim.ReduceLROnPlateau.step
    monkeypatch.setattr(
        optim.ReduceLROnPlateau, "step", lambda self, m: metrics.append(m) or step(self, m)
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    assert result.status == "done"
    metric = "val_loss" if val_fraction else "train_loss"  # never the test split's loss
    assert metrics == [h[metric] for h in result.history]
    lrs = [h["lr"] for h in result.history]
    assert lrs == [1e-7] * 7 + [pytest.approx(1e-8, rel=1e-12)]
    # The same ReduceLROnPlateau fed the run's metric ends in the same state.
    opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1e-7)
    reference = optim.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=5)
    for h in result.history:
        reference.step(h[metric])
    assert trainer.scheduler.state_dict() == {
        **reference.state_dict(),
        "_last_lr": trainer.scheduler.get_last_lr(),
    }


def test_a_plateau_run_may_be_extended_on_resume_a_onecycle_run_may_not(tmp_path):
    for name in ("plateau", "onecycle"):
        args = [*SMALL, "--scheduler", name, "--epochs", "2", "--out", name]
        assert gpugrad("train", *args, cwd=tmp_path).returncode == 0
    longer = gpugrad("train", "--resume", "--out", "plateau", "--epochs", "3", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    assert "epoch 3/3" in longer.stdout
    refused = gpugrad("train", "--resume", "--out", "onecycle", "--epochs", "3", cwd=tmp_path)
    one_line_error(refused, "--epochs 3 differs from the 2 this run's onecycle schedule")
    changed = gpugrad("train", "--resume", "--out", "plateau", "--norm", "layer", cwd=tmp_path)
    one_line_error(changed, "--norm layer differs from the checkpoint's none")


# ----------------------------------------------------------------------------- resume


def _small(out, **kw) -> TrainConfig:
    base = dict(
        dataset="moons",
        hidden=(16, 16),
        batch_size=64,
        epochs=4,
        device="cpu",
        out=str(out),
        plots=False,
        quiet=True,
    )
    return TrainConfig(**{**base, **kw})


def _stop_at(epoch, batch):
    def callback(trainer, e, b):
        if (e, b) == (epoch, batch):
            trainer.request_stop()

    return callback


def _assert_same_run(a, b):
    assert a["model"].keys() == b["model"].keys()
    for name, w in a["model"].items():  # parameters and buffers (BatchNorm's statistics)
        assert np.array_equal(w, b["model"][name]), f"{name} differs"
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for idx, st in a["optimizer"]["state"].items():
        for key, value in st.items():
            assert np.array_equal(value, b["optimizer"]["state"][idx][key]), f"{idx}/{key}"
    assert a["rng"] == b["rng"] and a["scheduler"] == b["scheduler"]
    strip = ("time_s", "samples_per_s")
    assert [{k: v for k, v in h.items() if k not in strip} for h in a["history"]] == [
        {k: v for k, v in h.items() if k not in strip} for h in b["history"]
    ]


@pytest.mark.parametrize(
    "settings, stop",
    [
        ({"scheduler": "onecycle"}, (1, 6)),
        ({"scheduler": "onecycle", "optimizer": "sgd", "warmup_epochs": 2}, (2, 3)),
        ({"scheduler": "cosine", "warmup_epochs": 2}, (1, 6)),  # inside the warm-up
        ({"scheduler": "step", "warmup_epochs": 1, "optimizer": "sgd"}, (2, 9)),
        (
            {"scheduler": "plateau", "warmup_epochs": 1, "norm": "batch"}
            | {"clip_grad_norm": 0.5, "label_smoothing": 0.1, "activation": "silu"},
            (1, 6),
        ),
    ],
)
def test_stopping_mid_epoch_and_resuming_matches_an_unbroken_run(tmp_path, settings, stop):
    whole = Trainer(_small(tmp_path / "whole", **settings)).fit()
    assert whole.status == "done" and whole.epochs_done == 4

    out = tmp_path / "split"
    first = Trainer(_small(out, **settings), callback=_stop_at(*stop)).fit()
    assert first.status == "interrupted" and first.epochs_done == stop[0]
    saved = load_checkpoint(out / "checkpoint.npz")
    assert saved["position"]["batch"] == stop[1] + 1
    trainer = Trainer(_small(out, **settings))
    gg.manual_seed(999)  # a different global stream must not leak into the resumed run
    trainer.load_state_dict(saved)
    assert trainer.fit().status == "done"
    _assert_same_run(
        load_checkpoint(tmp_path / "whole" / "checkpoint.npz"),
        load_checkpoint(out / "checkpoint.npz"),
    )


def test_a_onecycle_run_refuses_to_resume_over_another_number_of_batches(tmp_path):
    cfg = _small(tmp_path, scheduler="onecycle", epochs=2)
    Trainer(cfg, callback=_stop_at(0, 3)).fit()
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    saved["scheduler"]["total_steps"] += 1  # as if planned with a different number of ranks
    with pytest.raises(ValueError, match="planned over 25 steps, but 2 epochs of 12 batches"):
        Trainer(cfg).load_state_dict(saved)


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def batch_norm_run(tmp_path_factory) -> Path:
    """A one-epoch --norm batch run on digits (so the best model is the final one)."""
    out = tmp_path_factory.mktemp("bn") / "run"
    options = {"epochs": 1, "device": "cpu", "out": str(out), "plots": False, "quiet": True}
    assert run_cli({**options, "norm": "batch", "activation": "silu"}) == 0
    return out


def test_predict_rebuilds_a_batch_norm_model_in_eval_mode(batch_norm_run, tmp_path):
    meta = load_metadata(batch_norm_run / "best.safetensors")
    spec = json.loads(meta["gpugrad.model"])
    assert spec == {
        "class": "MLP",
        "sizes": [64, 128, 64, 10],
        "activation": "silu",
        "norm": "batch",
    }
    weights = gg.load(batch_norm_run / "best.safetensors")
    assert weights["1.num_batches_tracked"].shape == () and weights["1.num_batches_tracked"] > 0

    test = load_dataset("digits", "test")
    np.save(tmp_path / "x.npy", test.x)
    np.save(tmp_path / "y.npy", test.y)
    np.save(tmp_path / "one.npy", test.x[:1])
    proc = gpugrad(
        "predict", "--model", batch_norm_run, "--input", "x.npy", "--labels", "y.npy", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    acc = json.loads((batch_norm_run / "metrics.json").read_text())["test"]["acc"]
    assert f"accuracy {acc:.2%} ({round(acc * len(test.y)):,} of 359 rows" in proc.stdout
    # Eval mode: running statistics, so a row's class does not depend on its batch (in
    # training mode a batch of one row cannot even be normalized).
    listed = gpugrad("predict", "--model", batch_norm_run, "--input", "x.npy", cwd=tmp_path)
    alone = gpugrad("predict", "--model", batch_norm_run, "--input", "one.npy", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.split() == listed.stdout.split()[:1]
