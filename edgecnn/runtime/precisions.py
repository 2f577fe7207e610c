"""The precision table: one row per numeric precision, and one per INT8 activation scheme.

A row says how the precision shows in names, how close to PyTorch fp32 its artifacts must be, and
which ONNX step makes it from the fp32 graph; export, bench and parity read the row instead of
comparing precision names.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.errors import UnknownNameError


@dataclass(frozen=True)
class Tolerance:
    max_rel: float  # max |y - y_ref| / max |y_ref|
    min_agreement: float  # top-1 agreement with PyTorch fp32 on the real check images


@dataclass(frozen=True)
class Precision:
    name: str
    tolerance: Tolerance
    # "module:func" (fp32_onnx, out_onnx, context) -> info making this precision's ONNX; None: the
    # fp32 ONNX is the artifact's graph.
    onnx_step: str | None = None
    in_file_name: bool = True  # the baseline (fp32) is left out of artifact names
    calibrated: bool = False  # needs calibration images (and an activation scheme)
    fp16_weights: bool = False  # builders may store weights in fp16 (OpenVINO's compress_to_fp16)
    # Whether the max-error bound applies to seeded Gaussian inputs when real images are also checked:
    # int8 ranges come from the calibration images and noise lies outside them.
    gate_noise_error: bool = True


@dataclass(frozen=True)
class Int8Scheme:
    """How int8 activations are quantized: what each runtime is fast with differs."""

    name: str
    label: str  # appended to "int8" in names ("int8u8")
    quant_type: str  # onnxruntime.quantization.QuantType member
    symmetric: bool
    description: str


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", Tolerance(max_rel=1e-4, min_agreement=0.99), in_file_name=False),
        Precision(
            "fp16",
            Tolerance(max_rel=2e-2, min_agreement=0.95),
            onnx_step="edgecnn.export.quantize:fp16_step",
            fp16_weights=True,
        ),
        # bf16 keeps fp32's range with 8 mantissa bits: ~0.4% per value, more through a deep net.
        Precision("bf16", Tolerance(max_rel=5e-2, min_agreement=0.95)),
        # TF32 (CUDA math mode): fp32 storage, 10-bit-mantissa products.
        Precision("tf32", Tolerance(max_rel=1e-2, min_agreement=0.99)),
        # int8 is judged mainly by top-1 agreement on real images: a trained ResNet-50 (digits) keeps
        # 0.995-1.0 agreement while its worst logit moves by 33% of the largest one. The error bound
        # only catches broken graphs.
        Precision(
            "int8",
            Tolerance(max_rel=0.5, min_agreement=0.90),
            onnx_step="edgecnn.export.quantize:int8_step",
            calibrated=True,
            gate_noise_error=False,
        ),
    )
}

INT8_ACTIVATIONS: dict[str, Int8Scheme] = {
    s.name: s
    for s in (
        # The portable default: TensorRT requires zero points of 0; ORT and OpenVINO load it too.
        Int8Scheme("s8", "", "QInt8", True, "int8 symmetric, per-tensor"),
        # What ONNX Runtime's x86 kernels are fast with (2.8x vs 1.1x over fp32 for ResNet-50 on an
        # AVX-512 VNNI CPU); TensorRT cannot load it.
        Int8Scheme("u8", "u8", "QUInt8", False, "uint8 asymmetric, per-tensor"),
    )
}


def is_baseline(name: str) -> bool:
    """Whether `name` is the reference precision (fp32) others are compared with; False for unknown."""
    p = PRECISIONS.get(name)
    return p is not None and not p.in_file_name


def get_precision(name: str) -> Precision:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise UnknownNameError("precision", name, PRECISIONS) from None


def get_int8_scheme(name: str) -> Int8Scheme:
    try:
        return INT8_ACTIVATIONS[name]
    except KeyError:
        raise UnknownNameError("int8 activation type", name, INT8_ACTIVATIONS) from None


def precision_tag(precision: str, activations: str = "s8") -> str:
    """'fp32', 'fp16', 'int8' or 'int8u8': how rows and artifact names tell precisions apart."""
    p = get_precision(precision)
    return p.name + (get_int8_scheme(activations).label if p.calibrated else "")


def file_label(precision: str, activations: str = "s8") -> str:
    """The artifact-name part for a precision: '' for the fp32 baseline, '.fp16', '.int8u8'..."""
    return "." + precision_tag(precision, activations) if get_precision(precision).in_file_name else ""
