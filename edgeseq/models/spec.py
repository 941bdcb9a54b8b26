"""ModelSpec: one declarative record per model (inputs, dynamic axes, example data, tolerances, cost)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..parity import DEFAULT_TOLERANCES, Tolerances
from ..tensors import TensorSpec

from .axes import BATCH, TIME  # noqa: F401 (re-exported: models, formats and tests import them from here)

SOURCES = ("speech", "random")


@dataclass(frozen=True, eq=False)
class ModelSpec:
    name: str
    description: str
    factory: Callable[[], nn.Module]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    speech_dim: int | None = None  # feature size fed from the real-speech fixtures; None -> random inputs only
    seed: int = 0
    default_time: int = 200
    time_sweep: tuple[int, ...] = (1, 7, 50, 200, 1000)
    batch_sweep: tuple[int, ...] = (1, 3)
    tolerances: Tolerances = field(default_factory=lambda: DEFAULT_TOLERANCES)
    config: dict = field(default_factory=dict)
    prebuilt: nn.Module | None = None  # set for specs wrapped around a user's module
    value_ranges: dict = field(default_factory=dict)  # integer input -> (low, high), inclusive: token ids, ...
    lengths: tuple[str, ...] = ()  # integer inputs holding each row's valid length along the time axis
    frames_per_second: float | None = None  # the time axis' frame rate, for a real-time factor (None: no RTF)
    source: str = ""  # the FILE.py:FACTORY / package.module:FACTORY a user model was loaded from
    bidirectional_outputs: tuple[str, ...] = ()  # outputs laid out [forward | backward] on their last axis
    state: tuple[tuple[str, str], ...] = ()  # (state input, the output carrying it to the next call): streaming

    # ---- shape facts -------------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {}
        for t in self.inputs + self.outputs:
            named = {i: str(d) for i, d in enumerate(t.shape) if isinstance(d, str)}
            if named:
                axes[t.name] = named
        return axes

    def time_axes(self) -> dict[str, tuple[int, bool]]:
        """Outputs with a time axis: (that axis, whether the output is a bidirectional pair), for the error over t."""
        return {t.name: (t.shape.index(TIME), t.name in self.bidirectional_outputs)
                for t in self.outputs if TIME in t.shape}

    @property
    def has_dynamic_time(self) -> bool:
        return any(TIME in t.shape for t in self.inputs)

    def shape_for(self, spec: TensorSpec, batch: int, time: int) -> tuple[int, ...]:
        sizes = {**getattr(self, "_axis_sizes", {}), BATCH: batch, TIME: time}
        out = []
        for d in spec.shape:
            if isinstance(d, int):
                out.append(d)
            elif d in sizes:
                out.append(sizes[d])
            else:
                raise ValueError(f"{self.name}: axis {d!r} of {spec.name} has no size rule")
        return tuple(out)

    # ---- building ----------------------------------------------------------------------------------------------
    def build(self, weights: str | Path | None = None) -> nn.Module:
        """The PyTorch original in eval mode; seeded weights unless a checkpoint is given."""
        if self.prebuilt is not None:  # a user's module: a checkpoint goes onto a copy, never into the spec's own
            module = copy.deepcopy(self.prebuilt) if weights is not None else self.prebuilt
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                module = self.factory()
                _randomize_norm_stats(module)
        if weights is not None:
            from .weights import load_weights

            load_weights(module, weights)
        return module.eval()

    # ---- data --------------------------------------------------------------------------------------------------
    def example_inputs(
        self, batch: int = 1, time: int | None = None, source: str = "speech", seed: int = 0
    ) -> dict[str, np.ndarray]:
        from .._checks import integer
        from ..errors import InputError
        from ..inputs import validate_feed_size, random_array

        batch = integer(batch, "batch")
        time = integer(self.default_time if time is None else time, "time")
        if source not in SOURCES:
            raise InputError(f"unknown input source {source!r}; choose one of {SOURCES}")
        shapes = {t.name: (self.shape_for(t, batch, time), t.dtype) for t in self.inputs}
        validate_feed_size(shapes)
        feed = {}
        rng = np.random.default_rng(seed)
        for k, (name, (shape, dtype)) in enumerate(shapes.items()):
            if source == "speech" and self.speech_dim is not None and shape[-1] == self.speech_dim:
                from .features import speech_features

                feed[name] = speech_features(self.speech_dim, shape[1], batch=shape[0], offset=seed + k)
            elif name in self.lengths:  # the longest row fills the time axis; the others are shorter, sorted down
                rest = rng.integers(1, time + 1, size=shape[0] - 1) if shape[0] > 1 else np.zeros(0, np.int64)
                feed[name] = np.concatenate([[time], np.sort(rest)[::-1]]).astype(dtype)
            elif name in self.value_ranges:
                low, high = self.value_ranges[name]
                feed[name] = rng.integers(low, high + 1, size=shape).astype(dtype)
            else:
                feed[name] = random_array(rng, shape, dtype)
        return feed

    def calibration_inputs(self, n: int = 8, time: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Real speech where the model takes it (what a quantizer should see), at varied offsets."""
        source = "speech" if self.speech_dim is not None else "random"
        for i in range(n):
            yield self.example_inputs(batch=1, time=time, source=source, seed=100 + i)

    @property
    def sources(self) -> tuple[str, ...]:
        return SOURCES if self.speech_dim is not None else ("random",)

    # ---- cost --------------------------------------------------------------------------------------------------
    @cached_property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.build().parameters())

    def flops_by_stage(self, time: int | None = None, batch: int = 1) -> dict[str, int]:
        from .flops import flops_by_stage

        feed = self.example_inputs(batch=batch, time=time, source="random")
        return flops_by_stage(self.build(), {k: torch.from_numpy(v) for k, v in feed.items()})

    def flops(self, time: int | None = None, batch: int = 1) -> int:
        return sum(self.flops_by_stage(time, batch).values())

    def summary(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "parameters": self.parameter_count,
            "default_time": self.default_time,
            "flops_at_default_time": self.flops(),
            "config": self.config,
            **({"source": self.source} if self.source else {}),
        }

    # ---- user modules ------------------------------------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        example_inputs,
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
        dynamic_axes: dict[str, dict[int, str]] | None = None,
        name: str | None = None,
        **declared,
    ) -> "ModelSpec":
        """Wrap any nn.Module so it flows through the same export / parity path as the registered models.

        dynamic_axes: {tensor: {axis: name}}, names of your choosing (the first input's axis 0 is the batch, its
        first other dynamic axis the time axis); output axes left out are found by running the module twice.
        Keywords: value_ranges {input: (low, high)} for integer inputs (token ids), lengths (inputs holding each
        row's valid length; a 1-D integer input whose example values end at T is taken as one), time_sweep and
        batch_sweep (default: T = 1..1000 and batch 1, 3 where those axes are dynamic), frames_per_second (for
        the real-time factor), bidirectional_outputs (outputs that are a BiGRU's [forward | backward] halves on the
        last axis: their error over t is shown per half), state ({state input: the output that carries it to the
        next call}: the model streams, and check feeds it chunk by chunk against one full call). Generated inputs
        (sweeps, probes, calibration) obey the declared ranges."""
        from .declare import spec_from_module

        return spec_from_module(cls, module, example_inputs, input_names, output_names, dynamic_axes, name,
                                **declared)


def _randomize_norm_stats(module: nn.Module) -> None:
    """Seeded non-trivial batch-norm statistics, so an export that drops or mis-folds a BN fails parity."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
