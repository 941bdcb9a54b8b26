"""A user's own CBHG, written as public TTS projects write it (tests/fixtures/public_cbhg.py), through declaration,
FILE.py:FACTORY loading, ONNX and TFLite export, check (API and CLI, finding the factory from the artifact),
profile and bisection."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edgeseq
from edgeseq.errors import InputError

from conftest import assert_one_line_error

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "public_cbhg.py"
COQUI, CHANNELS_FIRST = f"{FIXTURES}:coqui_style", f"{FIXTURES}:channels_first"
PACKED, TWO_LAYERS = f"{FIXTURES}:packed", f"{FIXTURES}:coqui_style_two_layers"
SWEEP = dict(times=(1, 7, 200, 1000), batches=(1, 3))


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x, lengths):
        y = self.conv(x)
        y += x  # in place, on the conv's own output
        return y.transpose(1, 2) * (lengths[:, None, None] > 0)


# ---- declaring ------------------------------------------------------------------------------------------------------


def test_axes_named_anything_play_batch_and_time_by_position():
    spec = edgeseq.get_model(CHANNELS_FIRST)
    assert spec.inputs[0].shape == ("batch", 32, "time")
    assert spec.outputs[0].shape == ("batch", 32, "time")  # not declared: found by running the module twice
    assert spec.time_sweep == (1, 7, 50, 200, 1000) and spec.batch_sweep == (1, 3)
    assert spec.example_inputs(3, 11)["x"].shape == (3, 32, 11)


@pytest.mark.parametrize("axes, says", [
    ({"features": {0: "B", 1: "T"}}, "neither an input nor an output"),
    ({"x": {0: "B", 5: "T"}}, "names axis 5; 'x' has 3 axes"),
])
def test_bad_dynamic_axes_are_input_errors(axes, says):
    with pytest.raises(InputError, match=says):
        edgeseq.ModelSpec.from_module(Residual(), (torch.randn(2, 4, 9), torch.tensor([9, 4])), ["x", "lengths"],
                                      ["y"], axes)


def test_lengths_are_found_in_the_example_and_generated_valid():
    spec = edgeseq.ModelSpec.from_module(Residual(), (torch.randn(2, 4, 9), torch.tensor([9, 4])), ["x", "lengths"],
                                         ["y"], {"x": {0: "B", 2: "T"}, "lengths": {0: "B"}})
    assert spec.lengths == ("lengths",) and spec.outputs[0].shape == ("batch", "time", 4)
    for seed in range(5):
        lengths = spec.example_inputs(batch=4, time=30, source="random", seed=seed)["lengths"]
        assert lengths[0] == 30 and lengths.min() >= 1 and list(lengths) == sorted(lengths, reverse=True)
        assert lengths.dtype == np.int64


def test_integer_inputs_keep_their_declared_or_example_range():
    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(50, 8)

        def forward(self, tokens):
            return self.table(tokens)

    spec = edgeseq.ModelSpec.from_module(Embed(), torch.tensor([[3, 49, 0, 7]]), ["tokens"], ["e"],
                                         {"tokens": {0: "B", 1: "T"}})
    assert spec.value_ranges == {"tokens": (0, 49)}  # the example's span: the table's rows
    tokens = spec.example_inputs(batch=3, time=500, source="random")["tokens"]
    assert tokens.min() >= 0 and tokens.max() <= 49
    declared = edgeseq.ModelSpec.from_module(Embed(), torch.tensor([[3, 4]]), ["tokens"], ["e"],
                                             {"tokens": {0: "B", 1: "T"}}, value_ranges={"tokens": (10, 12)})
    assert set(np.unique(declared.example_inputs(2, 100, source="random")["tokens"])) <= {10, 11, 12}
    with pytest.raises(InputError, match="'ids' is not an input"):
        edgeseq.ModelSpec.from_module(Embed(), torch.tensor([[3, 4]]), ["tokens"], ["e"], value_ranges={"ids": (0, 1)})


def test_an_output_axis_that_is_neither_batch_nor_time_is_named():
    class Grows(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x[:, :1]], dim=1)  # T + 1 frames

    with pytest.raises(InputError, match=r"output 'y' axis 1 changes with the inputs \(8 -> 13\)"):
        edgeseq.ModelSpec.from_module(Grows(), torch.randn(1, 7, 3), ["x"], ["y"], {"x": {0: "B", 1: "T"}})


# ---- FILE.py:FACTORY ------------------------------------------------------------------------------------------------


def test_factory_files_and_packages_load(tmp_path, monkeypatch):
    spec = edgeseq.get_model(COQUI)
    assert spec.name == "coqui-style-cbhg" and spec.source == COQUI
    assert edgeseq.get_model(COQUI) is spec  # loaded once per process
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(f"import runpy\nbuild = runpy.run_path({str(FIXTURES)!r})['channels_first']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert edgeseq.get_model("mypkg.models:build").name == "channels-first-cbhg"


@pytest.mark.parametrize("ref, says", [
    ("nowhere.py:build", "no file 'nowhere.py'"),
    (f"{FIXTURES}:nothing", "has no 'nothing'"),
    (f"{FIXTURES}:IN_DIM", r"'IN_DIM' is not a function \(int\)"),
    (f"{FIXTURES}:bare_module", "returned a bare nn.Module: return edgeseq.ModelSpec.from_module"),
    ("no_such_package.mod:build", "cannot import 'no_such_package.mod'"),
])
def test_bad_factories_are_one_line_input_errors(ref, says):
    with pytest.raises(InputError, match=says) as info:
        edgeseq.get_model(ref)
    assert "\n" not in str(info.value)


def test_a_factory_that_raises_is_named(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("def build():\n    raise RuntimeError('checkpoint not found')\n")
    with pytest.raises(InputError, match="the factory failed: RuntimeError: checkpoint not found"):
        edgeseq.get_model(f"{f}:build")


# ---- ONNX: export, check, profile, bisect ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("user-onnx")
    return {ref: edgeseq.export(ref, "onnx", out_dir=out) for ref in (COQUI, CHANNELS_FIRST, TWO_LAYERS, PACKED)}


@pytest.mark.parametrize("ref", [COQUI, CHANNELS_FIRST, TWO_LAYERS])
def test_onnx_passes_the_full_sweep_and_finds_its_factory(user_onnx, ref):
    art = user_onnx[ref]
    assert edgeseq.formats.read_metadata(art.path)["edgeseq.source"] == ref
    result = edgeseq.check(art.path, **SWEEP)  # no model given: the artifact names its factory
    assert result.passed and result.worst.rel_l2 < 1e-5, result.failures
    assert len(result.cases) == 8


@pytest.mark.parametrize("ref", [COQUI, CHANNELS_FIRST, TWO_LAYERS, PACKED])
def test_int8_dynamic_onnx_of_user_models(ref, tmp_path):
    art = edgeseq.export(ref, "onnx", out_dir=tmp_path, precision="int8-dynamic")
    result = edgeseq.check(art.path, **SWEEP)
    assert result.passed and result.worst.rel_l2 > 1e-5, result.failures


def test_cli_export_of_a_factory_lands_in_the_models_own_folder(run_cli, tmp_path):
    proc = run_cli("export", CHANNELS_FIRST, "--times", "7", "--batches", "1", "-n", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "edgeseq-out" / "channels-first-cbhg" / "channels-first-cbhg.fp32.onnx").is_file()


@pytest.mark.parametrize("ref", [COQUI, CHANNELS_FIRST, TWO_LAYERS, PACKED])
def test_cli_check_and_profile_of_a_user_artifact(run_cli, user_onnx, ref):
    path, name = user_onnx[ref].path, edgeseq.get_model(ref).name
    proc = run_cli("check", path, "--times", "1,200", "--batches", "1,3")
    assert proc.returncode == 0 and f"PASS {name}" in proc.stdout, proc.stderr
    proc = run_cli("check", path, "--model", ref, "--times", "7", "--batches", "1")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("profile", path, "-n", "3")
    assert proc.returncode == 0 and "p50" in proc.stdout, proc.stderr
    assert "RTF" not in proc.stdout  # the model declares no frame rate: no real-time factor is claimed


def test_an_artifact_whose_factory_is_gone_says_what_to_give(run_cli, user_onnx, tmp_path):
    moved = tmp_path / "moved.onnx"
    model = onnx.load(user_onnx[COQUI].path)
    for p in model.metadata_props:
        if p.key == "edgeseq.source":
            p.value = str(tmp_path / "gone.py:coqui_style")
    onnx.save(model, moved)
    line = assert_one_line_error(run_cli("check", str(moved)))
    assert "--model FILE.py:FACTORY" in line and "coqui-style-cbhg" in line


@pytest.mark.parametrize("ref, weight, module", [
    (COQUI, "conv1d_banks.2.conv1d.weight", "conv1d_banks.2"), (CHANNELS_FIRST, "bank.2.weight", "bank.2"),
    (TWO_LAYERS, "conv1d_banks.2.conv1d.weight", "conv1d_banks.2"), (PACKED, "bank.2.conv1d.weight", "bank.2"),
])
def test_bisection_blames_nothing_unchanged_and_names_a_corrupted_conv(user_onnx, ref, weight, module, tmp_path):
    """Each public idiom: in-place `x += inputs`, channels-first input, a 2-layer BiGRU, packed sequences."""
    art = user_onnx[ref]
    assert edgeseq.bisect(art.path, ref, time=50).first_divergent is None
    model = onnx.load(art.path)
    init = next(i for i in model.graph.initializer if i.name == weight)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    first = edgeseq.bisect(str(bad), ref, time=50).first_divergent
    assert first is not None and first.module.startswith(module), first


def test_recorded_module_outputs_are_copies_not_views():
    """An in-place op after a module (x += r) must not rewrite what was recorded for it."""
    from edgeseq.bisection import torch_module_outputs

    module = Residual().eval()
    x = np.random.default_rng(0).standard_normal((1, 4, 6)).astype(np.float32)
    outputs, _ = torch_module_outputs(module, {"x": x, "lengths": np.array([6])}, ["x", "lengths"])
    with torch.inference_mode():
        want = module.conv(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outputs["conv"], want, rtol=0, atol=0)


# ---- TFLite ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_tflite(tmp_path_factory):
    """fp32 TFLite of each fixture, converted once (20-60 s each here) and shared by conversion and bisection."""
    pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    out, made = tmp_path_factory.mktemp("user-tflite"), {}

    def get(ref):
        if ref not in made:
            made[ref] = edgeseq.export(ref, "tflite", out_dir=out)
        return made[ref]
    return get


@pytest.mark.parametrize("ref, precision", [
    (COQUI, "fp32"), pytest.param(COQUI, "int8-dynamic", marks=pytest.mark.slow), (CHANNELS_FIRST, "fp32"),
    pytest.param(CHANNELS_FIRST, "int8-dynamic", marks=pytest.mark.slow),  # the default run quantizes the two below
    (TWO_LAYERS, "fp32"), (TWO_LAYERS, "int8-dynamic"), (PACKED, "int8-dynamic"),
])
def test_tflite_converts_public_cbhg_idioms(ref, precision, tmp_path, request):
    """flatten_parameters() in forward, MaxPool1d(2, stride=1, padding=1) + crop, even kernels cropped, BN after
    ReLU, in-place residuals, a chained bank, channels-first input, a time-major 2-layer BiGRU."""
    pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    if precision == "fp32":
        art = request.getfixturevalue("user_tflite")(ref)
    else:
        art = edgeseq.export(ref, "tflite", out_dir=tmp_path, precision=precision)
    result = edgeseq.check(art.path, **SWEEP)
    assert result.passed, result.failures
    assert (result.worst.rel_l2 < 1e-5) is (precision == "fp32")


def _scale_tflite_conv(path, weight, out):
    """Scale one conv's weights inside a .tflite file: the torch weight [O, I, K] sits there as [O, 1, K, I]."""
    data = bytearray(Path(path).read_bytes())
    stored = np.ascontiguousarray(weight.transpose(0, 2, 1)[:, None]).astype(np.float32)
    at = data.find(stored.tobytes())
    assert at >= 0 and data.find(stored.tobytes(), at + 1) < 0, "the conv's weights are not stored once as-is"
    data[at: at + stored.nbytes] = (stored * 1.5).tobytes()
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("ref, weight, module", [
    (COQUI, "conv1d_banks.2.conv1d.weight", "conv1d_banks.2"), (CHANNELS_FIRST, "bank.2.weight", "bank.2"),
    (TWO_LAYERS, "conv1d_banks.2.conv1d.weight", "conv1d_banks.2"), (PACKED, "bank.2.conv1d.weight", "bank.2"),
])
def test_tflite_bisection_on_a_foreign_module_tree(user_tflite, ref, weight, module, tmp_path):
    """Unchanged: nothing blamed (modules whose tensors cannot be told apart by name are listed as skipped, not
    compared); a bank conv scaled in the file: that conv is named."""
    art = user_tflite(ref)
    clean = edgeseq.bisect(art.path, ref, time=37)
    assert clean.first_divergent is None and len(clean.layers) > 3, clean
    if ref == COQUI:
        assert "conv1d_projections.0" in clean.skipped  # same name chain as conv1d_banks.0: never guessed
    assert module not in clean.skipped
    state = edgeseq.get_model(ref).build().state_dict()
    bad = _scale_tflite_conv(art.path, state[weight].numpy(), tmp_path / "bad.tflite")
    first = edgeseq.bisect(str(bad), ref, time=37).first_divergent
    assert first is not None and first.module.startswith(module), first


