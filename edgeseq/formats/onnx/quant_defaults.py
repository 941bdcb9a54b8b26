"""ONNX Runtime's quantization defaults, chosen by measurement.

ONNX Runtime CPU, cbhg and cbhg-lite, T in {7, 50, 200, 1000} (bench/bench_quant.py -> quant-sweep.json on AVX-512
VNNI; bench/bench_int8_cpus.py -> int8-cpus-<machine>-<isa>.json on each CPU family; docs/quantization.md):
- every CPU: x86 without VNNI (AVX2) multiplies u8 activations by 8-bit s8 weights with vpmaddubsw, whose 16-bit
  sums saturate (cbhg-lite rel L2 3.4e-2 there, 5e-3 on VNNI). 7-bit weights (reduce_range) cannot saturate and
  keep ORT's u8s8 kernels (VNNI's too) on every CPU: the fastest safe choice measured on AVX2 (cbhg 0.56x fp32,
  u8u8 0.77x) at the same error (5.3e-3). So the defaults hold wherever the file runs;
  `--quant reduce_range=false` (8-bit weights) is the variant for VNNI / AMX / ARM CPUs only (ops.int8_safe_isas
  says which, and the artifact's metadata records it).
- dynamic: signed int8 weights make ORT's ConvInteger 3-8x slower than fp32 (and saturate on AVX2); unsigned ones
  run at 0.75-0.9x with the same error, so uint8 (u8u8: safe on every CPU). Per-channel buys nothing there.
- static: quantizing only the convs keeps rel L2 at 1-3e-3 on VNNI; letting the quantizer also take the highway
  MatMuls / Adds / Muls after the residual costs 5-10x more error and no speed. The MatMul and GRU weights are then
  stored int8 (weight-only) for the size target, +2-4e-3 of error.
- QDQ and QOperator give the same numbers; QDQ is what ORT recommends and other runtimes (TensorRT) read.
- quantize_static's own Entropy calibrator equals MinMax (128 bins for 128 quantized bins); with 2048 bins
  (edgeseq's setting) it clips tails the GRU needs: 1.6x the error. Percentile ~ MinMax. MinMax it is.
- the hoisted GRU input projection makes every int8 variant slower and less accurate on ORT (docs/quantization.md).
"""

from __future__ import annotations

from ...errors import InputError
from ...quantize import Approach, CalibrationMethod, QuantConfig, QuantDtype, QuantFormat
from .ops import quantizable_op_types, weight_only_op_types

DEFAULTS = {
    Approach.FP16: QuantConfig(Approach.FP16),
    Approach.INT8_DYNAMIC: QuantConfig(
        Approach.INT8_DYNAMIC, weight_type=QuantDtype.UINT8, per_channel=False, weight_only=("GRU",),
    ),
    Approach.INT8_STATIC: QuantConfig(
        Approach.INT8_STATIC, weight_type=QuantDtype.INT8, activation_type=QuantDtype.UINT8, per_channel=True,
        reduce_range=True, quant_format=QuantFormat.QDQ, calibration_method=CalibrationMethod.MINMAX,
        op_types=("Conv",), weight_only=("MatMul", "GRU"),
    ),
}


def validate_op_names(config: QuantConfig) -> None:
    """op_types / weight_only must name ops the quantizer acts on: an unknown or misspelt name would otherwise
    quantize nothing and still report success."""
    if not config.is_int8:
        return
    checks = (("op_types", f"the {config.approach.value} quantizer takes", quantizable_op_types),
              ("weight_only", "weight-only int8 storage handles", weight_only_op_types))
    for key, what, known_for in checks:
        names = getattr(config, key)
        known = known_for(config) if names else set()
        unknown = [op for op in names if op not in known]
        if unknown:
            raise InputError(f"--quant {key}: {', '.join(map(repr, unknown))} is not an op type {what} "
                             f"(known: {', '.join(sorted(known))})")
