"""ExecuTorch (.pte): one program, cut at its GRUs into XNNPACK-delegated methods, computes what the PyTorch original
computes at every T from 1 to its max_time (the chunk boundaries and the batch included), carries its metadata and
plan in the file, and refuses what it cannot serve with one line."""

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error

import edgeseq
from edgeseq import formats
from edgeseq.errors import ArtifactError, InputError, UnsupportedError

pytest.importorskip("executorch", reason="needs executorch: pip install 'edgeseq[executorch]'")

LITE = edgeseq.get_model("cbhg-lite")
LONG = max(LITE.time_sweep)  # the longest T the parity sweep asks of every format
SHORT_MAX = 64  # the other models' exports serve T up to here: their parity sweep stays short and cheap


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    return edgeseq.export("cbhg-lite", "executorch", out_dir=tmp_path_factory.mktemp("et"), max_time=LONG)


def plan_of(artifact) -> dict:
    return json.loads(formats.read_metadata(artifact.path)["edgeseq.plan"])


@pytest.mark.covers("cbhg-lite", "executorch")
def test_one_artifact_is_exact_from_t1_to_its_max_time_and_at_every_chunk_boundary(lite):
    scans = [s for s in plan_of(lite)["steps"] if s["kind"] == "scan"]
    assert scans, "cbhg-lite's BiGRU became no recurrence method"
    k, tail = scans[0]["steps"], scans[0]["tail_steps"]
    assert tail < k and scans[0]["tail"] == f"{scans[0]['method']}_tail"
    # under one tail chunk, across the tail's own boundary, one short of / exactly / just past a K-chunk, and a
    # rest of several tail chunks after whole K-chunks
    times = sorted({1, tail + 1, k - 1, k, k + 1, 2 * k + 2 * tail + 1, LONG})
    result = edgeseq.check(lite.path, times=times, batches=(1, 2))
    assert result.passed, result.worst


def test_a_plan_without_a_tail_method_pads_its_last_k_chunk_and_stays_exact(lite):
    """A .pte written before the tail method existed chains only K-step calls: the same runner still serves it
    (its plan names no tail), padding the last chunk after the last valid step."""
    import numpy as np
    from executorch.runtime import Runtime

    from edgeseq.formats.executorch.plan_exec import PLAN_KEY, PlanProgram, chunk_sizes, read_metadata

    program = Runtime.get().load_program(lite.path)
    meta = read_metadata(program)
    plan = json.loads(meta[PLAN_KEY])
    scan = next(s for s in plan["steps"] if s["kind"] == "scan")
    scan.pop("tail"), scan.pop("tail_steps")
    k = scan["steps"]
    assert chunk_sizes(k + 3, k) == [k, k]  # what the old plan runs: the second K-chunk padded after step k + 3
    old = PlanProgram(program, {**meta, PLAN_KEY: json.dumps(plan)})
    assert set(old.methods) == {s["method"] for s in plan["steps"]}  # the tail method is not even loaded
    new = PlanProgram(program, meta)
    feed = LITE.example_inputs(batch=1, time=k + 3, source="speech", seed=3)
    name = LITE.output_names[0]
    got_old, got_new = old.infer(feed)[name], new.infer(feed)[name]
    assert np.abs(got_old - got_new).max() < 1e-5, "K-chunk padding and tail chunks disagree"


@pytest.mark.parametrize(("t", "k", "tail", "sizes"), [
    (0, 32, 8, []), (1, 32, 8, [8]), (8, 32, 8, [8]), (9, 32, 8, [8, 8]), (31, 32, 8, [8, 8, 8, 8]),
    (32, 32, 8, [32]), (33, 32, 8, [32, 8]), (33, 32, None, [32, 32]), (5, 8, None, [8])])
def test_chunks_cover_every_step_and_waste_under_one_tail_chunk(t, k, tail, sizes):
    from edgeseq.formats.executorch.plan_exec import chunk_sizes

    assert chunk_sizes(t, k, tail) == sizes


def test_the_program_holds_its_metadata_plan_and_what_xnnpack_took(lite):
    meta = formats.read_metadata(lite.path)
    assert meta["edgeseq.model"] == "cbhg-lite" and meta["edgeseq.precision"] == "fp32"
    assert meta["edgeseq.max_time"] == str(LONG)
    assert meta["edgeseq.weights_sha256"] == lite.weights_sha256
    kinds = [s["kind"] for s in plan_of(lite)["steps"]]
    assert kinds.count("scan") == 1 and kinds[0] == "method"  # the front, then the BiGRU's recurrence
    assert formats.detect_format(lite.path).value == "executorch"
    assert lite.format == "executorch" and lite.path.endswith("cbhg-lite.fp32.pte")
    assert any(n.startswith("1 nn.GRU -> 1 recurrence method") for n in lite.notes)
    census = next(n for n in lite.notes if n.startswith("XNNPACK runs"))
    # every op of the recurrence methods is XNNPACK's (one delegate call a chunk): nothing of gru_0 / gru_0_tail
    # on portable kernels, whose per-step slices once cut the delegate
    assert "left on portable kernels: " in census and "gru_" not in census.split("left on portable kernels: ")[1]