def test_sliding_max_pool_equals_max_pool1d():
    from edgeseq.formats.tflite.rewrites import SlidingMaxPool

    x = torch.randn(2, 3, 17)
    for k, p in ((2, 1), (3, 1), (4, 2), (5, 0), (1, 0)):
        pool = torch.nn.MaxPool1d(k, stride=1, padding=p)
        torch.testing.assert_close(SlidingMaxPool(pool)(x), pool(x), rtol=0, atol=0)


def test_a_specialized_axis_names_the_users_own_line(tmp_path, run_cli):
    """torch.export's own message names no source line: the error names the axis, the guard and the file:line."""
    pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    model = tmp_path / "branchy.py"
    model.write_text(
        "import torch\nimport edgeseq\n\n\n"
        "class Branchy(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        if x.shape[1] > 10:\n"
        "            x = x * 2\n"
        "        return x + 1\n\n\n"
        "def build():\n"
        "    return edgeseq.ModelSpec.from_module(Branchy(), torch.randn(1, 20, 4), ['x'], ['y'],\n"
        "                                         {'x': {0: 'B', 1: 'T'}}, name='branchy')\n")
    line = assert_one_line_error(run_cli("export", f"{model}:build", "-f", "tflite", "--out", str(tmp_path / "o")))
    assert f"the time axis was fixed by the guard `time > 10` at {model}:7 (`if x.shape[1] > 10:`)" in line
    assert not (tmp_path / "o").exists()


