"""Bring your own model: a CBHG of your own, from its factory file, through export, check and a recipe.

    python examples/bring_your_own_model.py [--out edgeseq-out/byo]

The same from the shell:
    edgeseq export examples/models/my_cbhg.py:build -f onnx
    edgeseq check edgeseq-out/my-cbhg/my-cbhg.fp32.onnx        # the artifact names its factory
"""

import argparse
from pathlib import Path

import edgeseq

FACTORY = str(Path(__file__).resolve().parent / "models" / "my_cbhg.py") + ":build"
RECIPE = """\
name = "my-cbhg-server"
model = "{factory}"
formats = ["onnx"]
precisions = ["fp32", "int8-dynamic"]
devices = ["local-cpu"]

[parity]
times = [1, 50, 1000]
batches = [1, 3]

[latency]
time = 200
iterations = 10
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="edgeseq-out/byo")
    args = parser.parse_args()
    out = Path(args.out)

    spec = edgeseq.get_model(FACTORY)
    print(f"{spec.name}: inputs {[(t.name, t.shape) for t in spec.inputs]}, "
          f"outputs {[(t.name, t.shape) for t in spec.outputs]}")

    artifact = edgeseq.export(FACTORY, "onnx", out_dir=out / "single")
    parity = edgeseq.check(artifact.path)  # no model given: the artifact records its factory
    print(f"check {'PASS' if parity.passed else 'FAIL'}: {len(parity.cases)} cases "
          f"(T = {sorted({c.time for c in parity.cases})}), worst rel L2 {parity.worst.rel_l2:.2e}")

    recipe_path = out / "my-cbhg.toml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(RECIPE.format(factory=FACTORY))
    manifest = edgeseq.run_recipe(edgeseq.load_recipe(recipe_path), out / "builds")
    for a in manifest["artifacts"]:
        print(f"recipe: {a['file']} parity {'PASS' if a['parity_passed'] else 'FAIL'}")
    return 0 if parity.passed and manifest["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
