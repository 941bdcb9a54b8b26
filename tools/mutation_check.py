#!/usr/bin/env python3
"""Mutation check: do the tests fail when the product is wrong?

Each mutant is one small, realistic bug (a gate loosened, a setting dropped, a branch skipped), located by a source
snippet that must occur exactly once, never by line number, so the list survives code moving. For each mutant the
working tree is copied to a temporary folder, the snippet is replaced there, the tests named for that mutant run
(pytest -x -q, with a timeout) against the copy, and the verdict is:

  caught     the tests failed (pytest exit 1)
  survived   the tests passed: no test notices this bug
  stale      the snippet is not in the source exactly once (the code moved on: update the mutant)
  error      pytest could not run the tests (exit 2-5: a missing test id, a collection error) or timed out

Before the mutants, the union of their tests runs once on the unmutated copy: a test that already fails would
"catch" every mutant. Exit 0 only when every mutant is caught.

    python tools/mutation_check.py              # every mutant (several minutes)
    python tools/mutation_check.py --list       # names, files and tests
    python tools/mutation_check.py --only parity-rel-l2-10x --only latency-warmup-timed

docs/mutation.md describes the list and how to add a mutant; tests/test_mutation_check.py keeps every snippet
unique in the current source (it does not run the mutants).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    find: str  # occurs exactly once in `file`
    replace: str
    tests: tuple[str, ...]  # pytest node ids (file::test) or files, relative to the root
    bug: str  # what a user would see


def _t(path: str, *names: str) -> tuple[str, ...]:
    return tuple(f"tests/{path}::{n}" for n in names) if names else (f"tests/{path}",)


MUTANTS: tuple[Mutant, ...] = (
    # ---- parity ----------------------------------------------------------------------------------------------------
    Mutant("parity-rel-l2-10x", "edgeseq/parity.py",
           "    if not rel_l2 <= tol.rel_l2:\n", "    if not rel_l2 <= 10 * tol.rel_l2:\n",
           _t("test_parity.py", "test_rel_l2_gate_sits_exactly_at_the_tolerance"),
           "the relative L2 gate loosened 10x passes errors up to 10x the tolerance"),
    Mutant("parity-nan-passes", "edgeseq/parity.py",
           "    if not rel_l2 <= tol.rel_l2:\n", "    if rel_l2 > tol.rel_l2:\n",
           _t("test_parity.py", "test_a_non_finite_reference_fails_never_passes"),
           "a reference holding inf gives a NaN error, and NaN > tol is false: it passes"),
    Mutant("parity-max-abs-2x", "edgeseq/parity.py",
           "not max_abs <= tol.max_abs:", "not max_abs <= 2 * tol.max_abs:",
           _t("test_parity.py", "test_max_abs_gate_sits_exactly_at_the_tolerance"),
           "the max-abs gate loosened 2x"),
    Mutant("parity-cosine-loosened", "edgeseq/parity.py",
           "not cosine >= tol.min_cosine:", "not cosine >= tol.min_cosine - 1e-3:",
           _t("test_parity.py", "test_cosine_gate_sits_exactly_at_the_tolerance"),
           "the cosine gate loosened by 1e-3"),
    Mutant("parity-candidate-nan-unchecked", "edgeseq/parity.py",
           "    if not np.isfinite(actual).all():\n", "    if False:\n",
           _t("test_parity.py", "test_non_finite_outputs_fail_never_pass"),
           "NaN / Inf in a runtime's output is not named as such"),
    Mutant("parity-shape-by-size", "edgeseq/parity.py",
           "    if reference.shape != actual.shape:\n", "    if reference.size != actual.size:\n",
           _t("test_parity.py", "test_shape_mismatch_fails"),
           "a transposed output of the same size is compared instead of failing on its shape"),
    Mutant("parity-missing-output-skipped", "edgeseq/parity.py",
           '                    outs.append(OutputError(name, nan, nan, nan, nan, tol, False, "output missing"))\n',
           "                    continue\n",
           _t("test_parity.py", "test_an_output_missing_from_the_candidate_fails"),
           "an output the candidate does not produce is skipped, not failed"),
    Mutant("parity-runner-error-passes", "edgeseq/parity.py",
           "        return not self.error and all(o.passed for o in self.outputs)\n",
           "        return all(o.passed for o in self.outputs)\n",
           _t("test_parity.py", "test_a_candidate_that_refuses_a_case_fails_it"),
           "a case the runtime refused has no outputs, so all() of nothing passes it"),
    Mutant("parity-empty-sweep-passes", "edgeseq/parity.py",
           "        return bool(self.cases) and all(c.passed for c in self.cases)\n",
           "        return all(c.passed for c in self.cases)\n",
           _t("test_parity.py", "test_a_sweep_without_cases_is_not_a_pass"),
           "a sweep that ran no case passes"),
    # ---- ONNX export and quantization ---------------------------------------------------------------------------
    Mutant("onnx-declared-axes-unchecked", "edgeseq/formats/onnx/convert.py",
           "        _check_axes_symbolic(model, spec)\n        onnx.checker", "        onnx.checker",
           _t("test_onnx_export.py", "test_every_exporter_ships_symbolic_axes_or_refuses"),
           "the dynamo exporter ships cbhg-lite with its output declared [batch, 37, 128]"),
    Mutant("onnx-export-chatter", "edgeseq/formats/onnx/convert.py",
           "redirect_stdout(io.StringIO()), library_stderr_quiet():", "redirect_stdout(io.StringIO()):",
           _t("test_cli.py", "test_dynamo_export_keeps_the_one_line_promise"),
           "`edgeseq export --exporter dynamo` prints onnxscript's traceback before its one-line error"),
    Mutant("int8-static-per-channel-dropped", "edgeseq/formats/onnx/derive.py",
           "per_channel=config.per_channel, reduce_range=config.reduce_range,",
           "per_channel=False, reduce_range=config.reduce_range,",
           _t("test_quantize.py", "test_static_quant_settings_reach_the_artifacts_tensors"),
           "int8-static gets one scale per tensor while its metadata says per-channel"),
    Mutant("int8-static-activation-type-dropped", "edgeseq/formats/onnx/derive.py",
           "activation_type=qtype[config.activation_type],", "activation_type=QuantType.QUInt8,",
           _t("test_quantize.py", "test_static_quant_settings_reach_the_artifacts_tensors"),
           "activation_type=int8 (what TensorRT reads) silently gives uint8 activations"),
    Mutant("int8-dynamic-weight-type-dropped", "edgeseq/formats/onnx/derive.py",
           "reduce_range=config.reduce_range, weight_type=qtype[config.weight_type],\n",
           "reduce_range=config.reduce_range, weight_type=QuantType.QUInt8,\n",
           _t("test_quantize.py", "test_dynamic_weight_type_reaches_the_artifacts_tensors"),
           "int8-dynamic ignores weight_type"),
    Mutant("calibration-data-ignored", "edgeseq/quantize.py",
           '            raise InputError("calibration_data is empty")\n        return feeds\n',
           '            raise InputError("calibration_data is empty")\n',
           _t("test_quantize.py", "test_user_calibration_data_sets_the_activation_ranges"),
           "the user's calibration_data is checked, then the model's own data calibrates"),
    Mutant("ort-converts-the-fp32-onnx", "edgeseq/formats/ort/convert.py",
           "export(spec, source, precision=precision,", "export(spec, source, precision=Precision.FP32,",
           _t("test_ort.py", "test_the_ort_computes_exactly_what_its_onnx_computes_at_any_batch_and_t"),
           "an int8 .ort holds the fp32 model: larger and slower than its int8 .onnx, while its parity still passes"),
    Mutant("coreml-fp16-computes-fp32", "edgeseq/formats/coreml/convert.py",
           "return ct.precision.FLOAT16 if precision is Precision.FP16 else ct.precision.FLOAT32",
           "return ct.precision.FLOAT32",
           _t("test_coreml.py", "test_both_precisions_are_mlprograms_whose_grus_became_while_loops"),
           "an fp16 .mlpackage computes in fp32: twice the size, and not what the Neural Engine runs"),
    Mutant("coreml-time-unbounded", "edgeseq/formats/coreml/convert.py",
           "upper_bound=bounds[d], default=default)", "upper_bound=-1, default=default)",
           _t("test_coreml.py", "test_both_precisions_are_mlprograms_whose_grus_became_while_loops"),
           "the package claims every T and batch: a longer input than the export serves reaches Core ML unchecked"),
    Mutant("executorch-int8-static-every-op", "edgeseq/formats/executorch/precision.py",
           "    quantizer.set_filter_function(is_conv)\n", "",
           _t("test_executorch.py", "test_below_fp32_one_artifact_passes_the_sweep_and_says_what_stayed_float"),
           "an int8-static .pte quantizes the highway and GRU input linears too: 2.4e-2 on cbhg-lite, over its gate"),
    Mutant("executorch-int8-static-uncalibrated", "edgeseq/formats/executorch/precision.py",
           "            for row in plan.rows(feed):\n                plan.run_row(row)\n",
           "            break\n",
           _t("test_executorch.py", "test_below_fp32_one_artifact_passes_the_sweep_and_says_what_stayed_float"),
           "an int8-static .pte is exported with ranges nobody measured"),
    Mutant("executorch-tail-rest-dropped", "edgeseq/formats/executorch/plan_exec.py",
           "sizes += [tail] * -(-rest // tail) if tail else [k]", "sizes += [tail] * (rest // tail) if tail else [k]",
           _t("test_executorch.py", "test_one_artifact_is_exact_from_t1_to_its_max_time_and_at_every_chunk_boundary"),
           "the last steps under one tail chunk are never run: their outputs are whatever the buffer held"),
    Mutant("executorch-state-not-carried", "edgeseq/formats/executorch/plan_exec.py",
           "        h = _tensor(h_out.numpy().copy())\n", "        _tensor(h_out.numpy().copy())\n",
           _t("test_executorch.py", "test_one_artifact_is_exact_from_t1_to_its_max_time_and_at_every_chunk_boundary"),
           "every chunk of the recurrence starts from the initial state: exact up to T = K, wrong past it"),
    Mutant("executorch-convs-im2col-always", "edgeseq/formats/executorch/options.py",
           '("im2col" if precision is Precision.INT8_DYNAMIC else "direct")', '"im2col"',
           _t("test_executorch.py", "test_the_conv_form_is_direct_but_for_int8_dynamic_and_a_wrong_one_is_one_line"),
           "cbhg's fp32 .pte copies its input k times per conv: 1.4x slower end to end where XNNPACK's conv is fast"),
    Mutant("agent-executorch-batch-row-dropped", "edgeseq/formats/executorch/plan_exec.py",
           "for b in range(count)]", "for b in range(min(count, 1))]",
           _t("test_executorch.py", "test_a_board_runs_the_pte_through_the_device_agent"),
           "a board running a .pte answers a batch with its first row only"),
    # ---- latency ---------------------------------------------------------------------------------------------------
    Mutant("latency-warmup-timed", "edgeseq/latency.py",
           "    for _ in range(warmup):\n        call()\n    samples: list[float] = []\n",
           "    samples: list[float] = []\n    for _ in range(warmup):\n        t0 = time.perf_counter()\n"
           "        call()\n        samples.append((time.perf_counter() - t0) * 1e3)\n    iterations += warmup\n",
           _t("test_latency.py", "test_warm_up_runs_are_neither_timed_nor_kept"),
           "cold first calls are timed and kept: p90 2.1 -> 50.3 ms with 3 cold calls"),
    Mutant("latency-p90-is-p50", "edgeseq/latency.py",
           "p90_ms=float(np.percentile(ms, 90))", "p90_ms=float(np.percentile(ms, 50))",
           _t("test_latency.py", "test_percentiles_are_the_ones_they_are_named_after"),
           "p90 reports the median"),
    Mutant("latency-budget-ignored", "edgeseq/latency.py",
           "        if deadline is not None and time.perf_counter() > deadline:\n            break\n    return samples\n",
           "    return samples\n",
           _t("test_latency.py", "test_time_budget_stops_early"),
           "budget_s is ignored: timing runs every iteration"),
    # ---- recipes, report diffs, devices, CLI -----------------------------------------------------------------------
    Mutant("recipe-budget-on-p50", "edgeseq/recipe.py",
           "_verdict(budget, runtime, match[0][budget.metric])", '_verdict(budget, runtime, match[0]["p50_ms"])',
           _t("test_recipe.py", "test_each_budget_is_judged_on_its_own_metric"),
           "a 10 ms p90 budget passes with p90 at 40 ms (judged on p50)"),
    Mutant("recipe-limit-exclusive", "edgeseq/recipe.py",
           "    ok = value <= budget.limit_ms\n", "    ok = value < budget.limit_ms\n",
           _t("test_recipe.py", "test_each_budget_is_judged_on_its_own_metric"),
           "a row exactly at its budget fails"),
    Mutant("diff-threads-ignored", "edgeseq/report/diff.py",
           'env.get("gpu"), env.get("threads")', 'env.get("gpu")',
           _t("test_report_diff.py", "test_latency_at_another_thread_setting_is_shown_not_judged"),
           "a 1-thread run is judged against an 8-thread one and flagged as a regression"),
    Mutant("diff-parity-failure-unflagged", "edgeseq/report/diff.py",
           'if a["parity"] == "PASS" and b["parity"] == "FAIL":', 'if a["parity"] == "FAIL" and b["parity"] == "FAIL":',
           _t("test_report_diff.py", "test_parity_that_now_fails_is_a_regression"),
           "a row whose parity now fails is not a regression"),
    Mutant("diff-error-growth-10x", "edgeseq/report/diff.py",
           "and new_err > old_err * max_error_growth):", "and new_err > old_err * max_error_growth * 10):",
           _t("test_report_diff.py", "test_error_growth_while_still_passing"),
           "--max-error-growth loosened 10x"),
    Mutant("devices-threads-zero", "edgeseq/devices.py",
           "    if threads is not None and threads < 1:\n", "    if threads is not None and threads < 0:\n",
           _t("test_devices.py", "test_bad_profiles_name_the_file_and_key"),
           "threads = 0 in a device profile is accepted; the error comes later without file and key"),
    Mutant("devices-tolerance-unchecked", "edgeseq/devices.py",
           '        tolerances[prec] = validate_rel_l2(value, f"{source} [tolerances]: {prec!r}")\n',
           "        tolerances[prec] = float(value)\n",
           _t("test_devices.py", "test_bad_profiles_name_the_file_and_key"),
           "a negative tolerance in a device profile is accepted"),
    Mutant("devices-format-unchecked", "edgeseq/devices.py",
           "        if fmt is not RUNTIME_FORMAT[self.runtime]:\n", "        if False:\n",
           _t("test_api_input.py", "test_a_profile_that_cannot_run_the_artifact_as_described_is_refused"),
           "a LiteRT device profile runs an .onnx on ONNX Runtime and says nothing"),
    Mutant("cli-profile-devices-exit-0", "edgeseq/cli/profile.py",
           "    if worst:\n        raise typer.Exit(worst)\n", "    pass\n",
           _t("test_cli.py", "test_profile_on_several_devices_exits_non_zero_when_one_fails"),
           "multi-device `profile` exits 0 when one device fails"),
    Mutant("cli-check-exit-0", "edgeseq/cli/check.py",
           "    raise typer.Exit(0 if result.passed and (streamed is None or streamed.passed) else 1)\n",
           "    raise typer.Exit(0 if streamed is None or streamed.passed else 1)\n",
           _t("test_cli.py", "test_check_passes_then_fails_on_a_corrupted_artifact"),
           "`edgeseq check` exits 0 on a parity failure"),
    Mutant("cli-say-reads-markup", "edgeseq/cli/console.py",
           "print(text, style=style, markup=False, highlight=False)", "print(text, style=style, highlight=False)",
           _t("test_cli_messages.py", "test_export_hints_and_notes_print_intact"),
           "a first run ends with `pip install 'edgeseq'`: rich markup ate the [report] of the extras hint"),
    # ---- int8 on every CPU -----------------------------------------------------------------------------------------
    Mutant("int8-static-reduce-range-dropped", "edgeseq/formats/onnx/derive.py",
           "per_channel=config.per_channel, reduce_range=config.reduce_range,",
           "per_channel=config.per_channel, reduce_range=False,",
           _t("test_int8_cpus.py", "test_reduce_range_reaches_the_weight_tensors"),
           "the every-CPU default ships 8-bit weights, which saturate on AVX2 CPUs"),
    Mutant("int8-safety-claims-every-cpu", "edgeseq/formats/onnx/ops.py",
           "    if not config.is_int8 or config.weight_type is QuantDtype.UINT8 or config.reduce_range:\n",
           "    if True:\n",
           _t("test_int8_cpus.py", "test_which_static_configs_are_exact_where"),
           "an artifact that saturates on AVX2 claims to be exact on every CPU"),
    Mutant("int8-cpu-note-silent", "edgeseq/quantize.py",
           "    if not safe or not isa or EVERY_CPU in safe or isa in safe:\n", "    if True:\n",
           _t("test_int8_cpus.py", "test_int8_cpu_note"),
           "a check on a CPU the artifact saturates on fails without saying why"),
    Mutant("matrix-stamps-failed-int8", "edgeseq/matrix.py",
           "or not par.passed or", "or",
           _t("test_int8_cpus.py", "test_the_matrix_stamps_nothing_when_int8_fails"),
           "an int8 artifact whose parity failed is stamped as validated"),
    # ---- user models -----------------------------------------------------------------------------------------------
    Mutant("user-axes-unknown-key-accepted", "edgeseq/models/declare.py",
           "        if tensor not in ranks:\n", "        if False:\n",
           _t("test_user_models.py", "test_bad_dynamic_axes_are_input_errors"),
           "a dynamic_axes typo is a KeyError (or a silently static axis) instead of a one-line error"),
    Mutant("packed-backward-from-padding", "edgeseq/formats/tflite/rewrites.py",
           "            hold = torch.flip(1.0 - valid, [0])[:, :, None]", "            hold = torch.zeros_like(valid)[:, :, None]",
           _t("test_user_models.py", "test_masked_loop_gru_equals_packed_nn_gru"),
           "the backward direction of a packed GRU starts in the padding, not at each row's last frame"),
    # ---- error over time ------------------------------------------------------------------------------------------
    Mutant("timestep-growth-never-flagged", "edgeseq/timesteps.py",
           "        return not self.growth <= self.max_growth\n", "        return self.growth > 2 * self.max_growth\n",
           _t("test_timesteps.py", "test_growth_just_over_and_just_under_the_limit"),
           "a row whose error grows 2.1x over T is not flagged"),
    Mutant("timestep-backward-half-forward-order", "edgeseq/timesteps.py",
           "                          backward=(name == \"backward\"), **common)", "                          backward=False, **common)",
           _t("test_timesteps.py", "test_the_backward_half_grows_towards_the_first_frame"),
           "the backward half's growth is read in time order, so its error growing towards t = 0 is missed"),
    Mutant("timestep-floor-ignored", "edgeseq/timesteps.py",
           "    floor = tolerance * FLOOR_OF_TOLERANCE if math.isfinite(tolerance) else 0.0\n", "    floor = 0.0\n",
           _t("test_timesteps.py", "test_noise_below_the_floor_does_not_grow"),
           "fp32 rounding noise (1e-9 then 1e-8) is flagged as error growth"),
    Mutant("stream-state-dropped", "edgeseq/streaming.py",
           "        state = {name: got[out] for name, out in spec.state}\n", "        state = state\n",
           _t("test_streaming.py", "test_the_pytorch_model_streams_exactly"),
           "the gate feeds every chunk the first state, so a stream is judged as if no app carried its state"),
    Mutant("stream-causal-pool-looks-ahead", "edgeseq/models/streaming.py",
           "pooled = torch.maximum(pooled_in[:, :, 1:], pooled_in[:, :, :-1])",
           "pooled = torch.maximum(pooled_in[:, :, 1:], torch.nn.functional.pad(pooled_in[:, :, 2:], (0, 1)))",
           _t("test_streaming.py", "test_the_pytorch_model_streams_exactly"),
           "the streaming model's pool looks one frame ahead: chunked output differs from the full call"),
    Mutant("padding-lengths-not-fed", "edgeseq/padding.py",
           "            feed[lengths_input] = np.asarray(lengths, dtype=feed[lengths_input].dtype)\n",
           "            pass\n",
           _t("test_padding.py", "test_a_masked_model_is_padding_safe_in_pytorch_and_onnx"),
           "a padded batch keeps the example's lengths: a masked model is called unsafe, a leaky one may pass"),
    Mutant("padded-cbhg-projection-unmasked", "edgeseq/models/cbhg.py",
           "        y = self.projections[1](self.projections[0](y) * valid)\n",
           "        y = self.projections[1](self.projections[0](y))\n",
           _t("test_padding.py", "test_the_padded_cbhg_lite_is_padding_safe_everywhere"),
           "the padded CBHG's first projection leaks a padded frame into the second: rows differ from their own run"),
    # ---- GPU kernels and the device agent --------------------------------------------------------------------------
    Mutant("cuda-gru-grid-one-row", "edgeseq/kernels/cuda_gru.py",
           "driver.launch(func, device, (2, gi.shape[0]),", "driver.launch(func, device, (2, 1),",
           _t("test_cuda_gru.py", "test_driver_layer_launches_the_kernel_with_its_parameters"),
           "the CUDA GRU kernel computes only the first batch row; the others keep whatever the memory held"),
    Mutant("agent-hwcap2-ignored", "edgeseq/remote/agent.py",
           "[n for i, n in enumerate(_HWCAP2) if aux.get(26, 0) >> i & 1]", "[]",
           _t("test_emulated.py", "test_agent_reads_an_emulated_cores_features_from_its_auxv"),
           "an emulated ARM core's i8mm goes unseen: its int8 results are filed under arm64-dotprod"),
)


def union_of_tests(mutants) -> list[str]:
    """Every test the mutants name, once each, in order."""
    return list(dict.fromkeys(t for m in mutants for t in m.tests))


def snippet_count(mutant: Mutant, root: Path = ROOT) -> int:
    path = root / mutant.file
    return path.read_text().count(mutant.find) if path.is_file() else 0


def _copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked files, ignored ones left out: no .venv)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _env(copy: Path) -> dict:
    """The copy's edgeseq ahead of the editable install, for pytest and for the `edgeseq` subprocesses tests start."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("EDGESEQ_DEBUG", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _pytest(copy: Path, tests, timeout_s: float) -> tuple[int | None, str, float]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - started
    tail = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, tail[-1] if tail else "", time.monotonic() - started


