"""gg.save / gg.load: round trips of tensors, state dicts and optimizer state; no pickle ever;
clear errors for truncated and foreign files; weights shared with PyTorch through safetensors."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import nn, optim
from gpugrad.data import load_dataset
from gpugrad.serialization import load_metadata


def _trained_mlp(sizes=(64, 32, 10), steps=3):
    gg.manual_seed(0)
    model = nn.MLP(list(sizes))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    data = load_dataset("digits", "train")
    for i in range(steps):
        x, y = gg.tensor(data.x[i * 32 : (i + 1) * 32]), gg.tensor(data.y[i * 32 : (i + 1) * 32])
        loss = gg.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("name", ["t.safetensors", "t.npz"])
def test_a_tensor_comes_back_as_a_tensor_with_dtype_and_requires_grad(tmp_path, name):
    t = gg.tensor(np.arange(6, dtype=np.float64).reshape(2, 3), requires_grad=True)
    gg.save(t, tmp_path / name)
    back = gg.load(tmp_path / name)
    assert isinstance(back, gg.Tensor) and back.requires_grad and back.dtype == np.float64
    np.testing.assert_array_equal(back.numpy(), t.numpy())


def test_a_state_dict_round_trips_through_safetensors(tmp_path):
    model, _ = _trained_mlp()
    gg.save(model.state_dict(), tmp_path / "m.safetensors", metadata={"note": "digits"})
    other = nn.MLP([64, 32, 10])
    assert other.load_state_dict(gg.load(tmp_path / "m.safetensors")) == ([], [])
    for (name, p), q in zip(model.named_parameters(), other.parameters(), strict=True):
        assert np.array_equal(p.numpy(), q.numpy()), name
    assert load_metadata(tmp_path / "m.safetensors") == {"note": "digits"}
    loaded = gg.load(tmp_path / "m.safetensors")
    loaded["0.weight"][0, 0] = 42.0  # the caller owns writable arrays, not views of the file


def test_optimizer_state_round_trips_and_resumes_identically(tmp_path):
    model, opt = _trained_mlp()
    gg.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "s.npz")
    state = gg.load(tmp_path / "s.npz")
    twin = nn.MLP([64, 32, 10])
    twin.load_state_dict(state["model"])
    twin_opt = optim.Adam(twin.parameters(), lr=1e-2)
    twin_opt.load_state_dict(state["optimizer"])
    x = gg.tensor(load_dataset("digits", "test").x[:16])
    y = gg.tensor(load_dataset("digits", "test").y[:16])
    for m, o in ((model, opt), (twin, twin_opt)):
        loss = gg.functional.cross_entropy(m(x), y)
        o.zero_grad()
        loss.backward()
        o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert np.array_equal(p.numpy(), q.numpy())


def test_nested_values_keep_their_types(tmp_path):
    obj = {"w": gg.tensor([1.0, 2.0]), "a": np.ones(2, np.int32), "n": [1, (2.5, "x")], 3: None}
    gg.save(obj, tmp_path / "o.npz")
    back = gg.load(tmp_path / "o.npz")
    assert isinstance(back["w"], gg.Tensor) and isinstance(back["a"], np.ndarray)
    assert back["a"].dtype == np.int32 and back["n"] == [1, (2.5, "x")] and back[3] is None


def test_safetensors_refuses_what_it_cannot_hold(tmp_path):
    _, opt = _trained_mlp(steps=1)
    with pytest.raises(TypeError, match="use a .npz path|save nested state"):
        gg.save(opt.state_dict(), tmp_path / "o.safetensors")
    with pytest.raises(TypeError, match="metadata is stored in .safetensors headers only"):
        gg.save({"a": np.ones(1)}, tmp_path / "o.npz", metadata={"k": "v"})
    assert not list(tmp_path.iterdir())


def test_truncated_and_foreign_files_are_refused_by_name(tmp_path):
    model, _ = _trained_mlp(steps=0)
    good = tmp_path / "m.safetensors"
    gg.save(model.state_dict(), good)
    for cut in (5, 40, len(good.read_bytes()) - 8):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(good.read_bytes()[:cut])
        with pytest.raises(ValueError, match=str(bad)):
            gg.load(bad)
    gg.save({"a": np.ones(3)}, tmp_path / "c.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes((tmp_path / "c.npz").read_bytes()[:-30])
    with pytest.raises(ValueError, match=str(cut)):
        gg.load(cut)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        gg.load(tmp_path / "nope.npz")


class _Boom:
    def __reduce__(self):
        return (print, ("pickle ran code",))


def test_pickles_are_never_unpickled(tmp_path, capsys):
    raw = tmp_path / "evil.pt"
    raw.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="never unpickles"):
        gg.load(raw)
    zipped = tmp_path / "evil_zip.pt"  # torch.save's layout: a zip holding a pickle
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="without gpugrad's __meta__ entry"):
        gg.load(zipped)
    assert "pickle ran code" not in capsys.readouterr().out


def _digits_test_inputs():
    return load_dataset("digits", "test").x


def test_weights_go_to_pytorch_and_back_with_identical_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    model, _ = _trained_mlp(sizes=(64, 128, 64, 10))
    x = _digits_test_inputs()
    with gg.no_grad():
        ours = model(gg.tensor(x)).numpy()
    gg.save(model.state_dict(), tmp_path / "gg.safetensors")

    peer = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    peer.load_state_dict(load_file(tmp_path / "gg.safetensors"))
    with torch.no_grad():
        theirs = peer(torch.from_numpy(x)).numpy()
    # Two float32 implementations: the same function up to rounding, the same predictions.
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))

    save_file(peer.state_dict(), tmp_path / "torch.safetensors")
    back = nn.MLP([64, 128, 64, 10])
    back.load_state_dict(gg.load(tmp_path / "torch.safetensors"))
    with gg.no_grad():
        again = back(gg.tensor(x)).numpy()
    assert np.array_equal(again, ours), "gpugrad -> PyTorch -> gpugrad changed the outputs"


def test_batch_norm_buffers_round_trip_with_their_shapes_and_load_into_pytorch(tmp_path):
    # num_batches_tracked is a 0-d int64 buffer: it must stay 0-d, as PyTorch stores it.
    model = nn.MLP([64, 16, 10], norm="batch")
    model(gg.tensor(_digits_test_inputs()[:32]))  # training mode: the running stats move
    gg.save(model.state_dict(), tmp_path / "bn.safetensors")
    loaded = gg.load(tmp_path / "bn.safetensors")
    assert loaded["1.num_batches_tracked"].shape == () and loaded["1.num_batches_tracked"] == 1
    other = nn.MLP([64, 16, 10], norm="batch")
    assert other.load_state_dict(loaded) == ([], [])
    for name, value in model.state_dict().items():
        assert np.array_equal(other.state_dict()[name], value), name

    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    peer = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    )
    peer.load_state_dict(load_file(tmp_path / "bn.safetensors"))
    assert int(peer[1].num_batches_tracked) == 1