def test_a_sequence_over_max_time_is_refused_not_cropped(lite):
    with formats.runner_for(lite.path) as runner, pytest.raises(InputError, match=f"serves sequences up to T={LONG}"):
        runner.infer(LITE.example_inputs(time=LONG + 1, source="random"))


def test_rows_are_named_and_run_on_the_cpu(lite):
    fmt = formats.get("executorch")
    assert fmt.runtime_label("cpu") == "executorch-xnnpack-cpu"
    assert fmt.runtime_devices() == ["cpu"]
    with pytest.raises(UnsupportedError, match="cpu"):
        fmt.runner(lite.path, device="cuda")


# the quantizer's census for cbhg-lite: its 4 linears and 1 pointwise projection are int8; its depthwise convs and
# the bank's pointwise convs stay float
PRECISION_NOTES = {"fp16": "fp16: every dynamic-T method computes in half precision (fp32 in and out); the 1 "
                           "recurrence method(s) (the GRUs' hidden-state matmuls) stay fp32",
                   "int8-dynamic": "int8-dynamic: 5 of 24 weighted ops in int8 (the rest float): conv2d 1/20, "
                                   "linear 4/4; the 1 recurrence method(s) (the GRUs' hidden-state matmuls) stay fp32",
                   # static: the convolutions only, every one of them (as ONNX and TFLite int8-static)
                   "int8-static": "int8-static: 20 of 24 weighted ops in int8 (the rest float): conv2d 20/20, "
                                  "linear 0/4; the 1 recurrence method(s) (the GRUs' hidden-state matmuls) stay fp32"}


@pytest.mark.parametrize("precision", list(PRECISION_NOTES))
def test_below_fp32_one_artifact_passes_the_sweep_and_says_what_stayed_float(lite, precision, tmp_path):
    """fp16, int8-dynamic and int8-static .pte files pass their precision's tolerance at T = 1, 200 and the sweep's
    longest, are smaller than the fp32 file, and name which ops left fp32 (the recurrence never does). int8-static
    is calibrated by running the whole plan on the model's calibration inputs."""
    artifact = edgeseq.export("cbhg-lite", "executorch", precision=precision, out_dir=tmp_path, max_time=LONG)
    assert formats.read_metadata(artifact.path)["edgeseq.precision"] == precision
    assert PRECISION_NOTES[precision] in artifact.notes
    census = artifact.quantization  # what the report's "still float" column shows
    assert census["config"]["recipe"] == precision and census["float_ops"]["gru recurrence method"] == 1
    assert census["int8_ops"] == {"fp16": {}, "int8-dynamic": {"conv2d": 1, "linear": 4},
                                  "int8-static": {"conv2d": 20}}[precision]
    assert Path(artifact.path).stat().st_size < Path(lite.path).stat().st_size
    result = edgeseq.check(artifact.path, times=(1, 200, LONG), batches=(1,))
    assert result.precision == precision and result.passed, result.worst
    assert result.worst.rel_l2 > 1e-5  # it computes below fp32: a copy of the fp32 graph would be ~1e-7


@pytest.mark.slow
def test_cbhg_int8_static_quantizes_every_conv_through_the_4d_stack(tmp_path):
    """cbhg's convs run 4-D (XNNPACK's convolution) in int8-static: all 18 in int8, the highway and GRU input
    linears float, parity within 1.5e-2."""
    artifact = edgeseq.export("cbhg", "executorch", precision="int8-static", out_dir=tmp_path, max_time=SHORT_MAX)
    assert ("int8-static: 18 of 27 weighted ops in int8 (the rest float): conv2d 18/18, linear 0/9; the 1 "
            "recurrence method(s) (the GRUs' hidden-state matmuls) stay fp32") in artifact.notes
    result = edgeseq.check(artifact.path, times=(1, 7, SHORT_MAX), batches=(1,))
    assert result.passed and result.worst.rel_l2 > 1e-5, result.worst


def test_a_corrupt_pte_is_a_one_line_artifact_error(lite, tmp_path, run_cli):
    bad = tmp_path / "cut.fp32.pte"
    bad.write_bytes(Path(lite.path).read_bytes()[:4096])
    with pytest.raises(ArtifactError, match="cut.fp32.pte"):
        formats.read_metadata(bad)
    line = assert_one_line_error(run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "7"))
    assert "cut.fp32.pte" in line
    foreign = tmp_path / "x.pte"
    foreign.write_bytes(b"\x08\x07\x12\x00TFL3" + bytes(64))
    with pytest.raises(ArtifactError, match="is not an ExecuTorch model"):
        formats.detect_format(foreign)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.covers(m, "executorch"))
                                   for m in ("cbhg", "cbhg-postnet", "attention-cbhg", "seq-cnn")])
