"""What a run leaves behind is usable afterwards: metrics.json says what, where and when;
best.safetensors loads with gg.load (and rebuilds itself for gpugrad predict); the plots say
when they have little or nothing to show."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import nn
from gpugrad.checkpoint import load_checkpoint
from gpugrad.data import load_dataset
from gpugrad.plots import _notes, write_plots
from gpugrad.serialization import load_metadata
from gpugrad.train import run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """gpugrad train on digits for one epoch (so the best model is the final one)."""
    out = tmp_path_factory.mktemp("digits") / "run"
    options = {"epochs": 1, "device": "cpu", "out": str(out), "plots": False, "quiet": True}
    assert run_cli(options) == 0
    return out


def _predict(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_metrics_say_what_ran_where_and_when(digits_run):
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["gpugrad"] == gg.__version__ and metrics["status"] == "done"
    assert metrics["started"] <= metrics["ended"] and "T" in metrics["started"]
    assert {"host", "platform", "python", "numpy", "cpu", "cpus"} <= set(metrics["machine"])
    assert metrics["device"] == "cpu" and metrics["device_name"]
    config = metrics["config"]
    assert config["optimizer"] == "adam" and config["lr"] == 3e-3
    assert "momentum" not in config and "data_dir" not in config  # they do not apply


def test_best_weights_load_with_gg_load_and_equal_best_npz(digits_run):
    weights = gg.load(digits_run / "best.safetensors")
    best = load_checkpoint(digits_run / "best.npz")["model"]
    names = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]  # PyTorch's
    assert list(best) == names and sorted(weights) == sorted(names)
    for name, w in best.items():
        assert np.array_equal(weights[name], w) and weights[name].dtype == np.float32
    model = nn.MLP([64, 128, 64, 10])
    model.load_state_dict(weights)
    meta = load_metadata(digits_run / "best.safetensors")
    assert json.loads(meta["gpugrad.model"]) == {
        "class": "MLP",
        "sizes": [64, 128, 64, 10],
        "activation": "relu",
    }
    assert meta["format"] == "pt" and meta["gpugrad.epoch"] == "1"


def test_predict_scores_the_test_split_as_the_run_did(digits_run, tmp_path):
    test = load_dataset("digits", "test")
    np.save(tmp_path / "x.npy", test.x)
    np.save(tmp_path / "y.npy", test.y)
    proc = _predict("--model", digits_run, "--input", "x.npy", "--labels", "y.npy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    acc = json.loads((digits_run / "metrics.json").read_text())["test"]["acc"]
    right = round(acc * len(test.y))
    assert f"accuracy {acc:.2%} ({right:,} of {len(test.y):,} rows of x.npy)" in proc.stdout

    listed = _predict("--model", digits_run / "best.safetensors", "--input", "x.npy", cwd=tmp_path)
    classes = np.array(listed.stdout.split(), dtype=np.int64)
    assert len(classes) == len(test.y) and (classes == test.y).mean() == pytest.approx(acc)

    proc = _predict("--model", digits_run, "--input", "x.npy", "--output", "p.npy", cwd=tmp_path)
    assert proc.returncode == 0 and np.array_equal(np.load(tmp_path / "p.npy"), classes)


def test_predict_refuses_unusable_models_and_inputs(digits_run, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((3, 65), np.float32))
    np.save(tmp_path / "x.npy", np.zeros((3, 64), np.float32))
    gg.save({"w": np.ones(2)}, tmp_path / "plain.safetensors")
    cases = [
        (["--model", digits_run, "--input", "wide.npy"], "takes rows of 64 features"),
        (["--model", digits_run, "--input", "nope.npy"], "--input nope.npy: no such file"),
        (["--model", tmp_path, "--input", "x.npy"], "holds no best.safetensors"),
        (["--model", digits_run / "best.npz", "--input", "x.npy"], "a checkpoint; give the"),
        (["--model", "plain.safetensors", "--input", "x.npy"], "does not describe a model"),
    ]
    for args, message in cases:
        proc = _predict(*args, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_predict_notes_inputs_far_outside_the_training_range(digits_run, tmp_path):
    np.save(tmp_path / "raw.npy", load_dataset("digits", "test").x[:5] * 16)  # pixels 0..16
    proc = _predict("--model", digits_run, "--input", "raw.npy", cwd=tmp_path)
    assert proc.returncode == 0
    assert "note: the inputs span 0..16, the training data 0..1" in proc.stderr


def _history(values):
    return [
        {
            "epoch": i + 1,
            "train_loss": v,
            "val_loss": v,
            "train_acc": 0.5,
            "val_acc": 0.5,
            "grad_norm": {"0.weight": v},
        }
        for i, v in enumerate(values)
    ]


def test_plot_notes_name_single_epochs_and_values_that_are_not_finite():
    assert _notes(_history([1.0]), ["train_loss"]) == ["a single epoch: one point per curve"]
    notes = _notes(_history([1.0, math.nan, math.inf]), ["train_loss", "val_loss"])
    assert notes == ["not finite (not drawn) at epoch 2, 3"]
    assert _notes(_history([2.0, 1.0]), ["train_loss"]) == []


@pytest.mark.parametrize("values", [[1.0], [3.0, math.nan, 0.5], [2.0, 1.0, 0.1]])
def test_plots_are_written_for_short_and_broken_runs(tmp_path, values):
    pytest.importorskip("matplotlib")
    best = {"epoch": 1, "val_acc": 0.5}
    assert write_plots(_history(values), tmp_path, "moons", best) is None
    for png in ("curves.png", "grad_flow.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
