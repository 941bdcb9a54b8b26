"""int8 that holds on every CPU: the CPU's int8 kernel family, which configs saturate where, what artifacts and
reports record about it, and the same file failing on a CPU its kernels saturate on (ISA-specific cases say so)."""

import copy
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgeseq
from edgeseq.environment import cpu_info, int8_isa
from edgeseq.formats import get as get_format
from edgeseq.formats.onnx import int8_safe_isas
from edgeseq.quantize import EVERY_CPU, QuantConfig, int8_cpu_note

ONNX = get_format("onnx")  # the ONNX format: its quantization defaults

HERE = int8_isa()
WIDE = ("x86-avx512-vnni", "x86-avx-vnni", "x86-amx", "arm64-neon", "arm64-dotprod", "arm64-i8mm")


@pytest.mark.parametrize("flags, machine, family", [
    (["avx2", "fma", "f16c"], "x86_64", "x86-avx2"),
    (["avx2", "avx512f", "avx512bw"], "x86_64", "x86-avx2"),  # AVX-512 without VNNI: vpmaddubsw still
    (["avx2", "avx512f", "avx512_vnni"], "x86_64", "x86-avx512-vnni"),
    (["avx2", "avx_vnni"], "x86_64", "x86-avx-vnni"),
    (["avx2", "avx512_vnni", "amx_int8"], "x86_64", "x86-amx"),
    (["fma"], "x86_64", "x86_64-baseline"),
    (["fp", "asimd"], "aarch64", "arm64-neon"),
    (["fp", "asimd", "asimddp"], "aarch64", "arm64-dotprod"),
    (["fp", "asimd", "asimddp", "i8mm", "sve"], "aarch64", "arm64-i8mm"),
])
def test_int8_kernel_family_from_cpu_flags(flags, machine, family):
    assert int8_isa(flags, machine) == family


def test_cpu_info_of_a_device_keeps_only_the_flags_that_choose_kernels():
    info = cpu_info("Cortex-A76", ["fp", "asimd", "evtstrm", "asimddp", "lrcpc"], "aarch64")
    assert info == {"model": "Cortex-A76", "machine": "aarch64", "flags": ["asimd", "asimddp"],
                    "int8_isa": "arm64-dotprod"}


def test_every_shipped_onnx_int8_default_is_exact_on_every_cpu():
    for precision in ("int8-dynamic", "int8-static"):
        assert int8_safe_isas(ONNX.default_quant(precision)) == (EVERY_CPU,), precision


@pytest.mark.parametrize("changes, safe_everywhere", [
    ({}, True),  # 7-bit weights: u8s8 cannot saturate
    ({"reduce_range": False}, False),  # 8-bit signed weights: vpmaddubsw saturates without VNNI
    ({"reduce_range": False, "weight_type": "uint8"}, True),  # u8u8 widens before it multiplies
    ({"reduce_range": False, "activation_type": "int8"}, False),  # s8s8 runs as u8s8 on x86
])
def test_which_static_configs_are_exact_where(changes, safe_everywhere):
    safe = int8_safe_isas(ONNX.default_quant("int8-static").replace(**changes))
    assert (safe == (EVERY_CPU,)) is safe_everywhere
    if not safe_everywhere:
        assert "x86-avx2" not in safe and set(safe) == set(WIDE)


def test_dynamic_with_signed_weights_is_not_exact_on_avx2():
    assert "x86-avx2" not in int8_safe_isas(ONNX.default_quant("int8-dynamic").replace(weight_type="int8"))
    assert int8_safe_isas(QuantConfig("fp16")) == (EVERY_CPU,)


