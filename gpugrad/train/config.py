"""The settings of a training run, each declared once: default, help, parsing and checks.

Every field of ``TrainConfig`` is an ``option(...)`` that says what ``gpugrad train --help``
shows, how the command line parses the value, which values it accepts (``choices`` or a
``Requirement``), what it applies to (``--momentum`` to SGD, ``--data-dir`` to the MNIST
family) and whether ``--resume`` may change it. The command line (``train/cli.py``) is built
from these fields and ``TrainConfig`` checks them all when it is made, before anything is
loaded or written. Adding an option is adding a field here and using it where the run is built
(``builders.py``) or trained (``trainer.py``); ``--label-smoothing`` below is one:

    label_smoothing: float | None = option(
        None, "cross-entropy label smoothing (default 0)", check=FRACTION, parse=float,
        applies=CROSS_ENTROPY_ONLY,
    )

An option that applies only to some runs defaults to None and gets its value in
``_fill_defaults``, so that "given" and "left out" stay distinguishable. A bound that depends
on another option is a ``Requirement(..., relative=True)`` (``--warmup-epochs`` below --epochs),
whose text may then be a function of the configuration. Unless it is ``resumable``, ``--resume``
refuses a value that differs from the checkpoint's; give it a test in
``tests/test_train_options.py``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import activations
from ..data import DATASETS

LOSSES = ("cross_entropy", "multi_margin", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "plateau")
# The schedules planned over --epochs, which --resume therefore may not change.
PLANNED = ("step", "cosine", "onecycle")
NORMS = ("none", "layer", "batch")
# Each optimizer's own learning rate: SGD's 0.1 (momentum 0.9) reaches 98.7% on digits' test
# split in the default 30 epochs (mean of seeds 0-2; 3e-3 reached 68%); Adam's 3e-3 98.2%.
DEFAULT_LR = {"sgd": 0.1, "adam": 3e-3, "adamw": 3e-3}
DEFAULT_MOMENTUM = 0.9
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}
FILE_DATASETS = ("mnist", "fashion-mnist")  # the datasets read from --data-dir


class ConfigError(ValueError):
    """A setting has a value it cannot have; the message names the option and the value."""


@dataclass(frozen=True)
class Requirement:
    """What a value must be: ``text`` completes "must be ...". With ``relative`` the test is
    ``test(value, config)``, for a bound set by another option (a warm-up shorter than
    ``--epochs``); it is checked once the whole configuration is known, and ``text`` may then
    be a function of the configuration."""

    text: str | Callable[..., str]
    test: Callable[..., bool]
    relative: bool = False


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and math.isfinite(v)


POSITIVE = Requirement("a finite number > 0", lambda v: _finite(v) and v > 0)
NON_NEGATIVE = Requirement("a finite number >= 0", lambda v: _finite(v) and v >= 0)
FRACTION = Requirement("a finite number in [0, 1)", lambda v: _finite(v) and 0 <= v < 1)


def at_least(n: int) -> Requirement:
    return Requirement(f"an integer >= {n}", lambda v: isinstance(v, numbers.Integral) and v >= n)


WARMUP = Requirement(
    lambda c: (
        f"an integer >= 1 and below --epochs {c.epochs}, so that epochs remain for the "
        "schedule after it; lower it or raise --epochs"
    ),
    lambda v, c: isinstance(v, numbers.Integral) and 1 <= v < c.epochs,
    relative=True,
)
HIDDEN_SIZES = Requirement(
    "comma-separated integers >= 1, such as 128,64",
    lambda v: all(isinstance(h, numbers.Integral) and h >= 1 for h in v),
)
DEVICE = Requirement(
    "auto, cpu, cuda or cuda:N",
    lambda v: (
        (d := v.strip().lower()) in ("auto", "cpu", "cuda")
        or (d.startswith("cuda:") and d[5:].isdigit())
    ),
)


@dataclass(frozen=True)
class Applies:
    """The runs an option means something for: ``test(config)``, described by ``text`` (a
    string, or a function of the configuration); ``setting(config)`` names the setting of a
    run it does not apply to."""

    test: Callable[[TrainConfig], bool]
    text: str | Callable[[TrainConfig], str]
    setting: Callable[[TrainConfig], str]


def _sgd_momentum_text(c) -> str:
    return "--optimizer sgd" if c.optimizer != "sgd" else "a --scheduler other than onecycle"


def _sgd_momentum_setting(c) -> str:
    if c.optimizer != "sgd":
        return f"--optimizer {c.optimizer}"
    return "--scheduler onecycle, which cycles the momentum itself (0.95 down to 0.85 and back)"


# SGD's momentum, unless OneCycleLR cycles it (as PyTorch's does by default).
SGD_MOMENTUM = Applies(
    lambda c: c.optimizer == "sgd" and c.scheduler != "onecycle",
    _sgd_momentum_text,
    _sgd_momentum_setting,
)
CROSS_ENTROPY_ONLY = Applies(
    lambda c: c.loss == "cross_entropy", "--loss cross_entropy", lambda c: f"--loss {c.loss}"
)
FILE_DATASETS_ONLY = Applies(
    lambda c: c.dataset in FILE_DATASETS,
    "--dataset mnist or fashion-mnist",
    lambda c: f"--dataset {c.dataset}",
)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``--hidden 128,64`` -> (128, 64); an empty string is no hidden layer (a linear model)."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"expected sizes like 128,64, got {text!r}") from None


def option(
    default,
    help: str,
    *,
    parse: Callable | None = None,
    choices: tuple | None = None,
    check: Requirement | None = None,
    applies: Applies | None = None,
    resumable: bool = False,
    flag: str | None = None,
    metavar: str | None = None,
):
    """A TrainConfig field together with its command-line form and its checks.

    ``parse``: str -> value for the command line (default: the type of ``default``).
    ``flag``: the command-line name when it is not ``--<name>`` (a boolean whose flag turns
    it off, such as ``--no-plots``). ``resumable``: ``--resume`` may change it. ``metavar``:
    the value's name in the help (default: the field's name in capitals).
    """
    if applies is not None and default is not None:
        raise TypeError("an option that applies to some runs only must default to None")
    meta = dict(help=help, parse=parse, choices=choices, check=check, applies=applies)
    meta.update(resumable=resumable, flag=flag, metavar=metavar)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint and metrics)."""

    dataset: str = option("digits", "the data: digits is bundled", choices=DATASETS)
    data_dir: str | None = option(
        None,
        "folder with the IDX files, or an .npz (default: $GPUGRAD_DATA or ./data)",
        applies=FILE_DATASETS_ONLY,
        resumable=True,
        metavar="DIR",
    )
    hidden: tuple[int, ...] = option(
        (128, 64), "hidden layer sizes", parse=parse_hidden, check=HIDDEN_SIZES, metavar="N,N"
    )
    activation: str = option("relu", "hidden-layer activation", choices=activations.HIDDEN)
    norm: str = option(
        "none",
        "LayerNorm or BatchNorm1d after each hidden Linear, before its activation",
        choices=NORMS,
    )
    loss: str = option("cross_entropy", "the training loss", choices=LOSSES)
    label_smoothing: float | None = option(
        None,
        "cross-entropy label smoothing: the target is (1 - S) one-hot + S / classes; the "
        "reported losses include it (default 0)",
        check=FRACTION,
        parse=float,
        applies=CROSS_ENTROPY_ONLY,
        metavar="S",
    )
    optimizer: str = option("adam", "the optimizer", choices=OPTIMIZERS)
    lr: float | None = option(
        None,
        "learning rate (default: the optimizer's own: sgd 0.1, adam and adamw 3e-3)",
        check=POSITIVE,
        parse=float,
    )
    momentum: float | None = option(
        None,
        f"SGD momentum (default {DEFAULT_MOMENTUM}; onecycle cycles it instead)",
        check=FRACTION,
        applies=SGD_MOMENTUM,
        parse=float,
    )
    weight_decay: float | None = option(
        None, "weight decay (default 0; adamw: 0.01, decoupled)", check=NON_NEGATIVE, parse=float
    )
    batch_size: int = option(
        64, "samples per optimizer step, all ranks together", check=at_least(1)
    )
    clip_grad_norm: float | None = option(
        None,
        "scale the gradients down to a total 2-norm of at most X before each step (after the "
        "ranks' average); the epoch line shows the mean norm before clipping (default: none)",
        check=POSITIVE,
        parse=float,
        metavar="X",
    )
    epochs: int = option(
        30,
        "total epochs; --resume may change it with --scheduler none or plateau only",
        check=at_least(1),
        resumable=True,
    )
    scheduler: str = option(
        "cosine",
        "learning-rate schedule: step (10x down at each third of the run) and cosine per epoch, "
        "onecycle per batch (--lr is its peak), plateau (10x down when the validation loss, "
        "or the training loss under --val-fraction 0, stalls for more than 5 epochs)",
        choices=SCHEDULERS,
    )
    warmup_epochs: int | None = option(
        None,
        "epochs of linear warm-up from lr/25 before the schedule, which then runs over the "
        "remaining epochs; with onecycle, the length of its own warm-up (default: none; "
        "onecycle: 0.3 of the run)",
        check=WARMUP,
        parse=int,
        metavar="N",
    )
    val_fraction: float = option(
        0.1, "share of the train split held out to pick best.npz", check=FRACTION
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:N", check=DEVICE, resumable=True)
    seed: int = option(0, "seeds initialisation and shuffling", check=at_least(0))
    out: str | None = option(
        None,
        "output folder (default: runs/<dataset>, or runs/<dataset>-2, -3, ... when that holds "
        "a run)",
        resumable=True,
        metavar="DIR",
    )
    plots: bool = option(
        True, "skip curves.png and grad_flow.png", flag="--no-plots", resumable=True
    )
    quiet: bool = option(False, "no progress bar", resumable=True)

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        for f in dataclasses.fields(self):
            _check_field(self, f)
        _fill_defaults(self)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_json(self) -> dict:
        """The settings that apply to this run (options that do not apply are left out)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, saved: dict) -> TrainConfig:
        """The config a checkpoint or metrics.json stored. Earlier versions stored every
        option, applying or not (momentum with Adam); those values are dropped."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - set(known))
        if unknown:
            raise ConfigError(
                f"the saved run has settings this gpugrad does not know: {', '.join(unknown)} "
                "(written by a newer gpugrad?)"
            )
        values = dict(saved)
        probe = cls(**{k: v for k, v in values.items() if known[k].metadata["applies"] is None})
        for name, f in known.items():
            rule = f.metadata["applies"]
            if rule is not None and not rule.test(probe):
                values.pop(name, None)
        return cls(**values)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def shown(value) -> str:
    """A value as it is typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_value(f: dataclasses.Field, value) -> None:
    """Raise ConfigError naming the option when ``value`` is not one it accepts."""
    meta, flag = f.metadata, flag_of(f)
    if value is None:
        if f.default is None:
            return
        raise ConfigError(f"{flag}: a value is required")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{flag} {value!r}: must be one of {', '.join(meta['choices'])}")
    rule = meta["check"]
    if rule is not None and not rule.relative and not rule.test(value):
        raise ConfigError(f"{flag} {shown(value)}: must be {rule.text}")


def _check_field(config: TrainConfig, f: dataclasses.Field) -> None:
    value = getattr(config, f.name)
    check_value(f, value)
    if value is None:
        return
    rule, applies, flag = f.metadata["check"], f.metadata["applies"], flag_of(f)
    if rule is not None and rule.relative and not rule.test(value, config):
        text = rule.text(config) if callable(rule.text) else rule.text
        raise ConfigError(f"{flag} {shown(value)}: must be {text}")
    if applies is not None and not applies.test(config):
        text = applies.text(config) if callable(applies.text) else applies.text
        raise ConfigError(
            f"{flag} {shown(value)}: applies to {text} only, not to "
            f"{applies.setting(config)}; drop {flag} (or choose {text})"
        )


def _fill_defaults(config: TrainConfig) -> None:
    """Give the options left out (None) the value that applies to this run."""
    if config.lr is None:
        config.lr = DEFAULT_LR[config.optimizer]
    if config.momentum is None and SGD_MOMENTUM.test(config):
        config.momentum = DEFAULT_MOMENTUM
    if config.label_smoothing is None and CROSS_ENTROPY_ONLY.test(config):
        config.label_smoothing = 0.0
    if config.weight_decay is None:
        config.weight_decay = DEFAULT_WEIGHT_DECAY[config.optimizer]
    if config.out is None:
        config.out = str(Path("runs") / config.dataset)


def fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(TrainConfig)
