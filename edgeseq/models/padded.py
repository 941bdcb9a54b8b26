"""The padding-safe CBHGs: the reference models with a `lengths` input ([batch] int64, each row's valid frames), so
an app can batch utterances of different lengths padded to the longest and get, row by row, what each gives alone.

Not registered (the registry's models keep their one-input graphs); load them as factories wherever a model name
goes: `edgeseq export edgeseq.models.padded:cbhg_lite`, or `get_model("edgeseq.models.padded:cbhg")`. Their weights
are the registered models' (same seed), so on full-length rows they equal cbhg-lite / cbhg.
"""

from __future__ import annotations

from . import _cbhg_spec, get_model
from .cbhg import ATTENTION_CBHG, CBHG_ENCODER, CBHG_LITE, CBHG_POSTNET


def _with_lengths(name: str, cfg):
    base = get_model(name)
    return _cbhg_spec(f"{name}-lengths", f"{base.description}; with a lengths input: padding-safe", cfg,
                      speech_dim=base.speech_dim, lengths=True)


def cbhg_lite():
    return _with_lengths("cbhg-lite", CBHG_LITE)


def cbhg():
    return _with_lengths("cbhg", CBHG_ENCODER)


def cbhg_postnet():
    return _with_lengths("cbhg-postnet", CBHG_POSTNET)


def attention_cbhg():
    return _with_lengths("attention-cbhg", ATTENTION_CBHG)
