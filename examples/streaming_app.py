"""Stream speech through an encoder the way a phone app does: 12.5 ms frames arrive, every N frames go to the model
with the state it returned last time, and the outputs are used as they come. At the end, the streamed outputs are
compared with one call over the whole utterance: with a causal model and the state carried, they are the same.

Only onnxruntime and numpy are used at run time; the app owns the state (ONNX Runtime keeps none between calls).

    python examples/streaming_app.py [--artifact cbhg-lite-stream.fp32.onnx] [--chunk 8]
"""

import argparse
import tempfile

import numpy as np
import onnxruntime as ort

import edgeseq
from edgeseq.models.features import fixture_names, load_waveform, log_mel


class StreamingEncoder:
    """Holds one session and the state between calls; push(frames) returns those frames' encodings at once."""

    def __init__(self, path: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.state_inputs = [i for i in self.session.get_inputs() if i.name != "features"]
        self.reset()

    def reset(self) -> None:
        """A new utterance: every state input back to zeros (batch 1)."""
        self.state = {i.name: np.zeros([1, *i.shape[1:]], np.float32) for i in self.state_inputs}

    def push(self, frames: np.ndarray) -> np.ndarray:
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, {"features": frames[None], **self.state})))
        self.state = {name: outputs[name + "_next"] for name in self.state}
        return outputs["encoded"][0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", help="an exported streaming .onnx; default: export cbhg-lite-stream")
    parser.add_argument("--chunk", type=int, default=8, help="frames per call (8 frames = 100 ms)")
    args = parser.parse_args()
    if args.chunk < 1:
        parser.error("--chunk must be at least 1")
    with tempfile.TemporaryDirectory(prefix="edgeseq-example-") as scratch:
        path = args.artifact or edgeseq.export("cbhg-lite-stream", "onnx", out_dir=scratch).path
        encoder = StreamingEncoder(path)
        n_mels = encoder.session.get_inputs()[0].shape[-1]
        worst = 0.0
        for name in fixture_names():
            features = log_mel(load_waveform(name), n_mels)  # [frames, n_mels]: what the microphone gave
            encoder.reset()
            streamed = np.concatenate([encoder.push(features[t:t + args.chunk])
                                       for t in range(0, len(features), args.chunk)])
            encoder.reset()
            whole = encoder.push(features)  # the same utterance in one call, from the zero state
            rel = float(np.linalg.norm(streamed - whole) / np.linalg.norm(whole))
            worst = max(worst, rel)
            print(f"{name}: {len(features)} frames in {-(-len(features) // args.chunk)} calls of {args.chunk}, "
                  f"streamed vs whole rel L2 {rel:.1e}")
        print(f"streaming {'matches' if worst < 1e-5 else 'DIFFERS FROM'} the whole-utterance run (worst {worst:.1e})")
        return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
