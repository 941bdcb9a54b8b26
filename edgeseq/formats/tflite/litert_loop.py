"""LiteRT side of the loop GRU: lower `edgeseq::gru_scan` to two nested while loops, then outline them for the
flatbuffer.

Imported only by convert.py, after litert-torch is known to be installed.

1. `register_lowering()` adds a litert-torch lowering for `edgeseq::gru_scan`: gi is zero-padded to whole chunks
   of CHUNK steps; an outer `stablehlo.while` runs blocks of BLOCK chunks, an inner one the chunks of a block,
   whose body runs CHUNK GRU steps (unrolled) for all directions at once: GATHER a chunk of gi -> UNPACK -> per
   step BATCH_MATMUL(h, W_hh) -> SPLIT_V x2 -> gates -> PACK -> DYNAMIC_UPDATE_SLICE into the block's rows; the
   outer body writes the block into the [blocks, BLOCK, CHUNK, D, B, H] result, which is cropped to T. Shape-
   dependent pieces use TFLite ops directly (litert-torch's `tfl.*` custom-call carriers), so batch and T stay
   dynamic. The litert converter legalizes the loops to `tfl.while`. It also swaps a few litert-torch lowerings that keep
   dims dynamic or avoid LiteRT's reference kernels (STRIDED_SLICE, BROADCAST_TO).
2. `outline_whiles(module)` moves each `tfl.while` region into its own function (a TFLite subgraph), passing
   implicitly captured values as loop operands and cloning captured constants: the flatbuffer exporter wants
   WHILE cond/body as calls, and the converter pipeline that litert-torch runs has no outlining pass for them
   (PyTorch graphs never had loops). A body that reads its constants as operands has dynamic tensors, and
   LiteRT then re-plans the body at every iteration (its slow WHILE path).
"""

from __future__ import annotations

import numpy as np
import torch

_REGISTERED = False
# GRU steps per inner-loop iteration, unrolled in the body. Every WHILE iteration copies its loop-carried tensors
# (LiteRT copies body outputs back; DYNAMIC_UPDATE_SLICE copies its operand) and pays the loop's own overhead;
# T is padded up to a multiple of CHUNK, so a short input runs up to CHUNK - 1 extra steps.
CHUNK = 4
# chunks per outer iteration: the inner WHILE runs the chunks of one block and carries only that block's rows, the
# outer WHILE carries the whole result, so the copying per step is O(BLOCK + T / (CHUNK * BLOCK)) rows, not O(T).
# (CHUNK, BLOCK) = (4, 32) was fastest of (2..16, 8..64) on cbhg-lite at T = 1, 200, 1000, 4000 (AMD EPYC, 1 thread).
BLOCK = 32
_CONST_OPS = ("arith.constant", "tfl.pseudo_const", "tfl.no_value", "stablehlo.constant")


