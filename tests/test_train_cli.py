"""The training loop and ``gpugrad train``: outputs, exact resume, Ctrl-C, device errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import gpugrad as gg
from gpugrad.checkpoint import load_checkpoint
from gpugrad.cli import main
from gpugrad.train import TrainConfig, Trainer, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _small(out, **kw) -> TrainConfig:
    base = dict(
        dataset="moons",
        hidden=(16, 16),
        batch_size=32,
        epochs=4,
        device="cpu",
        out=str(out),
        plots=False,
        quiet=True,
        scheduler="cosine",
    )
    return TrainConfig(**{**base, **kw})


def _final_state(out):
    return load_checkpoint(out / "checkpoint.npz")


def _assert_same_run(a, b):
    for name, w in a["model"].items():
        assert np.array_equal(w, b["model"][name]), f"parameter {name} differs"
    for idx, st in a["optimizer"]["state"].items():
        for key, value in st.items():
            assert np.array_equal(value, b["optimizer"]["state"][idx][key]), f"{idx}/{key}"
    assert a["rng"] == b["rng"] and a["scheduler"] == b["scheduler"]
    strip = ("time_s", "samples_per_s")
    assert [{k: v for k, v in h.items() if k not in strip} for h in a["history"]] == [
        {k: v for k, v in h.items() if k not in strip} for h in b["history"]
    ]


def _stop_at(epoch, batch):
    def callback(trainer, e, b):
        if (e, b) == (epoch, batch):
            trainer.request_stop()

    return callback


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stopping_mid_epoch_and_resuming_matches_an_unbroken_run(tmp_path, optimizer):
    whole = Trainer(_small(tmp_path / "whole", optimizer=optimizer)).fit()
    assert whole.status == "done" and whole.epochs_done == 4

    out = tmp_path / "split"
    first = Trainer(_small(out, optimizer=optimizer), callback=_stop_at(1, 6)).fit()
    assert first.status == "interrupted" and first.epochs_done == 1
    saved = _final_state(out)
    assert saved["epoch"] == 1 and saved["position"]["batch"] == 7
    trainer = Trainer(_small(out, optimizer=optimizer))
    gg.manual_seed(999)  # a different global stream must not leak into the resumed run
    trainer.load_state_dict(saved)
    assert trainer.fit().status == "done"
    _assert_same_run(_final_state(tmp_path / "whole"), _final_state(out))


def test_two_epochs_then_resume_to_four_matches_four_epochs(tmp_path, capsys):
    common = {"dataset": "spirals", "hidden": (16,), "device": "cpu", "quiet": True}
    common |= {"plots": False, "scheduler": "none", "batch_size": 50}
    assert run_cli({**common, "epochs": 4, "out": str(tmp_path / "a")}) == 0
    assert run_cli({**common, "epochs": 2, "out": str(tmp_path / "b")}) == 0
    assert run_cli({"epochs": 4, "out": str(tmp_path / "b"), "resume": True}) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a["epoch"] == b["epoch"] == 4
    _assert_same_run(a, b)


def test_resume_refuses_a_changed_setting(tmp_path, capsys):
    opts = {"dataset": "moons", "hidden": (8,), "epochs": 1, "device": "cpu", "plots": False}
    assert run_cli({**opts, "out": str(tmp_path)}) == 0
    assert run_cli({"out": str(tmp_path), "resume": True, "lr": 0.5}) == 2
    assert "--lr 0.5 differs from the checkpoint's 0.003" in capsys.readouterr().err


def test_cli_trains_digits_for_one_epoch_and_writes_its_outputs(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "gpugrad", "train", "--epochs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "device cpu" in lines[0] and "17,226 parameters" in lines[0]
    assert lines[1].startswith("epoch 1/1") and "samples/s" in lines[1]
    assert "test loss" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["num_parameters"] == 17226
    (epoch,) = metrics["epochs"]
    assert 0.5 < epoch["val_acc"] <= 1 and 0.5 < metrics["test"]["acc"] <= 1
    assert epoch["train_loss"] < np.log(10)  # below chance after one epoch
    assert set(epoch["grad_norm"]) == {"0.weight", "2.weight", "4.weight"}
    assert all(v > 0 for v in epoch["grad_norm"].values())
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # plots are an optional extra: then the run must say it skipped them
        assert "plots skipped: matplotlib is not installed" in proc.stdout
    else:
        for png in ("curves.png", "grad_flow.png"):
            assert (out / png).read_bytes()[:8] == PNG
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["epoch"] == 1 and state["model"]["0.weight"].shape == (128, 64)
    assert (out / "best.npz").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gpugrad", "train", "--epochs", "100000", "--no-plots"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    try:
        while b"epoch" not in proc.stdout.readline():  # training has started
            assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"--resume" in err and b"Traceback" not in err
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["epoch"] >= 1
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"


def test_device_cuda_without_a_gpu_exits_2_with_one_line(tmp_path, capsys):
    if gg.cuda_is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "CUDA is unavailable" in err and "--device cuda" in err
    assert not list(tmp_path.iterdir())


def test_missing_mnist_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "train-images-idx3-ubyte" in err


@pytest.mark.gpu
def test_train_runs_on_the_gpu(tmp_path):
    if not gg.cuda_is_available():
        pytest.skip("no CUDA device")
    result = Trainer(_small(tmp_path, device="cuda", epochs=2)).fit()
    assert result.status == "done" and result.test["acc"] > 0.7
