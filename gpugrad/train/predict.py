"""``gpugrad predict``: a trained model's classes for the rows of a ``.npy`` file.

The model comes from a ``best.safetensors`` that ``gpugrad train`` wrote (or the run folder
holding it): its header describes the model, so nothing else is needed to rebuild it. Inputs
are what the dataset loader gives (``gpugrad.data.load_dataset(name, split).x``): one row of
features per sample, such as digits' 64 pixels scaled to [0, 1].
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..engine import no_grad
from ..serialization import load, load_metadata
from ..tensor import Tensor
from . import rundir
from .builders import DeviceUnavailable, model_from_description, resolve_device

BATCH = 4096


class PredictError(ValueError):
    """A model or input file that cannot be used; the message names it and the fix."""


def load_model(path: str | Path, device: str = "cpu"):
    """The model saved at ``path`` (a .safetensors from gpugrad train, or its run folder), in
    eval mode on ``device``, and its header's metadata."""
    path = Path(path)
    if path.is_dir():
        if not (path / rundir.BEST_WEIGHTS).exists():
            raise PredictError(
                f"--model {path}: the folder holds no {rundir.BEST_WEIGHTS}; give a gpugrad "
                "train output folder or the .safetensors file itself"
            )
        path = path / rundir.BEST_WEIGHTS
    if path.suffix == ".npz":
        raise PredictError(
            f"--model {path}: a checkpoint; give the {rundir.BEST_WEIGHTS} beside it (or the "
            "run folder)"
        )
    try:
        meta = load_metadata(path)
        weights = load(path)
    except (FileNotFoundError, ValueError) as e:
        raise PredictError(f"--model: {e}") from None
    if "gpugrad.model" not in meta or "gpugrad.features" not in meta:
        raise PredictError(
            f"--model {path}: its header does not describe a model (gpugrad train writes one); "
            "build the model in Python and call model.load_state_dict(gg.load(path))"
        )
    try:
        model = model_from_description(meta["gpugrad.model"])
        model.load_state_dict(weights)
    except (ValueError, RuntimeError) as e:
        raise PredictError(f"--model {path}: {e}") from None
    if device != "cpu":
        model.to(device)
    return model.eval(), meta


def read_inputs(path: str | Path, features: int) -> np.ndarray:
    """Rows of ``features`` numbers from a .npy file, as float32 (N, features)."""
    path = Path(path)
    x = _load_npy(path, "--input")
    if x.dtype.kind not in "biuf":
        raise PredictError(f"--input {path}: holds {x.dtype} values, not numbers")
    if x.ndim == 1 and x.size == features:
        x = x[None]
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != features:
        raise PredictError(
            f"--input {path}: shape {x.shape}, but the model takes rows of {features} features "
            f"(an array of shape (N, {features}))"
        )
    return x.reshape(len(x), features).astype(np.float32)


def predict(model, x: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes (N,) and their softmax probabilities (N,)."""
    classes, probs = [], []
    with no_grad():
        for i in range(0, len(x), BATCH):
            logits = model(Tensor(x[i : i + BATCH], device=device)).numpy().astype(np.float64)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = z / z.sum(axis=1, keepdims=True)
            classes.append(p.argmax(axis=1))
            probs.append(p.max(axis=1))
    if not classes:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(classes).astype(np.int64), np.concatenate(probs)


def _range_note(x: np.ndarray, meta: dict) -> str | None:
    """A note when the inputs lie far outside the values the model was trained on."""
    try:
        lo, hi = (float(v) for v in meta["gpugrad.feature_range"].split())
    except (KeyError, ValueError):
        return None
    span = max(hi - lo, 1e-12)
    if x.size and (x.min() < lo - span or x.max() > hi + span):
        return (
            f"note: the inputs span {x.min():g}..{x.max():g}, the training data "
            f"{lo:g}..{hi:g}; give features prepared as gpugrad.data.load_dataset gives them"
        )
    return None


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify the rows of a .npy file with a model from gpugrad train",
        description="Print the predicted class of each row of --input, one per line (or write "
        "them to --output, or score them against --labels). Rows hold the features as "
        "gpugrad.data.load_dataset gives them, e.g. digits' 64 pixels scaled to [0, 1].",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="a gpugrad train output folder (its best.safetensors) or such a file",
    )
    p.add_argument("--input", required=True, metavar="X.npy", help="an (N, features) array")
    p.add_argument(
        "--labels",
        metavar="Y.npy",
        help="the true classes (N,): print the accuracy instead of the classes",
    )
    p.add_argument("--output", metavar="OUT.npy", help="write the classes (int64) to this file")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.set_defaults(run=run_predict)


def run_predict(args) -> int:
    try:
        device, _ = resolve_device(args.device)
        model, meta = load_model(args.model, device)
        x = read_inputs(args.input, int(meta["gpugrad.features"]))
        y = read_labels(args.labels, len(x)) if args.labels else None
    except (PredictError, DeviceUnavailable) as e:
        print(f"gpugrad predict: {e}", file=sys.stderr)
        return 2
    note = _range_note(x, meta)
    if note:
        print(note, file=sys.stderr)
    classes, _ = predict(model, x, device)
    if args.output:
        try:
            atomic_write(args.output, lambda f: np.save(f, classes))
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            reason = f"{e.strerror or e}{where}"
            print(
                f"gpugrad predict: --output {args.output}: cannot write it: {reason}",
                file=sys.stderr,
            )
            return 2
        print(f"wrote {len(classes):,} predicted classes to {args.output}")
    if y is not None:
        right = int((classes == y).sum())
        share = right / max(len(y), 1)
        print(f"accuracy {share:.2%} ({right:,} of {len(y):,} rows of {args.input})")
    elif not args.output:
        sys.stdout.write("".join(f"{c}\n" for c in classes))
    return 0


def _load_npy(path: Path, option: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PredictError(f"{option} {path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise PredictError(
            f"{option} {path}: not a .npy array file ({e}); write one with numpy.save"
        ) from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise PredictError(f"{option} {path}: an .npz archive; give one array (numpy.save)")
    return x


def read_labels(path: str | Path, rows: int) -> np.ndarray:
    """The true classes, one per input row."""
    path = Path(path)
    y = _load_npy(path, "--labels")
    if y.shape != (rows,) or y.dtype.kind not in "iu":
        raise PredictError(
            f"--labels {path}: shape {y.shape} {y.dtype}; expected {rows} integer classes, one "
            "per row of --input"
        )
    return y
