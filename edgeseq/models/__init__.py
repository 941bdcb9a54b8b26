"""The model registry: reference models by name, each a ModelSpec."""

from __future__ import annotations

from ..errors import UnknownNameError
from ..tensors import TensorSpec
from .spec import BATCH, TIME, ModelSpec

_REGISTRY: dict[str, ModelSpec] = {}
_FACTORIES: dict[str, ModelSpec] = {}  # FILE.py:FACTORY -> its spec, loaded once per process


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: "str | ModelSpec") -> ModelSpec:
    """A registered name, a ModelSpec, or a user's factory (FILE.py:FACTORY, package.module:FACTORY)."""
    if isinstance(name, ModelSpec):
        return name
    from .factory import is_factory_ref, load_factory, normalize_ref

    if is_factory_ref(name):
        key = normalize_ref(name)
        if key not in _FACTORIES:
            _FACTORIES[key] = load_factory(name)
        return _FACTORIES[key]
    _register_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))} (or your own: "
                               "FILE.py:FACTORY)") from None


def model_name(model: str) -> str:
    """A model's own name: a registered name as given; a factory's (FILE.py:FACTORY) the name its spec chose."""
    from .factory import is_factory_ref

    return get_model(model).name if is_factory_ref(model) else model


def list_models() -> list[ModelSpec]:
    _register_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _cbhg_spec(name: str, description: str, cfg, speech_dim: int | None = None, lengths: bool = False) -> ModelSpec:
    """lengths: the padding-safe variant, with a [batch] int64 `lengths` input (models/padded.py)."""
    from .cbhg import CBHG

    out_dim = cfg.out_dim or 2 * cfg.gru_hidden
    output = "encoded" if cfg.out_dim is None else "spectrogram"
    return ModelSpec(
        name=name,
        description=description,
        factory=lambda: CBHG(cfg, takes_lengths=lengths),
        inputs=(TensorSpec("features", (BATCH, TIME, cfg.in_dim)),)
        + ((TensorSpec("lengths", (BATCH,), "int64"),) if lengths else ()),
        lengths=("lengths",) if lengths else (),
        outputs=(TensorSpec(output, (BATCH, TIME, out_dim)),),
        speech_dim=cfg.in_dim if speech_dim is None else speech_dim,
        config=cfg.to_dict(),
        frames_per_second=80.0,  # 12.5 ms hop, the Tacotron front ends' frame rate
        bidirectional_outputs=(output,) if cfg.out_dim is None else (),  # the BiGRU's own output
    )


def _stream_spec() -> ModelSpec:
    from .streaming import CBHG_LITE_STREAM, STATE_OUTPUT_SUFFIX, StreamingCBHGLite

    cfg = CBHG_LITE_STREAM
    states = cfg.state_shapes()
    return ModelSpec(
        name="cbhg-lite-stream",
        description="CBHG-Lite for streaming: causal bank / pool / projections, GRU 128, state in and out",
        factory=lambda: StreamingCBHGLite(cfg),
        inputs=(TensorSpec("features", (BATCH, TIME, cfg.in_dim)),)
        + tuple(TensorSpec(name, (BATCH, *shape)) for name, shape in states.items()),
        outputs=(TensorSpec("encoded", (BATCH, TIME, cfg.gru_hidden)),)
        + tuple(TensorSpec(name + STATE_OUTPUT_SUFFIX, (BATCH, *shape)) for name, shape in states.items()),
        speech_dim=cfg.in_dim,
        config=cfg.to_dict(),
        frames_per_second=80.0,
        state=tuple((name, name + STATE_OUTPUT_SUFFIX) for name in states),
    )


_BUILTINS_DONE = False


def _register_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from . import cbhg
    from .seq_cnn import SeqCNN

    register(_cbhg_spec("cbhg", "Tacotron-1 encoder CBHG (K=16 bank of 128, 4 highway, BiGRU 128)", cbhg.CBHG_ENCODER))
    register(
        _cbhg_spec(
            "cbhg-postnet", "Tacotron-1 post-processing CBHG: 80-mel in, 1025 linear bins out", cbhg.CBHG_POSTNET
        )
    )
    register(
        _cbhg_spec(
            "cbhg-lite",
            "CBHG for phones: K=8 separable bank of 64, 2 simplified highway of 64, BiGRU 64",
            cbhg.CBHG_LITE,
        )
    )
    register(
        _cbhg_spec(
            "attention-cbhg", "CBHG + 4-head self-attention (residual + layer norm) before the BiGRU", cbhg.ATTENTION_CBHG
        )
    )
    register(_stream_spec())
    register(
        ModelSpec(
            name="seq-cnn",
            description="Conv-ReLU-MaxPool-Flatten-Linear-ReLU-Linear-Softmax on 32 frames x 40 mels",
            factory=SeqCNN,
            inputs=(TensorSpec("features", (BATCH, 32, 40)),),
            outputs=(TensorSpec("probabilities", (BATCH, 10)),),
            speech_dim=40,
            default_time=32,
            time_sweep=(32,),
            config={"n_mels": 40, "frames": 32, "channels": 32, "hidden": 64, "classes": 10},
        )
    )


__all__ = ["ModelSpec", "get_model", "list_models", "register"]
