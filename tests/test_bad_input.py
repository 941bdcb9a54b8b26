"""The table of bad inputs: every case is one line on stderr, exit 2, no traceback, nothing half-written."""

import pickle

import pytest
from conftest import assert_one_line_error


class Payload:
    """Unpickling runs `touch marker`: a loader that executes code leaves the marker behind."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _relu_model() -> bytes:
    import onnx.helper as h

    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 4])],
                         [h.make_tensor_value_info("y", 1, [1, 4])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def _memo_miss() -> bytes:
    """A pickle whose LONG_BINGET asks for memo entry 174812789: the unpickler's KeyError text is that number."""
    return b"\x80\x02j" + (174812789).to_bytes(4, "little") + b"."


def make(tmp_path, lite_path):
    """name -> (argv, expected text); files are created in tmp_path."""
    def file(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    truncated = open(lite_path, "rb").read()[:4000]
    mangled = _relu_model().replace(b"Relu", b"Rel\xcc")  # onnxruntime's own error message is then undecodable
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": Payload(tmp_path / "pwned")}))
    (tmp_path / "adir.onnx").mkdir(exist_ok=True)
    (tmp_path / "cal").mkdir(exist_ok=True)
    (tmp_path / "cal" / "x.npy").write_bytes(b"garbage")
    profile = 'name = "mine"\nruntime = "{}"\ndelegate = "{}"\n{}\n[transport]\nkind = "local"\n'
    return {
        "garbage onnx": (["check", file("g.onnx", b"\x00garbage"), "--model", "cbhg"], "not an ONNX model"),
        "empty onnx": (["profile", file("e.onnx", b"")], "is empty"),
        "truncated onnx": (["profile", file("t.onnx", truncated)], "cannot load"),
        "onnx with undecodable names": (["profile", file("u.onnx", mangled)], "not text"),
        "garbage tflite": (["profile", file("m.tflite", b"TFL3garbage")], "not a TFLite model"),
        "garbage engine": (["profile", file("m.engine", b"garbage")], "tensorrt"),
        "unknown suffix": (["profile", file("m.bin", b"x")], "cannot tell the format"),
        "directory": (["profile", str(tmp_path / "adir.onnx")], "directory"),
        "missing file": (["check", str(tmp_path / "none.onnx"), "--model", "cbhg"], "does not exist"),
        "wrong --shape name": (["profile", lite_path, "--shape", "x=1x20x128"], "not inputs of this model"),
        "wrong --shape dims": (["profile", lite_path, "--shape", "features=1x20x64"], "does not fit"),
        "bad --shape syntax": (["profile", lite_path, "--shape", "features:1x2"], "bad --shape"),
        "T = 0": (["check", lite_path, "--times", "0"], "--times must"),
        "unknown model": (["export", "wavenet"], "unknown model"),
        "unknown format": (["export", "cbhg", "-f", "qnn"], "unknown format"),
        "unknown precision": (["export", "cbhg", "-p", "int4"], "unknown precision"),
        "garbage checkpoint": (["export", "cbhg-lite", "--weights", file("w.pt", b"garbage")], "refused to load"),
        "garbage safetensors": (["export", "cbhg-lite", "--weights", file("w.safetensors", b"\x01\x02")],
                                "not a readable safetensors"),
        "pickle with code": (["export", "cbhg-lite", "--weights", str(evil)], "refused to load"),
        "bad device profile": (["profile", lite_path, "--device", file("d.toml", b"name = 1\n")],
                               "'name' must be str"),
        "unknown device": (["profile", lite_path, "--device", "pixel-99"], "unknown device"),
        "bad recipe": (["export", "--recipe", file("r.toml", b'name="r"\nmodel="cbhg"\nformats=["onnx"]\nout="/x"\n')],
                       "relative folder"),
        "recipe is not TOML": (["export", "--recipe", file("r2.toml", b"[[[")], "not valid TOML"),
        # api-input: sizes, --model, device profiles, preflight, --quant, messages
        "huge --time": (["profile", lite_path, "--time", "100000000"], "47.7 GiB"),
        "huge --shape": (["profile", lite_path, "--shape", "features=1x99999999x128"], "47.7 GiB"),
        "--model contradicts the artifact": (["check", lite_path, "--model", "cbhg", "--times", "7"],
                                             "the artifact is cbhg-lite, but the model given is cbhg"),
        "device runtime cannot run the file": (
            ["check", lite_path, "--device", file("lit.toml", profile.format("litert", "xnnpack", "").encode())],
            "takes .tflite files"),
        "device delegate not used here": (
            ["check", lite_path, "--device", file("ox.toml", profile.format("onnxruntime", "xnnpack", "").encode())],
            "not the xnnpack delegate"),
        "device lacks the precision": (
            ["profile", lite_path, "--device",
             file("p8.toml", profile.format("onnxruntime", "cpu", 'precisions = ["int8-static"]').encode())],
            "the artifact is fp32"),
        "preflight of an empty file": (["preflight", file("p0.onnx", b"")], "no graph"),
        "preflight of stray bytes": (["preflight", file("p2.onnx", b"\x08\x07")], "no graph"),
        "unknown --quant op type": (["export", "cbhg-lite", "-p", "int8-static", "--quant", "op_types=Foo"],
                                    "'Foo' is not an op type"),
        "unknown --quant weight_only": (["export", "cbhg-lite", "-p", "int8-static", "--quant", "weight_only=Foo"],
                                        "'Foo' is not an op type"),
        "empty --quant op_types": (["export", "cbhg-lite", "-p", "int8-static", "--quant", "op_types="],
                                   "op_types=all"),
        "checkpoint with a bare memo key": (["export", "cbhg-lite", "--weights", file("k.pt", _memo_miss())],
                                            "corrupt, truncated or not written by torch.save"),
        "garbage .npy calibration": (["export", "cbhg-lite", "-p", "int8-static", "--calibration",
                                      str(tmp_path / "cal")], "does not start with the .npy header"),
        # recipe-fixes
        "recipe with iterations = 0": (["export", "--recipe", file("r3.toml", b'name="r"\nmodel="cbhg-lite"\n'
                                                                           b'formats=["onnx"]\n[latency]\n'
                                                                           b'iterations=0\n')], "[latency] iterations must be an integer >= 1, got 0"),
        "--json under a file": (["check", lite_path, "--json", file("plain.txt", b"x") + "/x.json"],
                                "is a file, not a folder"),
    }


CASES = ["garbage onnx", "empty onnx", "truncated onnx", "onnx with undecodable names", "garbage tflite", "garbage engine",
         "unknown suffix", "directory", "missing file", "wrong --shape name", "wrong --shape dims",
         "bad --shape syntax", "T = 0", "unknown model", "unknown format", "unknown precision", "garbage checkpoint",
         "garbage safetensors", "pickle with code", "bad device profile", "unknown device", "bad recipe",
         "recipe is not TOML",
         # api-input
         "huge --time", "huge --shape", "--model contradicts the artifact", "device runtime cannot run the file",
         "device delegate not used here", "device lacks the precision", "preflight of an empty file",
         "preflight of stray bytes", "unknown --quant op type", "unknown --quant weight_only", "empty --quant op_types",
         "checkpoint with a bare memo key", "garbage .npy calibration",
         # recipe-fixes
         "recipe with iterations = 0", "--json under a file"]


def test_table_is_complete(tmp_path, lite_onnx):
    assert sorted(make(tmp_path, lite_onnx.path)) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(run_cli, tmp_path, lite_onnx, case):
    argv, expected = make(tmp_path, lite_onnx.path)[case]
    out = tmp_path / "out"
    if argv[0] == "export":
        argv = [*argv, "--out", str(out)]
    line = assert_one_line_error(run_cli(*argv))
    assert expected in line, line
    assert not out.exists()
    if case == "pickle with code":
        assert not (tmp_path / "pwned").exists()