# ---- packed sequences: (xs, ilens) -> (ys, olens) --------------------------------------------------------------------


def _ragged_batch_matches_pytorch(path):
    """A ragged batch in no particular order, with a row of length 1: every row as PyTorch computes it (the model
    sorts by length and back), padding zero, lengths back."""
    spec = edgeseq.get_model(PACKED)
    feed = spec.example_inputs(batch=3, time=40, source="random", seed=5)
    feed["ilens"] = np.array([23, 1, 40], np.int64)
    with edgeseq.load(path) as runner:
        got = runner.infer(feed)
    with torch.inference_mode():
        want = spec.build()(*(torch.from_numpy(feed[n]) for n in spec.input_names))
    np.testing.assert_allclose(got["ys"], want[0].numpy(), rtol=0, atol=2e-6)
    for b, n in enumerate(feed["ilens"]):
        assert not got["ys"][b, n:].any()  # padding stays zero, as pad_packed_sequence gives
    np.testing.assert_array_equal(got["olens"], feed["ilens"])


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_packed_sequences_with_lengths(fmt, request):
    """ESPnet's signature: pack_padded_sequence around a BiGRU. ONNX keeps the GRU's sequence_lens; TFLite runs an
    exact masked recurrence whose backward direction starts at each row's true end."""
    if fmt == "tflite":
        pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    spec = edgeseq.get_model(PACKED)
    assert spec.lengths == ("ilens",) and [t.shape for t in spec.outputs] == [("batch", "time", 32), ("batch",)]
    art = request.getfixturevalue("user_tflite")(PACKED) if fmt == "tflite" else request.getfixturevalue(
        "user_onnx")[PACKED]
    result = edgeseq.check(art.path, **SWEEP)
    assert result.passed and result.worst.rel_l2 < 1e-5, result.failures
    _ragged_batch_matches_pytorch(art.path)


