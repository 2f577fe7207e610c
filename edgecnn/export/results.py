"""What `export` returns: one TargetResult per artifact inside one ExportResult."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgecnn.export.parity import Parity


@dataclass
class TargetResult:
    target: str
    precision: str
    status: str  # "ok", "not verified", "export failed", "verify failed"
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    parity: list[Parity] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    manifest: str | None = None
    info: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)  # how its int8 graph was made ({} otherwise)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "not verified")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parity"] = [p.to_dict() for p in self.parity]
        return d


@dataclass
class ExportResult:
    model: str
    source: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    out_dir: str
    targets: list[TargetResult]
    onnx: dict = field(default_factory=dict)
    reference: str = "PyTorch"  # what every artifact's parity is against

    @property
    def quantization(self) -> dict:
        """The first target's int8 calibration (targets differ only in the activation scheme)."""
        return next((t.quantization for t in self.targets if t.quantization), {})

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "targets"}
        d["targets"] = [t.to_dict() for t in self.targets]
        d["ok"] = self.ok
        return d