def _check_copy_imports_itself(copy: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import edgeseq; print(edgeseq.__file__)"], cwd=copy,
                           env=_env(copy), capture_output=True, text=True)
    where = probe.stdout.strip()
    if probe.returncode or not Path(where).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"error: the copy imports edgeseq from {where or probe.stderr.strip()!r}, not from itself")


def run(mutants, timeout_s: float, baseline: bool) -> list[tuple[Mutant, str, str, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeseq-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        _copy_tree(copy)
        _check_copy_imports_itself(copy)
        if baseline:
            print(f"baseline: {len(union_of_tests(mutants))} tests on the unmutated code ...", flush=True)
            code, last, took = _pytest(copy, union_of_tests(mutants), timeout_s * 2)
            if code != 0:
                sys.exit(f"error: the tests fail without any mutant ({last or 'timed out'}); fix them first")
            print(f"baseline: passed in {took:.0f} s", flush=True)
        for m in mutants:
            target = copy / m.file
            original = target.read_text()
            if original.count(m.find) != 1:
                rows.append((m, "stale", f"snippet found {original.count(m.find)} times in {m.file}", 0.0))
                print(f"{m.name}: stale", flush=True)
                continue
            target.write_text(original.replace(m.find, m.replace, 1))
            try:
                code, last, took = _pytest(copy, m.tests, timeout_s)
            finally:
                target.write_text(original)
            status = {1: "caught", 0: "survived", None: "error"}.get(code, "error")
            detail = f"timed out after {timeout_s:.0f} s" if code is None else (
                last if code in (0, 1) else f"pytest exit {code}: {last}")
            rows.append((m, status, detail, took))
            print(f"{m.name}: {status} ({took:.0f} s)", flush=True)
    return rows


def _table(rows) -> str:
    header = ("mutant", "file", "result", "s", "tests said")
    cells = [header] + [(m.name, m.file, status, f"{took:.0f}", detail) for m, status, detail, took in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths)) + "  " + str(r[-1]) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 10)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutant only (repeatable)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per mutant's tests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on unmutated code")
    args = parser.parse_args(argv)
    mutants = list(MUTANTS)
    if args.only:
        names = {m.name for m in MUTANTS}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown mutant {', '.join(unknown)} (see --list)")
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            state = "" if snippet_count(m) == 1 else f"  [stale: snippet found {snippet_count(m)} times]"
            print(f"{m.name}  ({m.file}){state}\n    bug:   {m.bug}\n    tests: {' '.join(m.tests)}")
        return 0
    rows = run(mutants, args.timeout, baseline=not args.no_baseline)
    print()
    print(_table(rows))
    bad = [m.name for m, status, *_ in rows if status != "caught"]
    caught = len(rows) - len(bad)
    print(f"\n{caught} caught, {sum(s == 'survived' for _, s, *_ in rows)} survived, "
          f"{sum(s == 'stale' for _, s, *_ in rows)} stale, {sum(s == 'error' for _, s, *_ in rows)} error "
          f"of {len(rows)} mutants")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