def test_every_model_exports_to_executorch_and_passes_parity(model, tmp_path):
    spec = edgeseq.get_model(model)
    artifact = edgeseq.export(model, "executorch", out_dir=tmp_path,
                              max_time=SHORT_MAX if spec.has_dynamic_time else None)
    times = (1, 7, SHORT_MAX) if spec.has_dynamic_time else None
    result = edgeseq.check(artifact.path, times=times, batches=(1, 2))
    assert result.passed, result.worst
    if model in ("cbhg", "cbhg-postnet"):  # plain convs, written direct by default: no im2col copies left portable
        portable = next(n for n in artifact.notes if "left on portable kernels" in n)
        assert "slice_copy" not in portable and "cat" not in portable, portable
        assert not any("im2col" in n for n in artifact.notes), artifact.notes


def test_the_conv_form_is_direct_but_for_int8_dynamic_and_a_wrong_one_is_one_line(tmp_path):
    """XNNPACK's convolution, except where the quantizer takes linears only; im2col on request (x86 AVX2-only
    hosts, whose f32 convolution kernel in this wheel is slow), never with int8-static (its quantized pad)."""
    from edgeseq.enums import Precision
    from edgeseq.formats.executorch import ExecutorchOptions
    from edgeseq.formats.executorch.convert import export

    assert {p.value: ExecutorchOptions().conv_form(p) for p in Precision} == {
        "fp32": "direct", "fp16": "direct", "int8-dynamic": "im2col", "int8-static": "direct"}
    assert ExecutorchOptions(convs="im2col").conv_form(Precision.FP32) == "im2col"
    assert ExecutorchOptions(convs="direct").conv_form(Precision.INT8_DYNAMIC) == "direct"
    spec = edgeseq.get_model("cbhg")
    with pytest.raises(InputError, match="convs must be one of direct, im2col, not 'gemm'"):
        export(spec, tmp_path / "x.pte", options=ExecutorchOptions(convs="gemm"))
    with pytest.raises(InputError, match="int8-static writes the convolutions direct"):
        export(spec, tmp_path / "y.pte", precision=Precision.INT8_STATIC, options=ExecutorchOptions(convs="im2col"))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cbhg_with_im2col_convs_is_as_exact_as_direct(tmp_path):
    """The other conv form: every conv a Linear over its shifted copies, the same outputs."""
    from edgeseq.formats.executorch import ExecutorchOptions
    from edgeseq.formats.executorch.convert import export

    artifact = export(edgeseq.get_model("cbhg"), tmp_path / "cbhg.fp32.pte",
                      options=ExecutorchOptions(max_time=SHORT_MAX, convs="im2col"))
    portable = next(n for n in artifact.notes if "left on portable kernels" in n)
    assert "slice_copy" in portable  # the shifted copies of a dynamic T: XNNPACK slices static shapes only
    assert any(n.startswith("18 convolution(s) written as im2col GEMMs") for n in artifact.notes), artifact.notes
    result = edgeseq.check(artifact.path, times=(1, 7, SHORT_MAX), batches=(1,))
    assert result.passed and result.worst.rel_l2 < 1e-5, result.worst


PUBLIC_CBHG = Path(__file__).resolve().parent / "fixtures" / "public_cbhg.py"


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["coqui_style", "channels_first", "coqui_style_two_layers"])
def test_user_models_take_the_same_path(factory, tmp_path):
    artifact = edgeseq.export(f"{PUBLIC_CBHG}:{factory}", "executorch", out_dir=tmp_path, max_time=SHORT_MAX)
    result = edgeseq.check(artifact.path, times=(1, 7, SHORT_MAX), batches=(1, 2))
    assert result.passed, result.worst


def test_a_packed_batch_runs_each_row_over_its_own_length(tmp_path):
    """The padding-safe cbhg-lite (a lengths input, its BiGRU packed): each row's recurrence runs over the row's
    own frames, backward from its own last one, so a padded batch gives every row what it gives alone (#19)."""
    artifact = edgeseq.export("edgeseq.models.padded:cbhg_lite", "executorch", out_dir=tmp_path, max_time=SHORT_MAX)
    scans = [s for s in plan_of(artifact)["steps"] if s["kind"] == "scan"]
    assert len(scans) == 1 and scans[0]["lengths"], scans  # the recurrence reads each row's length
    parity = edgeseq.check(artifact.path, times=(1, 7, SHORT_MAX), batches=(1, 3))
    assert parity.passed, parity.worst
    padding = edgeseq.check_padding(artifact.path, batches=(3,), time=50)
    assert padding.padding_safe and padding.worst.rel_l2 < 1e-5, padding.verdict()


