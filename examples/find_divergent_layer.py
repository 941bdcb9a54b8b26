"""Which layer broke? An artifact that no longer matches its checkpoint, checked and bisected to the module.

The everyday case: a model is exported for the app, then fine-tuned again; the shipped artifact and the new
checkpoint drift apart. Here the drift is one retrained layer. `edgeseq.check` says the artifact fails parity against
the new checkpoint; `edgeseq.bisect` names the first PyTorch module whose output left tolerance, for ONNX and
TFLite alike.

    python examples/find_divergent_layer.py [--model cbhg-lite] [--format onnx|tflite] [--layer bank.convs.3.conv.1]
"""

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import edgeseq


def fine_tune_one_layer(spec, layer: str, out: Path) -> Path:
    """A checkpoint equal to the shipped weights except for one layer's weight (a stand-in for more training)."""
    module = spec.build()
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    key = f"{layer}.weight"
    if key not in state:
        raise SystemExit(f"{spec.name} has no parameter {key!r}")
    torch.manual_seed(0)
    state[key] += 0.5 * state[key].std() * torch.randn_like(state[key])
    save_file(state, str(out))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cbhg-lite")
    parser.add_argument("--format", default="onnx", choices=["onnx", "tflite"])
    parser.add_argument("--layer", default="bank.convs.3.conv.1",
                        help="the module whose weight changes (cbhg-lite's convs are separable: conv.0 depthwise, "
                             "conv.1 pointwise; cbhg's are plain: bank.convs.3.conv)")
    args = parser.parse_args()

    spec = edgeseq.get_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shipped = edgeseq.export(spec, args.format, out_dir=tmp)  # exported from the original weights
        weights = fine_tune_one_layer(spec, args.layer, tmp / "fine-tuned.safetensors")
        result = edgeseq.check(shipped.path, spec, weights=weights, times=(50,), batches=(1,))
        print(f"{Path(shipped.path).name} against the fine-tuned checkpoint: "
              f"{'PASS' if result.passed else 'FAIL'} (worst rel L2 {result.worst.rel_l2:.2e})")
        if result.passed:
            return 0
        found = edgeseq.bisect(shipped.path, spec, weights=weights, time=37)
        first = found.first_divergent
        print(f"first divergent layer: {first.module} ({first.kind}): rel L2 {first.rel_l2:.3g}")
        print(f"the {found.layers.index(first)} layers before it matched; "
              f"{len(found.skipped)} modules had no tensor of their own in the artifact")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