def test_masked_loop_gru_equals_packed_nn_gru():
    """Any layers, directions and layout, lengths down to 1: outputs and final states as over a PackedSequence."""
    from torch.nn.utils import rnn

    from edgeseq.formats.tflite.rewrites import LoopGRU, masked_packing

    lengths = torch.tensor([9, 4, 1])
    for layers, bidirectional, batch_first in ((1, True, True), (2, True, False), (2, False, True)):
        gru = torch.nn.GRU(5, 4, layers, bidirectional=bidirectional, batch_first=batch_first).eval()
        x = torch.randn((3, 9, 5) if batch_first else (9, 3, 5))
        loop = LoopGRU(gru)
        with torch.inference_mode():
            want, want_h = gru(rnn.pack_padded_sequence(x, lengths, batch_first=batch_first))
            want, _ = rnn.pad_packed_sequence(want, batch_first=batch_first, padding_value=-1.0)
            with masked_packing(loop):
                got, got_h = loop(rnn.pack_padded_sequence(x, lengths, batch_first=batch_first))
                got, _ = rnn.pad_packed_sequence(got, batch_first=batch_first, padding_value=-1.0)
            assert rnn.pack_padded_sequence is not None and not isinstance(
                rnn.pack_padded_sequence(x, lengths, batch_first=batch_first), type(got))  # restored afterwards
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got_h, want_h, rtol=0, atol=1e-6)


