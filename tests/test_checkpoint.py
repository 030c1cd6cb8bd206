"""Checkpoints: round trips of nested state, error messages, and atomicity under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import gpugrad as gg
from gpugrad.checkpoint import atomic_write, load_checkpoint, save_checkpoint


def test_nested_state_round_trips_with_types_intact(tmp_path):
    rng = np.random.default_rng(7)
    state = {
        "model": {"0.weight": rng.standard_normal((3, 2)).astype(np.float32), "0.bias": [1.5]},
        "optimizer": {
            "state": {0: {"step": 4, "exp_avg": np.ones(3, np.float16)}, 1: {}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "scalar": np.float32(0.1),
        "rng": rng.bit_generator.state,  # 128-bit integers
        "history": [{"loss": float("nan"), "acc": 0.5}],
        "tensor": gg.tensor([1.0, 2.0]),
        "none": None,
    }
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, state)
    out = load_checkpoint(path)
    np.testing.assert_array_equal(out["model"]["0.weight"], state["model"]["0.weight"])
    assert out["model"]["0.weight"].dtype == np.float32
    assert out["optimizer"]["state"][0]["exp_avg"].dtype == np.float16
    assert set(out["optimizer"]["state"]) == {0, 1}  # integer keys stay integers
    assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert type(out["scalar"]) is np.float32 and out["scalar"] == np.float32(0.1)
    assert out["rng"] == state["rng"]
    assert np.isnan(out["history"][0]["loss"]) and out["none"] is None
    np.testing.assert_array_equal(out["tensor"], [1.0, 2.0])
    # Arrays are real npz entries named by their path, readable by plain NumPy.
    with np.load(path) as z:
        assert "model/0.weight" in z.files and "optimizer/state/0/exp_avg" in z.files


def test_restored_generator_state_continues_the_same_stream(tmp_path):
    rng = np.random.default_rng(123)
    rng.random(5)
    save_checkpoint(tmp_path / "c.npz", {"rng": rng.bit_generator.state})
    expected = rng.random(4)
    other = np.random.default_rng()
    other.bit_generator.state = load_checkpoint(tmp_path / "c.npz")["rng"]
    np.testing.assert_array_equal(other.random(4), expected)


def test_unsupported_values_and_colliding_names_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store a of type object"):
        save_checkpoint(tmp_path / "c.npz", {"a": object()})
    with pytest.raises(ValueError, match="'a/b'"):
        save_checkpoint(tmp_path / "c.npz", {"a/b": np.ones(1), "a": {"b": np.ones(1)}})
    assert not list(tmp_path.iterdir())


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_checkpoint(path)
    path.write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ValueError, match="corrupt checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    np.savez(path, w=np.ones(2))
    with pytest.raises(ValueError, match="not a gpugrad checkpoint"):
        load_checkpoint(path)
    save_checkpoint(path, {"w": np.ones(2)})
    truncated = path.read_bytes()[:-40]
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)


def test_a_failing_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"version": 1, "w": np.zeros(3)})
    calls = []
    write_array = np.lib.format.write_array

    def write_array_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # after the metadata entry, half-way through the arrays
            raise OSError("disk full")
        return write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_array_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"version": 2, "w": np.ones(3)})
    monkeypatch.undo()
    assert load_checkpoint(path)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_atomic_write_gives_the_file_ordinary_permissions(tmp_path):
    atomic_write(tmp_path / "m.json", lambda f: f.write(b"{}"))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from gpugrad.checkpoint import save_checkpoint

    path = sys.argv[1]
    # 24 MB per save, so that most of the writer's time is spent inside save_checkpoint.
    big = np.empty(6_000_000, np.float32)
    i = 0
    while True:
        big.fill(i)
        save_checkpoint(path, {"i": i, "weights": {"big": big, "tail": np.full(3, i)}})
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_save_never_destroys_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    killed_mid_save = 0
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            for _ in range(2):  # at least one complete save of this trial exists
                assert proc.stdout.readline().strip(), "the writer died before saving"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        state = load_checkpoint(path)  # must load, whatever moment the kill hit
        assert state["i"] >= 1
        assert (state["weights"]["big"] == state["i"]).all()
        assert (state["weights"]["tail"] == state["i"]).all()
        leftovers = [p for p in tmp_path.iterdir() if p != path]
        killed_mid_save += bool(leftovers)
        for p in leftovers:
            # A torn temp file is recognisably not a checkpoint name: hidden, *.tmp.
            assert p.name.startswith(".checkpoint.npz.") and p.name.endswith(".tmp")
            p.unlink()
        assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["checkpoint.npz"]
        assert zipfile.is_zipfile(path)
    # The writer spends nearly all its time saving, so at least one kill must have landed
    # mid-save; otherwise this test did not exercise what it claims to.
    assert killed_mid_save >= 1


def test_files_of_another_format_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    meta = np.frombuffer(b'{"format": "something-else", "state": {}}', np.uint8)
    np.savez(path, __meta__=meta)
    with pytest.raises(ValueError, match="unknown checkpoint format 'something-else'"):
        load_checkpoint(path)
