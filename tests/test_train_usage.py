"""``gpugrad train`` as a user meets it: runs are never overwritten, bad values and unusable
folders are refused up front with one line (exit 2), a missing optional dependency says what to
install, and --resume refuses what it cannot continue."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpugrad.train import TrainConfig, rundir
from gpugrad.train.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--dataset", "moons", "--hidden", "8", "--no-plots", "--quiet"]


def _env(*front: Path) -> dict:
    path = [str(p) for p in front] + [str(ROOT), *sys.path]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def gpugrad(*args, cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or _env(),
        timeout=180,
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes and its mtime."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        + f" {p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_error(proc, *needles) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A folder holding a finished one-epoch run, as gpugrad train leaves it."""
    cwd = tmp_path_factory.mktemp("finished")
    proc = gpugrad("train", *SMALL, "--epochs", "1", "--out", "run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "run"


def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_changes_nothing(finished_run):
    before = snapshot(finished_run.parent)
    proc = gpugrad("train", *SMALL, "--epochs", "2", "--out", "run", cwd=finished_run.parent)
    err = one_line_error(proc, "--out run already holds a run (done, 1/1 epochs)")
    assert "--overwrite" in err and "--out DIR" in err
    assert "--resume" not in err, "a finished run cannot be resumed, so it is not offered"
    assert snapshot(finished_run.parent) == before


def test_without_out_a_rerun_takes_the_next_numbered_folder(tmp_path):
    first = gpugrad("train", *SMALL, "--epochs", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "runs" / "moons")
    second = gpugrad("train", *SMALL, "--epochs", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "runs/moons holds an earlier run (done, 1/1 epochs)" in second.stdout
    assert "this run writes to runs/moons-2" in second.stdout
    assert snapshot(tmp_path / "runs" / "moons") == before
    assert (tmp_path / "runs" / "moons-2" / "checkpoint.npz").exists()
    resumed = gpugrad("train", *SMALL, "--resume", cwd=tmp_path)
    one_line_error(resumed, "runs/moons-2 has done 1 of 1 epochs")


def test_overwrite_replaces_the_runs_outputs_and_keeps_other_files(tmp_path):
    assert gpugrad("train", *SMALL, "--epochs", "2", "--out", "run", cwd=tmp_path).returncode == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    proc = gpugrad("train", *SMALL, "--epochs", "1", "--out", "run", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == 1 and len(metrics["epochs"]) == 1
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lr", "nan", "--lr nan: must be a finite number > 0"),
        ("--lr", "inf", "--lr inf: must be a finite number > 0"),
        ("--lr", "-1", "--lr -1: must be a finite number > 0"),
        ("--lr", "0", "--lr 0: must be a finite number > 0"),
        ("--batch-size", "0", "--batch-size 0: must be an integer >= 1"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(tmp_path, option, value, message):
    proc = gpugrad("train", option, value, cwd=tmp_path)
    one_line_error(proc, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "--epochs 0: must be an integer >= 1"),
        ({"momentum": 1.0, "optimizer": "sgd"}, "--momentum 1: must be a finite number in [0, 1)"),
        ({"weight_decay": float("nan")}, "--weight-decay nan: must be a finite number >= 0"),
        ({"val_fraction": -0.1}, "--val-fraction -0.1: must be a finite number in [0, 1)"),
        ({"seed": -1}, "--seed -1: must be an integer >= 0"),
        ({"hidden": (8, 0)}, "--hidden 8,0: must be comma-separated integers >= 1"),
        ({"device": "gpu"}, "--device gpu: must be auto, cpu, cuda or cuda:N"),
        ({"momentum": 0.5}, "--momentum 0.5: applies to --optimizer sgd only, not to --optimizer"),
        ({"data_dir": "d"}, "--data-dir d: applies to --dataset mnist or fashion-mnist only"),
        ({"optimizer": "rmsprop"}, "--optimizer 'rmsprop': must be one of sgd, adam, adamw"),
    ],
)
def test_each_setting_is_checked_with_its_own_message(settings, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**settings)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"norm": "group"}, "--norm 'group': must be one of none, layer, batch"),
        ({"label_smoothing": 1.0}, "--label-smoothing 1: must be a finite number in [0, 1)"),
        (
            {"label_smoothing": 0.1, "loss": "mse"},
            "--label-smoothing 0.1: applies to --loss cross_entropy only, not to --loss mse; "
            "drop --label-smoothing (or choose --loss cross_entropy)",
        ),
        ({"clip_grad_norm": -1.0}, "--clip-grad-norm -1: must be a finite number > 0"),
        ({"clip_grad_norm": math.inf}, "--clip-grad-norm inf: must be a finite number > 0"),
        (
            {"warmup_epochs": 5, "epochs": 5},
            "--warmup-epochs 5: must be an integer >= 1 and below --epochs 5, so that epochs "
            "remain for the schedule after it; lower it or raise --epochs",
        ),
        ({"warmup_epochs": 0}, "--warmup-epochs 0: must be an integer >= 1 and below --epochs 30"),
        ({"warmup_epochs": 1.5}, "--warmup-epochs 1.5: must be an integer >= 1"),
        ({"scheduler": "linear"}, "--scheduler 'linear': must be one of none, step, cosine, "),
        (
            {"momentum": 0.5, "optimizer": "sgd", "scheduler": "onecycle"},
            "--momentum 0.5: applies to a --scheduler other than onecycle only, not to "
            "--scheduler onecycle, which cycles the momentum itself",
        ),
    ],
)
def test_the_training_recipe_options_are_checked_with_their_own_messages(settings, message):
    # Each option is one field of TrainConfig (config.py): its checks come with it.
    with pytest.raises(ConfigError) as error:
        TrainConfig(**settings)
    assert str(error.value).startswith(message), str(error.value)


