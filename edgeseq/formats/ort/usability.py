"""ONNX Runtime Mobile's usability check (onnxruntime.tools.check_onnx_model_mobile_usability) as a record: which
nodes the NNAPI and CoreML execution providers would take, in how many partitions, and how many the dynamic T keeps
on the CPU. The tool only logs; its checker's functions give the same numbers as values."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..._lazy import require
from .options import EXTRA

# (name in notes, the tool's supported-ops table; None: NNAPI's own checker)
_EPS = (("NNAPI", None), ("CoreML", "coreml_supported_mlprogram_ops.md"))


@dataclass(frozen=True)
class EpUsability:
    """One execution provider: as the model is (dynamic T), and if its shapes were fixed."""

    ep: str
    nodes: int
    supported: int  # nodes the EP would take with the shapes as they are
    partitions: int
    blocked_by_dynamic_shapes: int  # nodes whose op it has but whose input shape is not fixed
    supported_if_fixed: int
    partitions_if_fixed: int
    unsupported_ops: tuple[str, ...]
    verdict: str  # the tool's: YES / MAYBE / NO as is
    verdict_if_fixed: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unsupported_ops"] = list(self.unsupported_ops)
        return d

    def note(self) -> str:
        ops = ", ".join(self.unsupported_ops) or "none"
        return (f"mobile usability: {self.ep} takes {self.supported}/{self.nodes} nodes in {self.partitions} "
                f"partition(s) ({self.verdict}); {self.blocked_by_dynamic_shapes} held back by the dynamic shapes, "
                f"{self.supported_if_fixed}/{self.nodes} in {self.partitions_if_fixed} with fixed shapes "
                f"({self.verdict_if_fixed}); ops it lacks: {ops}")


def check(onnx_path: Path) -> tuple[EpUsability, ...]:
    """The check on the ONNX the .ort is made from, optimized to ONNX Runtime's basic level first (as the tool
    does)."""
    require("onnxruntime", EXTRA)
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="edgeseq-usability-") as tmp:
        optimized = Path(tmp) / "basic.onnx"
        optimize_model(Path(onnx_path), optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        out = []
        for ep, table in _EPS:
            def partitions(fixed, table=table):
                if table is None:
                    return uc.check_nnapi_partitions(model, fixed)
                return uc.check_coreml_partitions(model, fixed, table)

            as_is, if_fixed = partitions(True), partitions(False)
            out.append(EpUsability(
                ep=ep, nodes=as_is.num_nodes, supported=as_is.num_supported_nodes, partitions=as_is.num_partitions,
                blocked_by_dynamic_shapes=as_is.nodes_unsupported_due_to_dynamic_input,
                supported_if_fixed=if_fixed.num_supported_nodes, partitions_if_fixed=if_fixed.num_partitions,
                unsupported_ops=tuple(sorted(op.split(":")[-1] for op in as_is.unsupported_ops)),
                verdict=as_is.suitability().name, verdict_if_fixed=if_fixed.suitability().name))
    return tuple(out)