def test_two_models_of_one_class_name_never_overwrite_each_other(tmp_path, user_onnx):
    import shutil

    theirs = tmp_path / "coqui-style-cbhg.fp32.onnx"
    shutil.copy(user_onnx[COQUI].path, theirs)
    model = onnx.load(theirs)
    for p in model.metadata_props:
        if p.key == "edgeseq.source":
            p.value = "/elsewhere/other.py:build"
    onnx.save(model, theirs)
    before = theirs.read_bytes()
    with pytest.raises(InputError, match="holds model 'coqui-style-cbhg' from /elsewhere/other.py:build"):
        edgeseq.export(COQUI, "onnx", out_dir=tmp_path)
    with pytest.raises(InputError, match="export into another folder"):
        edgeseq.run_matrix(COQUI, out_dir=tmp_path)
    assert theirs.read_bytes() == before
    again = edgeseq.export(COQUI, "onnx", out_dir=tmp_path / "mine")  # its own earlier export is replaced as ever
    assert edgeseq.export(COQUI, "onnx", out_dir=tmp_path / "mine").sha256 == again.sha256


def test_stage_profile_of_a_user_model_attributes_module_lists(user_onnx):
    """A bank kept in an nn.ModuleList (never called itself) still gets its time, eager and in ONNX Runtime."""
    from edgeseq.stage_profile import profile_stages

    result = profile_stages(user_onnx[COQUI].path, iterations=3, warmup=1)
    rows = {r.stage: r for r in result.rows}
    for stage in ("conv1d_banks", "conv1d_projections", "highways", "gru"):
        assert rows[stage].flops_share_pct > 0 and rows[stage].onnxruntime_ms > 0 and rows[stage].eager_ms > 0, stage
