"""ModelSpec: one declarative record per model (inputs, dynamic axes, example data, tolerances, cost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..parity import DEFAULT_TOLERANCES, Tolerances
from ..tensors import TensorSpec

TIME, BATCH = "time", "batch"
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
        if self.prebuilt is not None:
            module = self.prebuilt
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
        from ..inputs import check_feed_size, random_array

        batch = integer(batch, "batch")
        time = integer(self.default_time if time is None else time, "time")
        if source not in SOURCES:
            raise InputError(f"unknown input source {source!r}; choose one of {SOURCES}")
        shapes = {t.name: (self.shape_for(t, batch, time), t.dtype) for t in self.inputs}
        check_feed_size(shapes)
        feed = {}
        rng = np.random.default_rng(seed)
        for k, (name, (shape, dtype)) in enumerate(shapes.items()):
            if source == "speech" and self.speech_dim is not None and shape[-1] == self.speech_dim:
                from .features import speech_features

                feed[name] = speech_features(self.speech_dim, shape[1], batch=shape[0], offset=seed + k)
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
    ) -> "ModelSpec":
        """Wrap any nn.Module so it flows through the same export / parity path as the registered models."""
        if isinstance(example_inputs, dict):
            input_names = input_names or list(example_inputs)
            arrays = [np.asarray(_to_numpy(example_inputs[n])) for n in input_names]
        else:
            if isinstance(example_inputs, (torch.Tensor, np.ndarray)):
                example_inputs = (example_inputs,)
            arrays = [np.asarray(_to_numpy(x)) for x in example_inputs]
            input_names = input_names or [f"input_{i}" for i in range(len(arrays))]
        if len(input_names) != len(arrays):
            raise ValueError(f"{len(input_names)} input names for {len(arrays)} example inputs")
        module = module.eval()
        with torch.inference_mode():
            outs = module(*[torch.from_numpy(a) for a in arrays])
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        output_names = output_names or [f"output_{i}" for i in range(len(outs))]
        dynamic_axes = dynamic_axes or {}

        def declare(nm: str, shape: tuple[int, ...], dtype: str) -> TensorSpec:
            named = {int(k): v for k, v in dynamic_axes.get(nm, {}).items()}
            return TensorSpec(nm, tuple(named.get(i, d) for i, d in enumerate(shape)), dtype)

        inputs = tuple(declare(n, a.shape, str(a.dtype)) for n, a in zip(input_names, arrays))
        outputs = tuple(declare(n, tuple(o.shape), str(o.dtype).replace("torch.", "")) for n, o in zip(output_names, outs))
        first = inputs[0].shape if inputs else ()
        batch = arrays[0].shape[0] if first and first[0] == BATCH else 1
        time = arrays[0].shape[1] if len(first) > 1 and first[1] == TIME else 1
        spec = cls(
            name=name or type(module).__name__,
            description=f"user module {type(module).__name__}",
            factory=lambda: module,
            inputs=inputs,
            outputs=outputs,
            default_time=time,
            time_sweep=(time,),
            batch_sweep=(batch,),
            prebuilt=module,
        )
        axis_sizes = {d: a.shape[i] for t, a in zip(inputs, arrays) for i, d in enumerate(t.shape) if isinstance(d, str)}
        object.__setattr__(spec, "_axis_sizes", axis_sizes)
        return spec


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _randomize_norm_stats(module: nn.Module) -> None:
    """Seeded non-trivial batch-norm statistics, so an export that drops or mis-folds a BN fails parity."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