@pytest.mark.parametrize("safe, isa, says", [
    ("any", "x86-avx2", False),
    ("x86-avx512-vnni,arm64-dotprod", "x86-avx512-vnni", False),
    ("x86-avx512-vnni,arm64-dotprod", "x86-avx2", True),
    ("", "x86-avx2", False),  # an artifact that says nothing (fp32, TFLite, older exports): no claim
    ("x86-avx512-vnni", None, False),  # a CPU nobody could read (a phone's benchmark_model): no claim
])
def test_int8_cpu_note(safe, isa, says):
    note = int8_cpu_note({"edgeseq.int8_cpus": safe}, {"int8_isa": isa} if isa else {})
    assert bool(note) is says
    if says:
        assert isa in note and "x86-avx512-vnni" in note


# ---- artifacts ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_pair(tmp_path_factory, lite_onnx):
    """cbhg-lite int8-static with the default (7-bit weights) and with 8-bit weights (the VNNI / ARM variant)."""
    out = tmp_path_factory.mktemp("int8-cpus")
    default = edgeseq.export("cbhg-lite", "onnx", out_dir=out / "default", precision="int8-static", parent=lite_onnx)
    wide = edgeseq.export("cbhg-lite", "onnx", out_dir=out / "wide", precision="int8-static", parent=lite_onnx,
                          quant={"reduce_range": False})
    return default, wide


def _conv_weights(path) -> list[np.ndarray]:
    model = onnx.load(path)
    inits = {t.name: t for t in model.graph.initializer}
    conv_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and any(n.output[0] == c.input[1] for c in model.graph.node if c.op_type == "Conv")}
    return [numpy_helper.to_array(inits[name]) for name in conv_inputs if name in inits]


def test_int8_artifacts_record_the_cpus_they_are_exact_on(static_pair):
    default, wide = static_pair
    meta_default, meta_wide = (edgeseq.formats.read_metadata(a.path) for a in static_pair)
    assert meta_default["edgeseq.int8_cpus"] == EVERY_CPU and meta_default["edgeseq.quantized_on"] == HERE
    assert meta_wide["edgeseq.int8_cpus"].split(",") == list(WIDE)
    assert default.quantization["int8_cpus"] == [EVERY_CPU]
    assert json.loads(meta_default["edgeseq.quant"])["reduce_range"] is True


def test_reduce_range_reaches_the_weight_tensors(static_pair):
    """The settings are read back from the file: 7-bit weights span [-64, 64], 8-bit ones [-127, 127]."""
    default, wide = (_conv_weights(a.path) for a in static_pair)
    assert len(default) == len(wide) == 20  # every conv of cbhg-lite, weights stored int8
    assert all(w.dtype == np.int8 for w in default + wide)
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in default) == 64
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in wide) == 127


@pytest.mark.skipif(HERE != "x86-avx2", reason=f"needs an x86 CPU with AVX2 and no VNNI (this one's int8 kernels: "
                                               f"{HERE})")
def test_the_8bit_variant_fails_on_avx2_and_says_why(static_pair):
    """The same file that passes on a VNNI CPU fails here: the check catches it and names the cause."""
    default, wide = static_pair
    case = dict(times=(50,), batches=(1,))
    bad = edgeseq.check(wide.path, **case)
    assert not bad.passed and bad.worst.rel_l2 > 1.5e-2
    assert bad.cpu["int8_isa"] == "x86-avx2"
    assert any("this one is x86-avx2" in n for n in bad.notes)
    good = edgeseq.check(default.path, **case)
    assert good.passed and not any(n.startswith("int8 kernels") for n in good.notes)


@pytest.mark.skipif(HERE not in WIDE, reason=f"needs a CPU with VNNI, AMX or ARM int8 kernels (this one's: {HERE})")
def test_the_8bit_variant_passes_where_its_kernels_are_exact(static_pair):
    result = edgeseq.check(static_pair[1].path, times=(50,), batches=(1,))
    assert result.passed, result.failures
    assert not any(n.startswith("int8 kernels") for n in result.notes)


# ---- reports --------------------------------------------------------------------------------------------------------


