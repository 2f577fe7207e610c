"""From a plan to a recovered student: built from the trained weights (BN kept), refit on calibration
images, BN re-estimated, distilled (again from the built student at a lower lr if it diverges)."""

from __future__ import annotations

import copy
import dataclasses
import logging

from edgecnn.compress.options import CALIB_IMAGES, MIN_CALIB, CompressOptions
from edgecnn.plan import Plan

log = logging.getLogger(__name__)

DIVERGED_RETRIES = 2  # distillations again from the built student, each at a quarter of the lr


def calib_count(opts: CompressOptions, available: int) -> int:
    """--calib-images, else up to CALIB_IMAGES (a small folder scores on what it has)."""
    return opts.calib_images or max(MIN_CALIB, min(CALIB_IMAGES, available))


def calibration_batches(splits, opts: CompressOptions) -> list:
    """The seeded `calib_images` training images, in batches of 16: error scores and refit."""
    import numpy as np

    from edgecnn.data.dataset import Subset

    count = calib_count(opts, len(splits.train))
    order = np.random.default_rng(opts.seed).permutation(len(splits.train))[:count]
    calib = Subset(splits.train, order, "calib")
    good = calib.readable("calibration", at_least=min(MIN_CALIB, count))  # every score counts real images
    return [x for x, _ in Subset(calib, good, "readable").batches(16)]


def recover(loaded, plan: Plan, size, splits, batches, opts: CompressOptions, progress, on_step, on_epoch):
    """The student (BN kept) built from the plan, refit when asked, BN re-estimated, distilled when
    asked: (ConvertResult, (teacher top-1, student top-1), test set description, refit reports)."""
    from edgecnn.errors import DivergedError
    from edgecnn.train import DistillOptions, distill, evaluate_top1, train_options
    from edgecnn.train.distillation import recalibrate_bn
    from edgecnn.transforms import convert_exact
    from edgecnn.transforms.refit import refit

    progress("building the student", 0, 1)
    student = convert_exact(loaded, plan.transforms(), input_size=size, seed=opts.seed)
    swapped = plan.swapped()
    if opts.refit:
        progress("refitting the swapped layers on the calibration images", 0, 1)
    reports = refit(student.model, loaded.module, swapped, batches) if opts.refit else []
    test_set = f"{len(splits.test)} images from {splits.test.source}"
    if opts.distill_epochs == 0:
        recalibrate_bn(student.model, splits.train, batches=opts.bn_batches, seed=opts.seed)
        student.model.eval()
        progress(f"test top-1 on {test_set}", 0, 1)
        top1 = (evaluate_top1(loaded.module, splits.test), evaluate_top1(student.model, splits.test))
        return student, top1, test_set, reports
    train = train_options(
        "compress",
        epochs=opts.distill_epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        seed=opts.seed,
        device=opts.distill_device,
    )
    start = copy.deepcopy(student.model.state_dict())
    for attempt in range(DIVERGED_RETRIES + 1):
        options = DistillOptions(train=train, bn_batches=opts.bn_batches)
        try:
            result = distill(
                loaded, student, splits.source, options, splits=splits, on_step=on_step, on_epoch=on_epoch
            )
            break
        except DivergedError as e:
            if attempt == DIVERGED_RETRIES:
                raise
            log.warning("%s: distilling again from the built student at --lr %g", e, train.lr / 4)
            student.model.load_state_dict(start)
            train = dataclasses.replace(train, lr=train.lr / 4)
    return student, (result.teacher_test_top1, result.student_test_top1), result.test_set, reports
