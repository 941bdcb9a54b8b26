"""Embed an exported model in a small app pipeline: audio -> log-mel features -> ONNX encoder -> frame labels.

Only the artifact and numpy are needed at run time; the runner is created once and reused for every utterance.

    python examples/embed_in_app.py [--artifact path/to/cbhg-lite.fp32.onnx]
"""

import argparse
import tempfile

import numpy as np

import edgeseq
from edgeseq.models.features import fixture_names, load_waveform, log_mel


class SpeechEncoderPipeline:
    """What an app would hold: one loaded runner, a feature front end, and a toy read-out on top."""

    def __init__(self, artifact_path: str, threads: int = 1):
        self.runner = edgeseq.load(artifact_path, threads=threads).load()
        self.n_mels = self.runner.inputs[0].shape[-1]
        self.readout = np.random.default_rng(0).standard_normal((self.runner_output_dim(), 4)).astype(np.float32)

    def runner_output_dim(self) -> int:
        probe = self.runner.infer({self.runner.inputs[0].name: np.zeros((1, 1, self.n_mels), np.float32)})
        return next(iter(probe.values())).shape[-1]

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        features = log_mel(wave, self.n_mels)[None]  # [1, frames, n_mels]
        encoded = next(iter(self.runner.infer({self.runner.inputs[0].name: features}).values()))
        return (encoded[0] @ self.readout).argmax(-1)  # one label per 12.5 ms frame

    def close(self) -> None:
        self.runner.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", help="an exported .onnx; default: export cbhg-lite to a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeseq-example-") as scratch:  # removed when the example ends
        path = args.artifact or edgeseq.export("cbhg-lite", "onnx", out_dir=scratch).path
        pipeline = SpeechEncoderPipeline(path)
        try:
            for name in fixture_names():
                labels = pipeline(load_waveform(name))
                print(f"{name}: {len(labels)} frames, labels {np.bincount(labels, minlength=4).tolist()}")
        finally:
            pipeline.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
