"""compress's options, checked before any work, and the fixed figures they default to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import BadArgumentError
from edgecnn.plan import Grid, PlanOptions
from edgecnn.train.options import USES

CALIB_IMAGES = 64  # training images that score each candidate's error, when the data has them
MIN_CALIB = 8
# The end-to-end timing alternates the two models in blocks this long and takes each one's median
# block (each block's fast time): load on a shared machine moves both alike.
BLOCK_S = 0.5


@dataclass
class CompressOptions:
    runtime: str = "onnxruntime"
    speedup: float | None = 2.0
    latency_ms: float | None = None
    # image folder or "digits": calibration, BN re-estimation, distillation, test. None: the split
    # the model file records (the digits for a zoo name)
    data: str | None = None
    calib_images: int | None = None  # images scoring the candidates' errors (None: up to CALIB_IMAGES)
    distill_epochs: int = 2  # 0: plan, build, re-estimate BN and export only
    bn_batches: int = 20  # batches of 64 training images that re-estimate BN statistics
    test_images: int | None = None  # score top-1 on the first N test images (None: all of them)
    # A fine-tune of a close student: at distill's lr it could fall to chance or diverge
    lr: float = USES["compress"]["lr"]
    batch_size: int = 64  # distillation
    train_device: str | None = None  # where the student distils: cpu, cuda, auto; default: by --device
    input_size: tuple[int, int] | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    use_cache: bool = True
    cache_dir: Path | None = None
    grid: Grid = field(default_factory=Grid)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    out_dir: Path | None = None
    force: bool = False
    measure_seconds: float = 3.0  # per model and round of the end-to-end timing
    measure_rounds: int = 2  # rounds of it, each cut in blocks of BLOCK_S alternating the models
    seed: int = 0
    int8: bool = False  # plan precision per layer too; the student is exported int8 (mixed)
    # the speed-up is over the runtime's default float math ("default": OpenVINO in bf16 on CPUs with
    # bf16 units, what the plain model gets deployed) or over float layers pinned to fp32 ("fp32")
    baseline: str = "default"
    # least-squares refit of each swapped block's last factor before distilling: measured to help
    # (docs/compress.md, Refit)
    refit: bool = True
    # where the plan may prune, recover its rivals (the plan without pruning, uniform pruning) and ship
    # the lowest validation loss (compress.rival): up to two more distillations
    rivals: bool = True
    calib_size: int = 100  # images calibrating the int8 export
    check_seconds: float = 0.4  # the planner's whole-model checks, per model and round
    headroom: float | None = None  # the plan aims this fraction faster than asked (None: its default)
    verify: bool = True  # check both artifacts against PyTorch (off: random weights, speed only)

    @property
    def distill_device(self) -> str:
        """--train-device, else the GPU when the runtime runs on one."""
        return self.train_device or ("cpu" if self.device == "cpu" else "cuda")

    @property
    def precision(self) -> str:
        """The student artifact's precision (the original's artifact is fp32)."""
        return "int8" if self.int8 else "fp32"

    def plan_options(self) -> PlanOptions:
        return PlanOptions(
            runtime=self.runtime,
            speedup=self.speedup,
            latency_ms=self.latency_ms,
            device=self.device,
            threads=self.threads,
            batch=self.batch,
            grid=self.grid,
            include=self.include,
            exclude=self.exclude,
            use_cache=self.use_cache,
            cache_dir=self.cache_dir,
            int8=self.int8,
            baseline=self.baseline,
            check_seconds=self.check_seconds,
            # the prediction is timed as long as the measurement it predicts
            confirm_seconds=self.measure_seconds * max(1, self.measure_rounds),
            headroom=self.headroom,
        )

    def validate(self) -> CompressOptions:
        from edgecnn.runtime import available, get_backend

        backend = get_backend(self.runtime)
        if not available(self.runtime):  # as every command says it: exit 1, the machine lacks it
            from edgecnn.errors import MissingBackendError

            raise MissingBackendError(
                f"{self.runtime} is not installed; install it with: {backend.install_hint}"
            )
        if not self.measure_seconds > 0:  # before the plan's options, whose re-timing it sets
            raise BadArgumentError(f"--duration must be positive, got {self.measure_seconds}")
        self.plan_options().validate()
        if self.calib_size < 1:
            raise BadArgumentError(f"--calib-size must be positive, got {self.calib_size}")
        few = self.calib_images is not None and self.calib_images < MIN_CALIB
        if not self.lr > 0 or self.batch_size < 1:
            raise BadArgumentError(
                f"--lr must be positive and the batch size >= 1, got {self.lr}, {self.batch_size}"
            )
        if self.distill_epochs < 0 or few or self.bn_batches < 0:
            raise BadArgumentError("--distill-epochs must be >= 0, --calib-images >= 8, bn_batches >= 0")
        if self.test_images is not None and self.test_images < 1:
            raise BadArgumentError(f"--test-images must be positive, got {self.test_images}")
        if self.distill_epochs:
            from edgecnn.train.options import resolve_device

            self.train_device = resolve_device(self.distill_device)
        return self
