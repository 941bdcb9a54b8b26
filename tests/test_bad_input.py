"""The table of bad inputs: every case is one line on stderr, exit 2, no traceback, nothing half-written."""

import pickle

import pytest
from conftest import assert_one_line_error


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/edgeseq-bad-input-pwned",))


def _relu_model() -> bytes:
    import onnx.helper as h

    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 4])],
                         [h.make_tensor_value_info("y", 1, [1, 4])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def make(tmp_path, lite_path):
    """name -> (argv, expected text); files are created in tmp_path."""
    def file(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    truncated = open(lite_path, "rb").read()[:4000]
    mangled = _relu_model().replace(b"Relu", b"Rel\xcc")  # onnxruntime's own error message is then undecodable
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": Payload()}))
    (tmp_path / "adir.onnx").mkdir(exist_ok=True)
    return {
        "garbage onnx": (["check", file("g.onnx", b"\x00garbage"), "--model", "cbhg"], "not an ONNX model"),
        "empty onnx": (["profile", file("e.onnx", b"")], "is empty"),
        "truncated onnx": (["profile", file("t.onnx", truncated)], "cannot load"),
        "onnx with undecodable names": (["profile", file("u.onnx", mangled)], "not text"),
        "tflite not in this build": (["profile", file("m.tflite", b"TFL3garbage")], "tflite"),
        "garbage engine": (["profile", file("m.engine", b"garbage")], "tensorrt"),
        "unknown suffix": (["profile", file("m.bin", b"x")], "cannot tell the format"),
        "directory": (["profile", str(tmp_path / "adir.onnx")], "directory"),
        "missing file": (["check", str(tmp_path / "none.onnx"), "--model", "cbhg"], "does not exist"),
        "wrong --shape name": (["profile", lite_path, "--shape", "x=1x20x128"], "not inputs of this model"),
        "wrong --shape dims": (["profile", lite_path, "--shape", "features=1x20x64"], "does not fit"),
        "bad --shape syntax": (["profile", lite_path, "--shape", "features:1x2"], "bad --shape"),
        "T = 0": (["check", lite_path, "--times", "0"], "--times must"),
        "unknown model": (["export", "wavenet"], "unknown model"),
        "unknown format": (["export", "cbhg", "-f", "coreml"], "unknown format"),
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
        "recipe with iterations = 0": (["export", "--recipe", file("r3.toml", b'name="r"\nmodel="cbhg-lite"\n'
                                                                           b'formats=["onnx"]\n[latency]\n'
                                                                           b'iterations=0\n')], "'iterations' must"),
        "--json under a file": (["check", lite_path, "--json", file("plain.txt", b"x") + "/x.json"],
                                "is a file, not a folder"),
    }


CASES = ["garbage onnx", "empty onnx", "truncated onnx", "onnx with undecodable names", "tflite not in this build", "garbage engine",
         "unknown suffix", "directory", "missing file", "wrong --shape name", "wrong --shape dims",
         "bad --shape syntax", "T = 0", "unknown model", "unknown format", "unknown precision", "garbage checkpoint",
         "garbage safetensors", "pickle with code", "bad device profile", "unknown device", "bad recipe",
         "recipe is not TOML", "recipe with iterations = 0", "--json under a file"]


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
    assert not __import__("os").path.exists("/tmp/edgeseq-bad-input-pwned")
