"""Graph rewrites of ONNX weights: int8 weight-only storage and the hoisted GRU input projection."""

from __future__ import annotations

import numpy as np

from ..._lazy import require
from ...errors import UnsupportedError
from .ops import _RECURRENT, _WEIGHT_SLOTS
from .options import EXTRA


def store_weights_int8(model, op_types):
    """Weight-only int8: the constant weights of float ops of these types are stored as int8 + per-channel scales
    (ORT's quantize_data does the rounding: symmetric, one scale per output channel) and dequantized by constant
    Cast + Mul nodes that ORT folds when it loads the model: a smaller file, the same float kernels at run time."""
    numpy_helper = require("onnx.numpy_helper", EXTRA)
    helper = require("onnx.helper", EXTRA)
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes = []
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        for slot in _WEIGHT_SLOTS.get(node.op_type, ()):
            name = node.input[slot] if slot < len(node.input) else ""
            init = inits.pop(name, None)
            if init is None or init.data_type != TensorProto.FLOAT:
                continue  # already quantized by the quantizer, computed, or not float
            w = numpy_helper.to_array(init)
            # one scale per output channel: MatMul B [K, N] per column; Conv [M, ...] per M; RNN [D, G, K] per D x G
            column_wise = node.op_type == "MatMul" and w.ndim == 2
            if column_wise:
                rows = w.T
            else:
                lead = w.shape[0] * (w.shape[1] if node.op_type in _RECURRENT else 1)
                rows = w.reshape(lead, -1)
            q = np.empty(rows.shape, np.int8)
            scales = np.empty(rows.shape[0], np.float32)
            for r in range(rows.shape[0]):
                _zp, scale, q[r] = quantize_data(rows[r], TensorProto.INT8, True)
                scales[r] = scale if scale > 0 else 1.0
            graph.initializer.remove(init)
            base = f"{name}_weight_int8"
            # Dequantized by Cast + Mul (+ Reshape), not by a DequantizeLinear node: ORT keeps DequantizeLinear of a
            # constant unfolded (it preserves QDQ groups), which would re-dequantize on every call and stop the GRU
            # and MatMul kernels from pre-packing their weights; Cast and Mul of constants fold at session load.
            q_store, scale_shape = (np.ascontiguousarray(q.T), (1, -1)) if column_wise else (q, (-1, 1))
            graph.initializer.extend([
                numpy_helper.from_array(q_store, base),
                numpy_helper.from_array(scales.reshape(scale_shape), f"{base}_scale"),
            ])
            scaled = name if q_store.shape == w.shape else f"{base}_dequantized"
            new_nodes.append(helper.make_node("Cast", [base], [f"{base}_float"], name=f"{base}_Cast",
                                              to=TensorProto.FLOAT))
            new_nodes.append(helper.make_node("Mul", [f"{base}_float", f"{base}_scale"], [scaled], name=f"{base}_Mul"))
            if scaled != name:
                graph.initializer.append(numpy_helper.from_array(np.array(w.shape, np.int64), f"{base}_shape"))
                new_nodes.append(helper.make_node("Reshape", [scaled, f"{base}_shape"], [name],
                                                  name=f"{base}_Reshape"))
    for k, node in enumerate(new_nodes):  # inputs are all initializers: they may go first
        graph.node.insert(k, node)
    return model


