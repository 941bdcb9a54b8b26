"""A test double of coremltools' prediction on a Mac, for the Core ML-over-ssh path on Linux: run as the device's
python, it starts edgeseq's device agent with coremltools' `MLModel` swapped for a stand-in and `sys.platform` set to
"darwin". The stand-in reads the real .mlpackage spec (coremltools' proto works on Linux) and answers predict() with
the PyTorch original named in the package's edgeseq metadata (fp16 packages answer in fp16, as Core ML can).

It checks the protocol (the zipped package unpacked once in the cache, describe, feeds in, outputs back, the compute
unit asked for), not Core ML's numerics: those are the macOS tests in tests/test_coreml.py.

    python fake_coremltools.py AGENT.py VERB ARGS...
"""

import runpy
import sys

import coremltools
import numpy as np


class FakeMLModel:
    def __init__(self, path, compute_units=None):
        from coremltools.models.utils import load_spec

        self._spec = load_spec(path)
        self.compute_units = compute_units
        meta = dict(self._spec.description.metadata.userDefined)
        self._model, self._fp16 = meta["edgeseq.model"], meta.get("edgeseq.precision") == "fp16"
        if compute_units not in (coremltools.ComputeUnit.CPU_ONLY, coremltools.ComputeUnit.CPU_AND_NE):
            raise RuntimeError(f"unexpected compute units {compute_units}")

    def get_spec(self):
        return self._spec

    def predict(self, feed):
        import torch

        import edgeseq

        spec = edgeseq.get_model(self._model)
        with torch.no_grad():
            outs = spec.build()(*(torch.from_numpy(feed[n]) for n in spec.input_names))
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {name: o.numpy().astype(np.float16 if self._fp16 else np.float32)
                for name, o in zip(spec.output_names, outs)}


coremltools.models.MLModel = FakeMLModel
sys.platform = "darwin"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
