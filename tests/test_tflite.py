"""TFLite / LiteRT: one length-dynamic .tflite (the GRU as a WHILE loop) matches PyTorch at every T and batch,
quantized variants stay within their tolerances, and an input the artifact cannot serve is refused in one line.

The default run converts a tiny CBHG user module, cbhg-lite (fp32 and static int8) and seq-cnn (about 10-30 s
each on 2 shared cores); the other quantized cbhg-lite variants and cbhg are marked slow.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="needs the tflite extra (litert-torch): pip install 'edgeseq[tflite]'")
pytest.importorskip("ai_edge_litert", reason="needs the tflite extra (ai-edge-litert): pip install 'edgeseq[tflite]'")

import edgeseq  # noqa: E402
from edgeseq.errors import InputError  # noqa: E402
from edgeseq.models.cbhg import CBHG, CBHGConfig, ConvKind, HighwayKind  # noqa: E402

SWEEP_T = (1, 7, 50, 200, 1000)
TINY = CBHGConfig(in_dim=16, bank_k=3, bank_channels=8, conv=ConvKind.SEPARABLE, proj_channels=(16, 16),
                  highway_dim=8, highway_layers=1, highway=HighwayKind.SIMPLIFIED, gru_hidden=8)


class UserEncoder(torch.nn.Module):
    """A user's own module: conv front end + 2-layer BiGRU + linear head (not a registered edgeseq model)."""

    def __init__(self):
        super().__init__()
        self.front = torch.nn.Sequential(torch.nn.Conv1d(12, 16, 3, padding=1), torch.nn.BatchNorm1d(16),
                                         torch.nn.ReLU())
        self.rnn = torch.nn.GRU(16, 10, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(20, 5)

    def forward(self, x):
        y = self.front(x.transpose(1, 2)).transpose(1, 2)
        y, _ = self.rnn(y)
        return self.head(y)


def _axes(name):
    return {name: {0: "batch", 1: "time"}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    module = CBHG(TINY).eval()
    for m in module.modules():  # non-trivial batch-norm statistics, as the registered specs have
        if isinstance(m, torch.nn.BatchNorm1d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    art = edgeseq.export(module, "tflite", out_dir=tmp_path_factory.mktemp("tiny"),
                         example_inputs=torch.randn(2, 37, 16), input_names=["features"], output_names=["encoded"],
                         dynamic_axes={**_axes("features"), **_axes("encoded")}, max_time=1000)
    return module, art


def _run(path, x, threads=1):
    with edgeseq.load(path, threads=threads) as runner:
        return runner.infer({runner.inputs[0].name: x})


def test_one_artifact_serves_every_length_and_batch(tiny):
    module, art = tiny
    rng = np.random.default_rng(0)
    with edgeseq.load(art.path, threads=1) as runner:
        for t in SWEEP_T:
            for b in (1, 3):
                x = rng.standard_normal((b, t, 16)).astype(np.float32)
                got = runner.infer({"features": x})["encoded"]
                with torch.inference_mode():
                    want = module(torch.from_numpy(x)).numpy()
                assert got.shape == want.shape
                rel = np.linalg.norm(got - want) / np.linalg.norm(want)
                assert rel < 1e-5, (t, b, rel)


def test_artifact_is_a_loop_not_an_unrolled_graph(tiny):
    from ai_edge_litert.interpreter import Interpreter

    _, art = tiny
    interp = Interpreter(model_path=art.path)
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert ops.count("WHILE") == 1
    assert len(ops) < 150  # the probe's unrolled BiGRU had thousands of ops
    assert interp.get_input_details()[0]["shape_signature"].tolist() == [-1, -1, 16]
    assert any("WHILE loop" in note for note in art.notes)


def test_longer_than_max_time_is_refused_in_one_line(tiny):
    _, art = tiny
    with edgeseq.load(art.path) as runner:
        assert runner.max_time == 1000
        with pytest.raises(InputError, match=r"up to T=1000; got T=1001") as err:
            runner.infer({"features": np.zeros((1, 1001, 16), np.float32)})
    assert "\n" not in str(err.value)


def test_metadata_and_detection(tiny):
    from edgeseq.formats import detect_format

    _, art = tiny
    assert detect_format(art.path).value == "tflite"
    with edgeseq.load(art.path) as runner:
        meta = runner.metadata
        assert runner.runtime.endswith("xnnpack-cpu")
        assert [t.name for t in runner.inputs] == ["features"] and runner.output_names == ("encoded",)
    assert meta["edgeseq.precision"] == "fp32" and meta["edgeseq.max_time"] == "1000"
    assert meta["edgeseq.version"] == edgeseq.__version__


def _hide_ai_edge_litert(monkeypatch):
    """Make `import ai_edge_litert...` fail for the rest of the test, as on a device that only has tflite_runtime."""
    import sys

    for name in [n for n in sys.modules if n == "ai_edge_litert" or n.startswith("ai_edge_litert.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)


def test_runner_falls_back_to_tflite_runtime(tiny, monkeypatch):
    """Without ai-edge-litert the runner loads tflite_runtime's Interpreter (here a `tflite_runtime.interpreter`
    module backed by the real LiteRT interpreter, counted, so the test sees which import was used)."""
    import sys
    import types

    from ai_edge_litert.interpreter import Interpreter

    module, art = tiny
    x = np.random.default_rng(5).standard_normal((2, 41, 16)).astype(np.float32)
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()

    class CountingInterpreter(Interpreter):
        created = 0

        def __init__(self, *args, **kwargs):
            type(self).created += 1
            super().__init__(*args, **kwargs)

    package, submodule = types.ModuleType("tflite_runtime"), types.ModuleType("tflite_runtime.interpreter")
    submodule.Interpreter = CountingInterpreter
    package.interpreter = submodule
    _hide_ai_edge_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", submodule)
    with pytest.raises(ImportError):
        import ai_edge_litert.interpreter  # noqa: F401

    with edgeseq.load(art.path, threads=1) as runner:
        assert runner.runtime == "tflite_runtime-xnnpack-cpu"
        assert runner.metadata["edgeseq.precision"] == "fp32"  # read without LiteRT's schema module
        assert [t.name for t in runner.inputs] == ["features"] and runner.max_time == 1000
        got = runner.infer({"features": x})["encoded"]
    assert CountingInterpreter.created == 1
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_no_tflite_interpreter_names_the_pip_install(tiny, monkeypatch):
    import sys

    from edgeseq.errors import MissingExtraError

    _, art = tiny
    _hide_ai_edge_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeseq\[tflite\]'") as err:
        edgeseq.load(art.path).load()
    assert "\n" not in str(err.value) and "tflite-runtime" in str(err.value)


def test_not_a_tflite_file_is_an_artifact_error(tmp_path):
    from edgeseq.errors import ArtifactError

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="not a TFLite model"):
        edgeseq.load(bad)


def test_user_module_with_bigru_runs_at_any_length(tmp_path):
    torch.manual_seed(1)
    net = UserEncoder().eval()
    art = edgeseq.export(net, "tflite", out_dir=tmp_path, example_inputs=torch.randn(2, 23, 12),
                         input_names=["x"], output_names=["y"], dynamic_axes={**_axes("x"), **_axes("y")})
    rng = np.random.default_rng(3)
    for t in (1, 9, 333):
        x = rng.standard_normal((2, t, 12)).astype(np.float32)
        got = _run(art.path, x)["y"]
        with torch.inference_mode():
            want = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.covers("cbhg-lite", "tflite")
def test_cbhg_lite_passes_parity_at_every_length(lite_tflite):
    """The issue's acceptance: cbhg-lite -> .tflite holds fp32 tolerance at T in {1, 7, 50, 200, 1000} x {1, 3}."""
    result = edgeseq.check(lite_tflite.path, "cbhg-lite", times=SWEEP_T, batches=(1, 3))
    assert result.passed, result.failures
    assert result.worst.rel_l2 <= 1e-5


def test_window_max_pool_matches_max_pool1d():
    from edgeseq.formats.tflite.rewrites import WindowMaxPool, window_pool_ok

    for k, t in ((2, 32), (2, 33), (3, 10), (4, 4)):
        pool = torch.nn.MaxPool1d(k)
        x = torch.randn(3, 5, t)
        assert torch.equal(WindowMaxPool(pool)(x), pool(x)), (k, t)
    assert not window_pool_ok(torch.nn.MaxPool1d(3, stride=1))  # overlapping windows are left to the converter
    assert not window_pool_ok(torch.nn.MaxPool1d(2, padding=1))


@pytest.mark.covers("seq-cnn", "tflite")
def test_fixed_length_classifier_keeps_a_dynamic_batch(tmp_path):
    """seq-cnn (fixed 32 frames, MaxPool1d(2), Flatten): litert-torch's max_pool1d lowering failed on the dynamic
    batch ("broadcast_in_dim shape must have every element be nonnegative"); WindowMaxPool converts."""
    from ai_edge_litert.interpreter import Interpreter

    for precision in ("fp32", "int8-static"):
        art = edgeseq.export("seq-cnn", "tflite", out_dir=tmp_path, precision=precision)
        assert Interpreter(model_path=art.path).get_input_details()[0]["shape_signature"].tolist() == [-1, 32, 40]
        result = edgeseq.check(art.path, "seq-cnn", batches=(1, 3, 8))
        assert result.passed, (precision, result.failures)
        assert len(result.cases) == 6  # 3 batches x speech + random, at the spec's fixed 32 frames


def _loop_ops(path):
    """(subgraph index, op name, [input tensors]) for every op of the model, plus the tensors with constant data."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(open(path, "rb").read()), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops, constant = [], set()
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors):
            buf = model.buffers[t.buffer]
            if (buf.data is not None and len(buf.data)) or (buf.size or 0) > 0:
                constant.add((si, ti))
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            ops.append((si, names[max(code.builtinCode, code.deprecatedBuiltinCode)], list(op.inputs)))
    return ops, constant


def test_loop_body_is_static_and_avoids_reference_kernels(lite_tflite):
    """What made LiteRT slow (issue #3): constants passed into the WHILE body as loop operands (dynamic tensors
    -> LiteRT re-plans the body at every step), and STRIDED_SLICE / BROADCAST_TO (reference kernels)."""
    ops, constant = _loop_ops(lite_tflite.path)
    names = [name for _, name, _ in ops]
    assert names.count("WHILE") == 2  # blocks of chunks, chunks of steps
    assert "STRIDED_SLICE" not in names and "BROADCAST_TO" not in names
    shape_args = {"SPLIT_V": (1, 2), "EXPAND_DIMS": (1,), "BATCH_MATMUL": (1,)}
    checked = 0
    for si, name, inputs in ops:
        for pos in shape_args.get(name, ()) if si > 0 else ():
            assert (si, inputs[pos]) in constant, (si, name, pos)
            checked += 1
    assert checked > 0


def test_export_rewrites_are_exact_in_torch():
    """The TFLite-only rewrites (LoopGRU, the 4-D conv stack with the padding inside the convs) keep the
    numbers, at even and odd lengths (the even-kernel crop) and at T=1."""
    from edgeseq.formats.tflite.rewrites import rewrite_for_export

    torch.manual_seed(2)
    for module, dim in ((CBHG(TINY).eval(), 16), (edgeseq.get_model("cbhg-lite").build(None), 128)):
        rewritten, n_grus = rewrite_for_export(module)
        assert n_grus == 1
        for t in (1, 8, 9, 130):
            x = torch.randn(3, t, dim)
            with torch.inference_mode():
                want, got = module(x), rewritten(x)
            assert float((got - want).abs().max()) < 1e-5, t


def test_export_is_byte_identical_run_to_run(lite_tflite, tmp_path):
    """Same model, same versions -> same bytes, also from another process with another string-hash seed (the loop
    outlining used to collect captured values from a set, so tensor order changed run to run)."""
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import edgeseq, sys; print(edgeseq.export('cbhg-lite', 'tflite', out_dir=sys.argv[1]).path)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = proc.stdout.strip().splitlines()[-1]

    def digest(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest()

    assert digest(again) == digest(lite_tflite.path)


def test_cli_export_tflite(run_cli, tmp_path):
    proc = run_cli("export", "cbhg-lite", "-f", "tflite", "--times", "1,50", "--batches", "1", "-n", "3",
                   "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cbhg-lite.fp32.tflite").is_file()
    report = __import__("json").loads((tmp_path / "report.json").read_text())
    assert any(p["runtime"].startswith("litert") and p["passed"] for p in report["parity"])
    # litert-torch's import (absl / oneDNN banners, torchao load warnings) and the first interpreter ("Created
    # TensorFlow Lite XNNPACK delegate") write to fd 2; none of it reaches the user's stderr (edgeseq/_quiet.py)
    assert proc.stderr.strip() == "", proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("precision, max_ratio", [("fp16", 0.65), ("int8-dynamic", 0.5)])
def test_quantized_cbhg_lite_within_tolerance(precision, max_ratio, tmp_path, lite_tflite):
    """Smaller than the fp32 .tflite by what the precision buys (fp16 0.60x, int8-dynamic 0.43x in
    bench/results/tflite-runtimes.json), and within tolerance while really off fp32."""
    art = edgeseq.export("cbhg-lite", "tflite", out_dir=tmp_path, precision=precision)
    assert art.size_bytes < max_ratio * lite_tflite.size_bytes, (art.size_bytes, lite_tflite.size_bytes)
    result = edgeseq.check(art.path, "cbhg-lite", times=(7, 200, 1000), batches=(1,))
    assert result.precision == precision
    assert result.passed, result.failures
    assert result.worst.rel_l2 > 1e-5  # really reduced precision, not the fp32 graph renamed


def _compute_dtypes(path) -> set:
    """(op, output dtype) of the convs and linears of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    return {(op["op_name"], dtypes[int(op["outputs"][0])]) for op in interp._get_ops_details()
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}


def test_static_int8_within_tolerance_with_the_conv_front_end_in_int8(tmp_path):
    """Static int8 holds the int8-static tolerance on speech and random inputs: the convs compute in int8, the
    linears after the residual add (highway, the GRU's input projection) and the recurrence stay float (the
    all-int8 recipe measured 2.1e-2 / 3.7e-2 here; bench/bench_tflite_int8.py)."""
    art = edgeseq.export("cbhg-lite", "tflite", out_dir=tmp_path, precision="int8-static")
    assert _compute_dtypes(art.path) == {("CONV_2D", "int8"), ("DEPTHWISE_CONV_2D", "int8"),
                                         ("FULLY_CONNECTED", "float32")}
    with edgeseq.load(art.path) as runner:
        assert runner.inputs[0].dtype == "float32"  # float in, float out
    result = edgeseq.check(art.path, "cbhg-lite", times=(7, 200, 1000), batches=(1, 3))
    assert result.passed, result.failures
    assert any("float32: the residual add" in note for note in art.notes)
    # the artifact's census (what the report's "still float" column shows) says the same, WHILE bodies included
    census = art.quantization
    assert census["int8_ops"]["CONV_2D"] and census["int8_ops"]["DEPTHWISE_CONV_2D"]
    assert census["float_ops"]["FULLY_CONNECTED"] and census["float_ops"]["BATCH_MATMUL"]  # highway, recurrence
    assert "CONV_2D" not in census["float_ops"]


@pytest.mark.slow
def test_static_int8_cbhg_within_tolerance(tmp_path):
    art = edgeseq.export("cbhg", "tflite", out_dir=tmp_path, precision="int8-static")
    assert ("CONV_2D", "int8") in _compute_dtypes(art.path)
    result = edgeseq.check(art.path, "cbhg", times=(7, 200, 1000), batches=(1, 3))
    assert result.passed, result.failures


@pytest.mark.slow
def test_cbhg_full_sweep(tmp_path):
    art = edgeseq.export("cbhg", "tflite", out_dir=tmp_path)
    assert edgeseq.check(art.path, "cbhg", times=SWEEP_T, batches=(1, 3)).passed