def hoist_gru_input_projection(model):
    """Rewrite each GRU so that x_t W_ih (+ its bias) for all t is one MatMul + Add before it.

    The GRU op still runs the recurrence (ORT's fused kernel), now on the projected gates with identity input
    weights (built by EyeLike at load time, not stored) and only the recurrent bias. A bidirectional GRU becomes one
    MatMul for both directions, a Split, a forward and a reverse GRU, and Concats: the same outputs in fp32 (rounding
    aside), and the projection is a plain MatMul that ORT's quantizer takes. Why this is a graph rewrite and not a
    torch module swap: the TorchScript exporter turns a hand-written recurrence either into an unrolled graph that
    fixes T or into a Loop that ORT runs node by node per step; rewriting the one GRU node keeps ORT's fused kernel.
    Measured (bench/bench_quant.py): on ORT it costs latency and, quantized, accuracy, because ORT's GRU kernel
    already does the input projection for all t as one GEMM and the identity input GEMM left behind is larger.
    """
    numpy_helper = require("onnx.numpy_helper", EXTRA)
    helper = require("onnx.helper", EXTRA)

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "GRU"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("layout", 0) != 0:
            raise UnsupportedError("hoisting the GRU input projection supports layout=0 GRUs only")
        inputs = list(node.input) + [""] * (6 - len(node.input))
        x, w_name, r_name, b_name, seq_lens, h0 = inputs[:6]
        if w_name not in inits or r_name not in inits or (b_name and b_name not in inits):
            raise UnsupportedError(f"GRU {node.name!r} has computed weights; only constant weights can be hoisted")
        hidden = int(attrs["hidden_size"])
        w, r = numpy_helper.to_array(inits[w_name]), numpy_helper.to_array(inits[r_name])
        dirs = w.shape[0]
        b = numpy_helper.to_array(inits[b_name]) if b_name else np.zeros((dirs, 6 * hidden), np.float32)
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        names = ["forward", "reverse"] if dirs == 2 else [direction]
        p = f"{node.name or 'GRU'}/hoisted"
        gates = 3 * hidden
        new_inits = [
            numpy_helper.from_array(np.ascontiguousarray(np.concatenate(list(w), 0).T), f"{p}/W_ih"),  # [K, D*3H]
            numpy_helper.from_array(np.concatenate([b[d, :gates] for d in range(dirs)]), f"{p}/b_ih"),
            numpy_helper.from_array(np.array([gates, gates], np.int64), f"{p}/eye_shape"),
            numpy_helper.from_array(np.array([0], np.int64), f"{p}/axis0"),
        ]
        new_nodes = [
            helper.make_node("MatMul", [x, f"{p}/W_ih"], [f"{p}/xW"], name=f"{p}/MatMul"),
            helper.make_node("Add", [f"{p}/xW", f"{p}/b_ih"], [f"{p}/gates"], name=f"{p}/Add"),
            helper.make_node("ConstantOfShape", [f"{p}/eye_shape"], [f"{p}/zeros"], name=f"{p}/Zeros",
                             value=numpy_helper.from_array(np.zeros(1, np.float32))),
            helper.make_node("EyeLike", [f"{p}/zeros"], [f"{p}/eye2d"], name=f"{p}/EyeLike"),
            helper.make_node("Unsqueeze", [f"{p}/eye2d", f"{p}/axis0"], [f"{p}/W_identity"], name=f"{p}/Unsqueeze"),
        ]
        if dirs == 2:
            new_inits.append(numpy_helper.from_array(np.array([gates, gates], np.int64), f"{p}/split"))
            new_nodes.append(helper.make_node("Split", [f"{p}/gates", f"{p}/split"], [f"{p}/gates0", f"{p}/gates1"],
                                              name=f"{p}/Split", axis=-1))
            xs = [f"{p}/gates0", f"{p}/gates1"]
        else:
            xs = [f"{p}/gates"]
        ys, yhs = [], []
        for d in range(dirs):
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(r[d:d + 1]), f"{p}/R{d}"))
            rec_bias = np.concatenate([np.zeros(gates, np.float32), b[d, gates:]])[None]
            new_inits.append(numpy_helper.from_array(rec_bias.astype(np.float32), f"{p}/B{d}"))
            h0_d = ""
            if h0:
                new_inits.append(numpy_helper.from_array(np.array([d], np.int64), f"{p}/index{d}"))
                new_nodes.append(helper.make_node("Gather", [h0, f"{p}/index{d}"], [f"{p}/h0_{d}"],
                                                  name=f"{p}/Gather{d}", axis=0))
                h0_d = f"{p}/h0_{d}"
            ys.append(f"{p}/Y{d}")
            yhs.append(f"{p}/Y_h{d}")
            new_nodes.append(helper.make_node(
                "GRU", [xs[d], f"{p}/W_identity", f"{p}/R{d}", f"{p}/B{d}", seq_lens, h0_d], [ys[d], yhs[d]],
                name=f"{p}/GRU{d}", **{**attrs, "direction": names[d]}))
        outs = list(node.output) + [""] * (2 - len(node.output))
        if outs[0]:
            new_nodes.append(helper.make_node("Concat", ys, [outs[0]], name=f"{p}/ConcatY", axis=1) if dirs == 2
                             else helper.make_node("Identity", ys, [outs[0]], name=f"{p}/Y"))
        if len(outs) > 1 and outs[1]:
            new_nodes.append(helper.make_node("Concat", yhs, [outs[1]], name=f"{p}/ConcatY_h", axis=0) if dirs == 2
                             else helper.make_node("Identity", yhs, [outs[1]], name=f"{p}/Y_h"))
        position = list(graph.node).index(node)
        graph.node.remove(node)
        for k, new in enumerate(new_nodes):
            graph.node.insert(position + k, new)
        graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return model