def register_lowering() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lu

    from . import rewrites  # noqa: F401  (defines the op)

    def tfl(name, results, operands, attributes=None):
        attrs = ir.DictAttr.get(attributes or {})
        return stablehlo.custom_call(result=results, inputs=operands, call_target_name=ir.StringAttr.get(name),
                                     has_side_effect=ir.BoolAttr.get(False),
                                     backend_config=ir.StringAttr.get(str(attrs)))

    def lower_gru_scan(lctx, gi, w_hh, b_hh, h0=None):
        f32 = ir.F32Type.get()
        i32 = ir.IntegerType.get_signless(32)
        scalar_i32 = ir.RankedTensorType.get([], i32)
        dyn = ir.ShapedType.get_dynamic_size()
        k, m = CHUNK, BLOCK
        t_dim, d, b, h3 = ir.RankedTensorType(gi.type).shape
        h = h3 // 3
        out_t = lu.node_meta_to_ir_types(lctx.node)[0]
        state_t = ir.RankedTensorType.get([d, b, h], f32)
        step_t = ir.RankedTensorType.get([d, b, h3], f32)
        gate_t = ir.RankedTensorType.get([d, b, h], f32)
        chunks_t = ir.RankedTensorType.get([dyn, k, d, b, h3], f32)
        buf_t = ir.RankedTensorType.get([m, k, d, b, h], f32)
        outs_t = ir.RankedTensorType.get([dyn, m, k, d, b, h], f32)

        def dim(value, axis):
            return stablehlo.reshape(ir.RankedTensorType.get([1], i32), stablehlo.get_dimension_size(value, axis))

        def const_i32(values):
            return lu.numpy_array_constant(np.asarray(values, dtype=np.int32))

        def cat(*parts):
            return stablehlo.concatenate(list(parts), 0)

        def scalar(value):
            return stablehlo.reshape(scalar_i32, value)

        def attr_i32(value):
            return ir.IntegerAttr.get(i32, value)

        def ceil_div(value, by):
            return stablehlo.divide(stablehlo.add(value, const_i32([by - 1])), const_i32([by]))

        def while_loop(operands, trip_index, body_fn):
            """stablehlo.while over operands[0] = 0 .. operands[trip_index]; body_fn(args) -> new carried values."""
            types = [v.type for v in operands]
            loop = stablehlo.WhileOp(types, operands)
            cond = loop.regions[0].blocks.append(*types)
            with ir.InsertionPoint(cond):
                stablehlo.return_([stablehlo.compare(cond.arguments[0], cond.arguments[trip_index],
                                                     stablehlo.ComparisonDirectionAttr.get("LT"))])
            body = loop.regions[1].blocks.append(*types)
            with ir.InsertionPoint(body):
                stablehlo.return_(body_fn(list(body.arguments)))
            return loop.results

        def gru_steps(state, chunk, w_, b_):
            """CHUNK unrolled GRU steps over chunk [CHUNK, D, B, 3H] -> (last state, [1, CHUNK, D, B, H])."""
            xs = tfl("tfl.unpack", [step_t] * k, [chunk], {"num": attr_i32(k), "axis": attr_i32(0)})
            xs = [xs] if k == 1 else list(xs)
            sizes, axis = const_i32([h, h, h]), const_i32(2)
            split = {"num_splits": attr_i32(3)}
            steps = []
            for x in xs:
                gh = tfl("tfl.batch_matmul", [step_t], [state, w_],
                         {"adj_x": ir.BoolAttr.get(False), "adj_y": ir.BoolAttr.get(True),
                          "asymmetric_quantize_inputs": ir.BoolAttr.get(False)})
                gh = tfl("tfl.add", [step_t], [gh, b_], {"fused_activation_function": ir.StringAttr.get("NONE")})
                xr, xz, xn = tfl("tfl.split_v", [gate_t] * 3, [x, sizes, axis], split)
                hr, hz, hn = tfl("tfl.split_v", [gate_t] * 3, [gh, sizes, axis], split)
                r = stablehlo.logistic(stablehlo.add(xr, hr))
                z = stablehlo.logistic(stablehlo.add(xz, hz))
                n = stablehlo.tanh(stablehlo.add(xn, stablehlo.multiply(r, hn)))
                state = stablehlo.add(n, stablehlo.multiply(z, stablehlo.subtract(state, n)))
                steps.append(state)
            packed = tfl("tfl.pack", [ir.RankedTensorType.get([k, d, b, h], f32)], steps,
                         {"values_count": attr_i32(k), "axis": attr_i32(0)})
            packed = tfl("tfl.expand_dims", [ir.RankedTensorType.get([1, k, d, b, h], f32)], [packed, const_i32(0)])
            return state, packed

        zero = lu.splat(0.0, f32, [])
        batch = const_i32([b]) if b != dyn else dim(gi, 2)
        # T is padded up to whole chunks (the padded steps run after the real ones, in scan order, and are
        # cropped); the loop runs over blocks of BLOCK chunks, an inner loop over the chunks of one block
        t1 = dim(gi, 0)
        n1 = ceil_div(t1, k)
        blocks1 = ceil_div(n1, m)
        pad1 = stablehlo.subtract(stablehlo.multiply(n1, const_i32([k])), t1)
        pairs = stablehlo.reshape(ir.RankedTensorType.get([4, 2], i32), cat(const_i32([0]), pad1, const_i32([0] * 6)))
        padded = tfl("tfl.pad", [ir.RankedTensorType.get([dyn, d, b, h3], f32)], [gi, pairs])
        chunks = tfl("tfl.reshape", [chunks_t], [padded, cat(n1, const_i32([k, d]), batch, const_i32([h3]))])
        # FILL, not BROADCAST_TO: LiteRT's BROADCAST_TO is a reference kernel (index arithmetic per element)
        outs0 = tfl("tfl.fill", [outs_t], [cat(blocks1, const_i32([m, k, d]), batch, const_i32([h])), zero])
        buf0 = tfl("tfl.fill", [buf_t], [cat(const_i32([m, k, d]), batch, const_i32([h])), zero])
        if h0 is None:
            h0 = tfl("tfl.fill", [state_t], [cat(const_i32([d]), batch, const_i32([h])), zero])

        # everything a body reads is a loop operand or made inside it: values captured from outside a region do
        # not survive litert-torch's lowering (the converter turns the invariant ones back into captures later)
        def block_body(args):
            blk, state, outs, buf, n_blocks, n_chunks, chunks_, w_, b_ = args
            first = stablehlo.multiply(blk, lu.splat(m, i32, []))
            count = stablehlo.minimum(lu.splat(m, i32, []), stablehlo.subtract(n_chunks, first))

            def chunk_body(inner):
                j, st, bf, cnt, first_, chunks__, w__, b__ = inner
                chunk = tfl("tfl.gather", [ir.RankedTensorType.get([k, d, b, h3], f32)],
                            [chunks__, stablehlo.add(first_, j)], {"axis": attr_i32(0), "batch_dims": attr_i32(0)})
                st, rows = gru_steps(st, chunk, w__, b__)
                bf = stablehlo.dynamic_update_slice(bf, rows, [j] + [lu.splat(0, i32, [])] * 4)
                return [stablehlo.add(j, lu.splat(1, i32, [])), st, bf, cnt, first_, chunks__, w__, b__]

            res = while_loop([lu.splat(0, i32, []), state, buf, count, first, chunks_, w_, b_], 3, chunk_body)
            state, buf = res[1], res[2]
            row = tfl("tfl.expand_dims", [ir.RankedTensorType.get([1, m, k, d, b, h], f32)], [buf, const_i32(0)])
            outs = stablehlo.dynamic_update_slice(outs, row, [blk] + [lu.splat(0, i32, [])] * 5)
            return [stablehlo.add(blk, lu.splat(1, i32, [])), state, outs, buf, n_blocks, n_chunks, chunks_, w_, b_]

        res = while_loop([lu.splat(0, i32, []), h0, outs0, buf0, scalar(blocks1), scalar(n1), chunks, w_hh, b_hh], 4, block_body)
        flat = tfl("tfl.reshape", [ir.RankedTensorType.get([dyn, d, b, h], f32)],
                   [res[2], cat(const_i32([-1, d]), batch, const_i32([h]))])
        return tfl("tfl.slice", [out_t], [flat, const_i32([0, 0, 0, 0]), cat(t1, const_i32([-1, -1, -1]))])

    registry.lower(torch.ops.edgeseq.gru_scan.default)(lower_gru_scan)

    def lower_length_mask(lctx, ref, lengths):
        """[T, B] float: RANGE(0, T) as a column LESS each row's length (TFLite broadcasts), CAST to float."""
        i32 = ir.IntegerType.get_signless(32)
        dyn = ir.ShapedType.get_dynamic_size()
        t = stablehlo.reshape(ir.RankedTensorType.get([], i32), stablehlo.get_dimension_size(ref, 0))
        steps = tfl("tfl.range", [ir.RankedTensorType.get([dyn], i32)], [lu.splat(0, i32, []), t, lu.splat(1, i32, [])])
        column = tfl("tfl.expand_dims", [ir.RankedTensorType.get([dyn, 1], i32)],
                     [steps, lu.numpy_array_constant(np.asarray(1, dtype=np.int32))])
        b = ir.RankedTensorType(lengths.type).shape[0]
        lens = tfl("tfl.cast", [ir.RankedTensorType.get([b], i32)], [lengths])
        row = tfl("tfl.expand_dims", [ir.RankedTensorType.get([1, b], i32)],
                  [lens, lu.numpy_array_constant(np.asarray(0, dtype=np.int32))])
        less = tfl("tfl.less", [ir.RankedTensorType.get([dyn, b], ir.IntegerType.get_signless(1))], [column, row])
        return tfl("tfl.cast", lu.node_meta_to_ir_types(lctx.node), [less])

    registry.lower(torch.ops.edgeseq.length_mask.default)(lower_length_mask)

    from litert_torch.backend.experimental import torch_tfl  # noqa: F401  (defines torch.ops.tfl.*)

    topk_fallback = registry.lookup(torch.ops.tfl.topk_v2.default)

    def lower_topk(lctx, x, k):
        """TOPK_V2 with k the batch size itself (a sort by length): litert-torch's lowering takes a constant k."""
        if isinstance(k, int) and topk_fallback is not None:
            return topk_fallback(lctx, x, k)
        k32 = tfl("tfl.cast", [ir.RankedTensorType.get([], ir.IntegerType.get_signless(32))],
                  [stablehlo.reshape(ir.RankedTensorType.get([], ir.RankedTensorType(k.type).element_type), k)])
        return tfl("tfl.topk_v2", lu.node_meta_to_ir_types(lctx.node), [x, k32])

    registry.lower(torch.ops.tfl.topk_v2.default)(lower_topk)

    # aten.constant_pad_nd lowers through JAX, which rejects a dynamic T; TFLite's PAD / PADV2 take any shape.
    pad_op = torch.ops.aten.constant_pad_nd.default
    fallback = registry.lookup(pad_op)

    def lower_constant_pad(lctx, x, pad, value=0.0):
        shape = ir.RankedTensorType(x.type).shape
        dynamic = any(s == ir.ShapedType.get_dynamic_size() for s in shape)
        if fallback is not None and (not dynamic or any(not isinstance(p, int) or p < 0 for p in pad)):
            return fallback(lctx, x, pad, value)
        rank = len(shape)
        pairs = np.zeros((rank, 2), dtype=np.int32)
        for k in range(len(pad) // 2):
            pairs[rank - 1 - k] = (pad[2 * k], pad[2 * k + 1])
        result = lu.node_meta_to_ir_types(lctx.node)
        if value == 0:
            return tfl("tfl.pad", result, [x, lu.numpy_array_constant(pairs)])
        fill = lu.numpy_array_constant(np.asarray(value, dtype=np.float32))
        return tfl("tfl.padv2", result, [x, lu.numpy_array_constant(pairs), fill])

    registry.lower(pad_op)(lower_constant_pad)

    # aten.convolution: litert-torch builds the result type from the example sizes (SymInt -> int), which bakes
    # the export T into every conv; build it with dynamic dims and add the bias with a broadcasting TFLite ADD.
    from litert_torch.backend.lowerings import _convolution as conv_lowering

    conv_fallback = registry.lookup(torch.ops.aten.convolution.default) or registry.lookup(torch.ops.aten.convolution)

    def lower_convolution(lctx, lhs, rhs, bias, stride, padding, dilation, transposed, output_padding, groups):
        out_type = lu.node_meta_to_ir_types(lctx.node)[0]
        dynamic = any(s == ir.ShapedType.get_dynamic_size() for s in ir.RankedTensorType(out_type).shape)
        if transposed or not dynamic or any(output_padding):
            return conv_fallback(lctx, lhs, rhs, bias, stride, padding, dilation, transposed, output_padding, groups)
        spatial = len(ir.RankedTensorType(lhs.type).shape) - 2
        if len(padding) == 1 and spatial > 1:
            padding = padding * spatial
        res = stablehlo.convolution(
            result=out_type, lhs=lhs, rhs=rhs,
            dimension_numbers=conv_lowering.create_conv_dimension_numbers(lhs),
            feature_group_count=groups, batch_group_count=1, window_strides=stride,
            padding=conv_lowering.make_padding(padding), rhs_dilation=dilation)
        if bias is not None:
            channels = ir.RankedTensorType(bias.type).shape[0]
            shaped = stablehlo.reshape(ir.RankedTensorType.get([1, channels] + [1] * spatial, ir.F32Type.get()), bias)
            res = tfl("tfl.add", [out_type], [res, shaped], {"fused_activation_function": ir.StringAttr.get("NONE")})
        return res

    registry.lower(torch.ops.aten.convolution.default)(lower_convolution)

    # Element-wise ops that litert-torch lowers through JAX, which rejects dynamic sizes: the TFLite op itself
    # takes any shape. Static shapes keep litert-torch's own lowering.
    for op, name in _ELEMENTWISE.items():
        _override(registry, lu, tfl, ir, op, name)
    _slices_as_slice()
    _REGISTERED = True


def _slices_as_slice() -> None:
    """aten.slice (step 1) and aten.select as TFLite SLICE (+ SQUEEZE) instead of STRIDED_SLICE.

    LiteRT runs STRIDED_SLICE with its reference kernel (a std::function call per element): on a [B, 512, T]
    activation it cost more than all the convolutions together. SLICE has an optimized kernel (memcpy runs).
    Applies to the torch -> tfl decomposition table litert-torch uses under LITERT_TORCH_FULL_TFL_DECOMPS.
    """
    from litert_torch.backend.experimental import torch_tfl

    aten = torch.ops.aten
    table = torch_tfl.decomps
    slice_fallback = table.get(aten.slice.Tensor)
    select_fallback = table.get(aten.select.int)

    def slice_decomp(x, dim=0, start=None, end=None, step=1):
        if step != 1 and slice_fallback is not None:
            return slice_fallback(x, dim, start, end, step)
        dim = dim % x.dim()
        n = x.shape[dim]
        lo = 0 if start is None else (start + n if start < 0 else start)
        hi = n if end is None else (end + n if end < 0 else end)
        lo = max(0, min(lo, n))
        hi = max(lo, min(hi, n))
        begin = [0] * x.dim()
        size = list(x.shape)
        begin[dim], size[dim] = lo, hi - lo
        return torch.ops.tfl.slice(x, begin, size)

    def select_decomp(x, dim, index):
        dim = dim % x.dim()
        begin = [0] * x.dim()
        size = list(x.shape)
        begin[dim], size[dim] = index + x.shape[dim] if index < 0 else index, 1
        return torch.ops.tfl.squeeze(torch.ops.tfl.slice(x, begin, size), [dim])

    table[aten.slice.Tensor] = slice_decomp
    if select_fallback is not None or aten.select.int in table:
        table[aten.select.int] = select_decomp
    _sort_and_index(table)


def _sort_and_index(table) -> None:
    """A model that sorts its rows by length (`ilens.sort()`, `x[order]`, `order.argsort()`) as TFLite TOPK_V2 and
    GATHER: litert-torch's own lowerings of sort and advanced indexing fail with a dynamic batch (an iota of
    unknown size). 1-D sorts and a single index tensor on axis 0 only; anything else keeps the default path."""
    aten = torch.ops.aten
    fallbacks = {op: table.get(op) for op in (aten.sort.default, aten.sort.stable, aten.index.Tensor)}

    def sort(x, dim=-1, descending=False, stable=None):
        values, indices = torch.ops.tfl.topk_v2(x if descending else torch.ops.tfl.neg(x), x.shape[0])
        return (values if descending else torch.ops.tfl.neg(values)), indices.to(torch.int64)

    def sort_default(x, dim=-1, descending=False):
        if x.dim() != 1 and fallbacks[aten.sort.default] is not None:
            return fallbacks[aten.sort.default](x, dim, descending)
        return sort(x, dim, descending)

    def sort_stable(x, *, stable=None, dim=-1, descending=False):
        if x.dim() != 1 and fallbacks[aten.sort.stable] is not None:
            return fallbacks[aten.sort.stable](x, stable=stable, dim=dim, descending=descending)
        return sort(x, dim, descending)

    def index(x, indices):
        if len(indices) != 1 or indices[0] is None or indices[0].dim() != 1 or indices[0].dtype == torch.bool:
            if fallbacks[aten.index.Tensor] is not None:
                return fallbacks[aten.index.Tensor](x, indices)
        return torch.ops.tfl.gather(x, indices[0].to(torch.int32), 0)

    table[aten.sort.default] = sort_default
    table[aten.sort.stable] = sort_stable
    table[aten.index.Tensor] = index


def _override(registry, lu, tfl, ir, op, tfl_name):
    fallback = registry.lookup(op)
    dyn = ir.ShapedType.get_dynamic_size()

    def lower(lctx, x, *args, **kwargs):
        dynamic = isinstance(x, ir.Value) and any(s == dyn for s in ir.RankedTensorType(x.type).shape)
        if (args or kwargs or not dynamic) and fallback is not None:
            return fallback(lctx, x, *args, **kwargs)
        return tfl(tfl_name, lu.node_meta_to_ir_types(lctx.node), [x])

    registry.lower(op)(lower)


_ELEMENTWISE = {
    torch.ops.aten.relu.default: "tfl.relu",
    torch.ops.aten.sigmoid.default: "tfl.logistic",
    torch.ops.aten.tanh.default: "tfl.tanh",
    torch.ops.aten.neg.default: "tfl.neg",
    torch.ops.aten.exp.default: "tfl.exp",
    torch.ops.aten.abs.default: "tfl.abs",
    torch.ops.aten.sqrt.default: "tfl.sqrt",
    torch.ops.aten.rsqrt.default: "tfl.rsqrt",
}


# ---- outlining ------------------------------------------------------------------------------------------------------


def _walk(region):
    for block in region.blocks:
        for op in block.operations:
            op = op.operation
            yield op
            for inner in op.regions:
                yield from _walk(inner)


def _const_owner(value, ir) -> bool:
    owner = value.owner
    return not isinstance(owner, ir.Block) and owner.operation.name in _CONST_OPS


def outline_whiles(module) -> int:
    """Outline every tfl.while's cond/body regions into private functions; returns how many loops."""
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import func

    mop = module.operation if hasattr(module, "operation") else module
    top = mop.regions[0].blocks[0]
    # innermost loops first: an outlined inner loop is then just a WHILE op with calls inside the outer body
    loops = [op for r in mop.regions for op in _walk(r) if op.name == "tfl.while"][::-1]
    for k, old in enumerate(loops):
        regions = (old.regions[0], old.regions[1])
        inside = [op for r in regions for op in _walk(r)]
        inside_set = set(inside)
        blocks = [r.blocks[0] for r in regions]
        inner_blocks = blocks + [blk for op in inside for r in op.regions for blk in r.blocks]
        captures = []
        for op in inside:
            for v in op.operands:
                owner = v.owner
                if isinstance(owner, ir.Block):
                    local = any(owner == blk for blk in inner_blocks)
                else:
                    local = owner.operation in inside_set
                if not local and v not in captures:
                    captures.append(v)
        # constants are cloned into the subgraphs: passed as loop operands, every op that reads one (SPLIT_V
        # sizes, EXPAND_DIMS axis, weights) gets dynamic outputs and LiteRT takes its slow WHILE path, which
        # re-plans the body's memory at every step. (`Value.owner` is an OpView for registered ops.)
        consts = [v for v in captures if _const_owner(v, ir)]
        carried = [v for v in captures if v not in consts]
        n = len(old.operands)
        types = [v.type for v in list(old.operands) + carried]
        loc = old.location
        new = ir.Operation.create("tfl.while", results=types, operands=list(old.operands) + carried,
                                  attributes={a: old.attributes[a] for a in old.attributes}, regions=2, loc=loc,
                                  ip=ir.InsertionPoint(old))
        for idx, kind in enumerate(("cond", "body")):
            src = blocks[idx]
            ops = [o.operation for o in src.operations]
            terminator = ops[-1]
            results = [v.type for v in terminator.operands] if kind == "cond" else types
            with loc:
                fn = func.FuncOp(f"edgeseq_while_{k}_{kind}", ir.FunctionType.get(types, results),
                                 ip=ir.InsertionPoint(top))
                fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
                entry = fn.add_entry_block(arg_locs=[loc] * len(types))
            args = list(entry.arguments)
            remap = dict(zip(src.arguments, args[:n]))
            remap.update(zip(carried, args[n:]))
            at_end = ir.InsertionPoint(entry)
            for c in consts:
                remap[c] = c.owner.operation.clone(ip=at_end).results[0]
            moved = []
            for op in ops[:-1]:
                op.detach_from_parent()
                at_end.insert(op)
                moved.append(op)
            with loc, at_end:
                ret = func.ReturnOp(list(terminator.operands) + (args[n:] if kind == "body" else []))
            for op in moved + [ret.operation]:
                for o in [op, *(x for r in op.regions for x in _walk(r))]:
                    for i, v in enumerate(list(o.operands)):
                        if v in remap:
                            o.operands[i] = remap[v]
            blk = new.regions[idx].blocks.append(*types, arg_locs=[loc] * len(types))
            with loc, ir.InsertionPoint(blk):
                call = func.CallOp(fn, list(blk.arguments))
                ir.Operation.create("tfl.yield", operands=list(call.results))
        for i in range(n):
            old.results[i].replace_all_uses_with(new.results[i])
        old.erase()
    return len(loops)
