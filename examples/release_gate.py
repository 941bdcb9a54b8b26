"""Gate an app release on the last release's report: did this change make any artifact worse?

The everyday case: the last release's report.json is kept with the app; a later change (here: int8-static
quantization extended from the convs to the MatMuls as well, to save size) rebuilds the artifacts, and
`edgeseq.diff_reports` compares the two reports row by row. The int8 row that passed now fails: the gate names it,
and the candidate's own report already names the first layer that diverged (the matrix bisects its failures). The
CLI does the same with `edgeseq diff last/ new/`, and a recipe with a [baseline] table fails its build on it.

    python examples/release_gate.py [--out DIR] [--max-error-growth 2]
"""

import argparse
import tempfile
from pathlib import Path

import edgeseq
from edgeseq.report import render_diff


def build(out: Path, quant: tuple[str, ...] = ()) -> dict:
    options = edgeseq.MatrixOptions(times=(7, 50), batches=(1,), iterations=5, warmup=1, quant=quant)
    edgeseq.run_matrix("cbhg-lite", ["onnx"], ["fp32", "int8-static"], out_dir=out, options=options)
    return edgeseq.load_report(out / "report.json")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="folder for both builds (default: a temporary one)")
    parser.add_argument("--max-error-growth", type=float, default=2.0)
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp())

    last = build(root / "last-release")  # what the app shipped: kept with it
    candidate = build(root / "candidate", quant=("op_types=Conv,MatMul",))  # the change under review
    diff = edgeseq.diff_reports(last, candidate, max_error_growth=args.max_error_growth,
                                old_label="last-release", new_label="candidate")
    header, *rows = render_diff(diff.to_dict())
    for row in rows:
        print(f"{row[0]:9s} {row[1]} {row[2]:12s} {row[3]:16s} rel L2 {row[6]}  {row[10]}")
    regressed = [r for r in diff.rows if r.status == "regressed"]
    if regressed:
        print(f"the gate fails this build: {len(regressed)} row(s) regressed against the last release")
        from edgeseq.report import bisection_lines

        for line in bisection_lines(candidate):
            print(f"  {line.replace('`', '')}")
    else:
        print("the gate passes this build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