def test_the_matrix_records_the_cpu_and_stamps_where_int8_passed(tmp_path):
    from edgeseq.artifact import sha256_file
    from edgeseq.matrix import MatrixOptions

    report = edgeseq.run_matrix("cbhg-lite", "onnx", ("int8-dynamic",), out_dir=tmp_path,
                                options=MatrixOptions(times=(7,), batches=(1,), iterations=3)).to_dict()
    assert report["environment"]["int8_isa"] == HERE
    assert all(p["cpu"]["int8_isa"] == HERE for p in report["parity"])
    fp32, int8 = report["artifacts"]
    validated = json.loads(edgeseq.formats.read_metadata(int8["path"])["edgeseq.validated_on"])
    assert validated["int8_isa"] == HERE and validated["runtime"] == "onnxruntime-cpu"
    assert validated["rel_l2"] == next(p for p in report["parity"] if p["artifact"] == int8["path"])["worst"]["rel_l2"]
    assert int8["sha256"] == sha256_file(int8["path"])  # the stamp is in the file the report names
    assert "edgeseq.validated_on" not in edgeseq.formats.read_metadata(fp32["path"])  # fp32 parity is CPU-free
    assert f"({HERE})" in (tmp_path / "report.md").read_text()


def test_the_matrix_stamps_nothing_when_int8_fails(tmp_path):
    from edgeseq.matrix import MatrixOptions

    report = edgeseq.run_matrix("cbhg-lite", "onnx", ("int8-dynamic",), out_dir=tmp_path, options=MatrixOptions(
        times=(7,), batches=(1,), iterations=3, rel_l2=(("int8-dynamic", 1e-9),), bisect=False)).to_dict()
    assert not report["passed"]
    assert "edgeseq.validated_on" not in edgeseq.formats.read_metadata(report["artifacts"][1]["path"])


def test_parity_rows_keep_their_cpu_through_json():
    from edgeseq.parity import ParityResult

    row = ParityResult("m", "onnxruntime-cpu", "int8-static", "a.onnx", (), cpu=cpu_info())
    back = ParityResult.from_dict(json.loads(json.dumps(row.to_dict())))
    assert back.cpu == row.cpu and back.cpu["int8_isa"] == HERE
    assert ParityResult.from_dict({**row.to_dict(), "cpu": None}).cpu == {}  # older reports had none


def test_diff_says_when_the_cpus_int8_kernels_differ(tmp_path):
    from edgeseq.matrix import MatrixOptions
    from edgeseq.report import diff_reports, load_report

    edgeseq.run_matrix("cbhg-lite", "onnx", ("int8-dynamic",), out_dir=tmp_path,
                       options=MatrixOptions(times=(7,), batches=(1,), iterations=3))
    old = load_report(tmp_path / "report.json")
    same = diff_reports(old, copy.deepcopy(old))
    assert not any("int8 kernels" in n for n in same.notes)
    other = copy.deepcopy(old)
    other["environment"]["int8_isa"] = "arm64-dotprod" if HERE != "arm64-dotprod" else "x86-avx2"
    notes = diff_reports(old, other).notes
    assert any(f"different int8 kernels ({HERE} and {other['environment']['int8_isa']})" in n for n in notes)
    older = copy.deepcopy(other)
    del older["environment"]["int8_isa"]  # a report from before it was recorded: read from its CPU flags
    older["environment"].update(cpu_flags=["asimd", "asimddp"], machine="aarch64")
    assert any("arm64-dotprod" in n for n in diff_reports(old, older).notes) is (HERE != "arm64-dotprod")
    fp32_only = copy.deepcopy(other)
    fp32_only["artifacts"] = [a for a in fp32_only["artifacts"] if a["precision"] == "fp32"]
    old_fp32 = copy.deepcopy(old)
    old_fp32["artifacts"] = [a for a in old_fp32["artifacts"] if a["precision"] == "fp32"]
    assert not any("int8 kernels" in n for n in diff_reports(old_fp32, fp32_only).notes)  # no int8: no claim


def test_device_agent_reads_its_own_cpu():
    from edgeseq.remote import agent

    got = agent._cpu()
    assert cpu_info(got["model"], got["flags"], got["machine"]) == cpu_info()