def test_options_that_apply_to_some_runs_only_are_recorded_only_there():
    ce, mse = TrainConfig(), TrainConfig(loss="mse")
    assert ce.label_smoothing == 0.0 and mse.label_smoothing is None
    assert "label_smoothing" not in mse.to_json()
    onecycle = TrainConfig(optimizer="sgd", scheduler="onecycle")
    assert onecycle.momentum is None and "momentum" not in onecycle.to_json()
    plain = TrainConfig().to_json()
    assert "clip_grad_norm" not in plain and "warmup_epochs" not in plain
    assert plain["norm"] == "none"
    # A checkpoint written before these options resumes with their defaults.
    old = {k: v for k, v in plain.items() if k not in ("norm", "label_smoothing")}
    assert TrainConfig.from_json(old) == TrainConfig()


def test_optimizer_defaults_apply_only_where_they_mean_something():
    sgd, adam, adamw = (TrainConfig(optimizer=o) for o in ("sgd", "adam", "adamw"))
    assert (sgd.lr, sgd.momentum, sgd.weight_decay) == (0.1, 0.9, 0.0)
    assert (adam.lr, adam.momentum, adamw.weight_decay) == (3e-3, None, 1e-2)
    assert "momentum" not in adam.to_json() and "data_dir" not in adam.to_json()
    # Checkpoints of earlier versions stored momentum for every optimizer.
    old = {**adam.to_json(), "momentum": 0.9, "data_dir": None}
    assert TrainConfig.from_json(old) == adam


def test_a_file_as_out_is_a_one_line_error(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    one_line_error(gpugrad("train", "--out", "taken", cwd=tmp_path), "--out taken: is a file")
    proc = gpugrad("train", "--out", "taken/run", cwd=tmp_path)
    one_line_error(proc, "--out taken/run: is inside taken, a file")
    assert (tmp_path / "taken").read_text() == "not a folder"


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(stat.S_IRWXU)
    pytest.skip("chmod cannot make a folder read-only for this user (root)")


def test_a_read_only_out_is_a_one_line_error(tmp_path):
    folder = _read_only_folder(tmp_path)
    try:
        proc = gpugrad("train", *SMALL, "--out", folder / "run", cwd=tmp_path)
        one_line_error(proc, f"--out {folder / 'run'}: cannot write there", "Permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(stat.S_IRWXU)


def test_an_unwritable_out_is_refused_before_the_run(tmp_path, monkeypatch):
    # The same check as the test above, for machines where chmod cannot lock a folder: the
    # probe file cannot be made.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rundir.tempfile, "TemporaryFile", refuse)
    with pytest.raises(rundir.OutputError, match="cannot write there .Permission denied."):
        rundir.check_writable(tmp_path / "run")
    assert not (tmp_path / "run").exists()


_MISSING = "raise ModuleNotFoundError(\"No module named '{0}' (simulated)\", name='{0}')\n"


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("mpi4py", ["--distributed", "mpi"], "pip install 'gpugrad[mpi]'"),
        ("cupy", ["--distributed", "nccl"], "pip install 'gpugrad[cuda12]' or 'gpugrad[cuda13]'"),
    ],
)
def test_a_missing_optional_dependency_names_what_to_install(tmp_path, module, args, message):
    shadow = tmp_path / "shadow"
    (shadow / module).mkdir(parents=True)
    (shadow / module / "__init__.py").write_text(_MISSING.format(module))
    proc = gpugrad("train", *SMALL, *args, "--out", "run", cwd=tmp_path, env=_env(shadow))
    one_line_error(proc, f"{module} is not installed", message)
    assert not (tmp_path / "run").exists()


def test_without_matplotlib_the_run_says_it_skipped_the_plots(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "matplotlib").mkdir(parents=True)
    (shadow / "matplotlib" / "__init__.py").write_text(_MISSING.format("matplotlib"))
    args = ["--dataset", "moons", "--hidden", "8", "--epochs", "1", "--out", "run"]
    proc = gpugrad("train", *args, cwd=tmp_path, env=_env(shadow))
    assert proc.returncode == 0, proc.stderr
    assert "plots skipped: matplotlib is not installed" in proc.stdout
    assert "pip install 'gpugrad[train]'" in proc.stdout
    assert not (tmp_path / "run" / "curves.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "3"], "--epochs 3 differs from the 1 this run's cosine schedule"),
        (["--lr", "0.5"], "--lr 0.5 differs from the checkpoint's 0.003"),
        (["--optimizer", "sgd"], "--optimizer sgd differs from the checkpoint's adam"),
        ([], "run has done 1 of 1 epochs, nothing is left to train"),
        (["--overwrite"], "--resume and --overwrite contradict each other"),
    ],
)
def test_resume_refuses_what_it_cannot_continue(finished_run, args, message):
    before = snapshot(finished_run)
    proc = gpugrad("train", "--resume", "--out", "run", *args, cwd=finished_run.parent)
    one_line_error(proc, message)
    assert snapshot(finished_run) == before


_FAIL_WRITES = textwrap.dedent(
    """
    import errno, sys
    import gpugrad.train.trainer as trainer
    from gpugrad.cli import main

    def disk_full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    trainer.save_checkpoint = disk_full
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_write_failing_mid_run_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _FAIL_WRITES, "train", *SMALL, "--epochs", "1", "--out", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    assert "cannot write run/checkpoint.npz: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