def test_an_op_the_runtime_has_no_kernel_for_is_named_at_export():
    """ESPnet's packed idiom sorts rows by length: the GRU packs fine, but this ExecuTorch runtime has no sort
    kernel. The census of ops left on portable kernels is checked against the runtime's own operator list at export,
    so it is one line naming the op and its method (not 'error 0x14' at load); ops it has pass."""
    from edgeseq.formats.executorch.convert import _refuse_missing_kernels

    spec = edgeseq.get_model("cbhg-lite")
    _refuse_missing_kernels({"aten": {"piece_0:slice_copy", "gru_0:squeeze_copy"}}, spec)  # kernels it has
    with pytest.raises(UnsupportedError, match=r"^cbhg-lite: ExecuTorch's runtime has no kernel for sort \(in "
                                               r"piece_0\); rewrite that step without it, or use -f onnx / tflite$"):
        _refuse_missing_kernels({"aten": {"piece_0:sort", "piece_0:slice_copy"}}, spec)


def test_int8_dynamic_keeps_no_float_copy_of_a_quantized_weight():
    """convert_pt2e leaves the float weight it quantized in the module; the method must not carry it too (cbhg's
    .pte would be 16.5 MB, above fp32's 13.7 MB). The census names the float leftovers (a depthwise conv here)."""
    import torch

    from edgeseq.enums import Precision
    from edgeseq.formats.executorch.precision import lower_precision

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = torch.nn.Conv1d(16, 16, 3, padding=1, groups=16)
            self.proj = torch.nn.Linear(16, 32)

        def forward(self, x):
            return self.proj(self.depthwise(x).transpose(1, 2))

    example = (torch.randn(1, 16, 9),)
    program = torch.export.export(Net().eval(), example, strict=False)
    quantized, census = lower_precision(program, example, None, Precision.INT8_DYNAMIC)
    assert census == {"int8": {"linear": 1}, "float": {"conv1d": 1}}
    floats = {k: v for k, v in quantized.state_dict.items() if v.dtype == torch.float32 and v.numel() >= 16 * 32}
    assert not floats, list(floats)
    assert any(v.dtype == torch.int8 for v in [*quantized.state_dict.values(), *quantized.constants.values()])
    assert lower_precision(program, example, None, Precision.FP32) == (program, {})


# ---- on a board: a profile with runtime = "executorch", reached over ssh ------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from test_remote_ssh import serve

    yield from serve(tmp_path_factory, "sshd-et")


def test_a_board_runs_the_pte_through_the_device_agent(lite, sshd, tmp_path):
    """The device agent runs the .pte's plan with the interpreter this machine's runner uses (plan_exec.py, shipped
    in its zip), so a board with executorch gives the local runner's answers: the same bytes here, where the
    "board" is this CPU at the same thread count. The sweep and a batch go in one job (the longest T is checked
    here, locally, by the other tests: the plan is the same file)."""
    import numpy as np

    profile = str(sshd.profile("pi-et", runtime="executorch", delegate="xnnpack"))
    result = edgeseq.check(lite.path, device=profile, times=(1, 9), batches=(1, 2))  # 9: past the first chunk
    assert result.passed and result.runtime == "executorch-xnnpack@pi-et", result.failures
    feed = LITE.example_inputs(time=37, batch=2, source="random")
    with edgeseq.load(lite.path, device=profile) as remote, formats.runner_for(lite.path, threads=2) as local:
        assert remote.metadata["edgeseq.plan"] == local.metadata["edgeseq.plan"]
        got, want = remote.infer(feed), local.infer(feed)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    timing = edgeseq.profile(lite.path, device=profile, time=50, iterations=3, warmup=1)
    assert timing.runtime == "executorch-xnnpack@pi-et" and timing.iterations == 3 and timing.p50_ms > 0


def test_a_board_without_executorch_or_given_another_file_is_one_line(lite, sshd, lite_onnx, tmp_path, run_cli):
    from test_remote_ssh import python_without

    python = python_without("executorch", tmp_path)
    line = assert_one_line_error(run_cli("check", lite.path, "--device",
                                         str(sshd.profile("pi-et", runtime="executorch", python=str(python)))))
    assert "pi-et (" in line and "executorch is not installed for " in line, line
    assert "on the device (pip install executorch; its runtime imports torch)" in line, line
    line = assert_one_line_error(run_cli("check", lite_onnx.path, "--device",
                                         str(sshd.profile("pi-et", runtime="executorch"))))
    assert "runs executorch, which takes .pte files; cbhg-lite.fp32.onnx is onnx" in line, line
