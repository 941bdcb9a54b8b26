"""Numpy-only log-mel features of real speech, for parity tests.

Exported models are checked against reference outputs on inputs that look like
what they see in deployment. Random noise makes a poor stand-in (flat spectrum,
no temporal structure), so this module turns small committed speech fixtures
(``fixtures/speech_*.npy``, synthesised with espeak-ng) into normalised log-mel
features of any length. It is numpy-only so that tests and edge-side tooling
need neither torch nor librosa.
"""

from __future__ import annotations

import functools
import io
import re
from importlib.resources import files

import numpy as np

#: Sample rate of the fixtures and of all feature computations (Hz).
SAMPLE_RATE = 16000
#: Hop length in samples: 16000 / 200 = 80 frames per second.
HOP = 200
#: Analysis window length in samples (50 ms), zero-padded to ``N_FFT``.
WIN = 800
#: FFT size (power of two >= WIN) -> N_FFT // 2 + 1 = 513 frequency bins.
N_FFT = 1024

#: Floor applied before the log so silent frames stay finite.
LOG_FLOOR = 1e-5
_PREEMPHASIS = 0.97


# --------------------------------------------------------------------------- mel scale
# Slaney's constants: 200/3 Hz per mel below 1 kHz, a log step of ln(6.4) / 27 per mel above
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(f):
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as in librosa's default."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(
        f >= _MIN_LOG_HZ,
        _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
        f / _F_SP,
    )


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(
        m >= _MIN_LOG_MEL,
        _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)),
        _F_SP * m,
    )


def mel_filterbank(n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT,
                   fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style triangular mel filters, shape ``[n_mels, n_fft // 2 + 1]`` (float32).

    Matches ``librosa.filters.mel(htk=False, norm="slaney")``: filters are spaced
    evenly on the Slaney mel scale and area-normalised (2 / bandwidth) so that
    each band measures energy density rather than growing with its width.
    """
    if n_mels < 1:
        raise ValueError("n_mels must be >= 1")
    fmax = sr / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sr / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_pts = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.astype(np.float32)


# --------------------------------------------------------------------------- features
def _power_spectrogram(wave: np.ndarray) -> np.ndarray:
    """Centered (reflect-padded) Hann-windowed STFT power, shape ``[frames, N_FFT//2+1]``.

    Frame count is ``1 + len(wave) // HOP``, as with ``torch.stft(center=True)``.
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    pad = N_FFT // 2
    mode = "reflect" if x.size > pad else "constant"  # reflect needs len > pad
    x = np.pad(x, pad, mode=mode)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    # periodic Hann of length WIN, centred inside the N_FFT frame (torch/librosa convention)
    win = np.zeros(N_FFT)
    left = (N_FFT - WIN) // 2
    win[left:left + WIN] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)
    spec = np.fft.rfft(frames * win, n=N_FFT, axis=-1)
    return spec.real ** 2 + spec.imag ** 2


def log_mel(wave: np.ndarray, n_mels: int, preemphasis: bool = True,
            normalize: bool = True) -> np.ndarray:
    """Log-mel features of a 16 kHz waveform, float32 ``[frames, n_mels]``.

    Pipeline: optional pre-emphasis (flattens speech's spectral tilt) -> Hann STFT
    -> power -> mel -> ``log(max(x, 1e-5))``. With ``normalize`` each mel channel
    is then standardised over the utterance (zero mean, unit std), the usual input
    normalisation of speech models, so values land roughly in [-4, 4].
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("empty waveform")
    if preemphasis:
        x = np.concatenate([x[:1], x[1:] - _PREEMPHASIS * x[:-1]])
    power = _power_spectrogram(x)
    mel = power @ mel_filterbank(n_mels).astype(np.float64).T
    feats = np.log(np.maximum(mel, LOG_FLOOR))
    if normalize:
        mean = feats.mean(axis=0, keepdims=True)
        std = feats.std(axis=0, keepdims=True)
        feats = (feats - mean) / np.maximum(std, 1e-5)
    return feats.astype(np.float32)


# --------------------------------------------------------------------------- fixtures
def _fixture_dir():
    """Traversable for the fixtures folder; works from a source tree or an installed wheel."""
    return files("edgeseq.models") / "fixtures"


def fixture_names() -> list[str]:
    """Names of the speech fixtures (``speech_0``, ``speech_1``, ...), in numeric order."""
    names = []
    for entry in _fixture_dir().iterdir():
        m = re.fullmatch(r"(speech_(\d+))\.npy", entry.name)
        if m:
            names.append((int(m.group(2)), m.group(1)))
    if not names:
        raise FileNotFoundError("no speech_*.npy fixtures in edgeseq/models/fixtures")
    return [n for _, n in sorted(names)]


def load_waveform(name: str) -> np.ndarray:
    """Load fixture ``name`` (e.g. ``"speech_0"``) as float32 in [-1, 1] at 16 kHz."""
    if name.endswith(".npy"):
        name = name[:-4]
    data = (_fixture_dir() / f"{name}.npy").read_bytes()
    pcm = np.load(io.BytesIO(data), allow_pickle=False)
    return (pcm.astype(np.float32) / np.float32(32768.0)).reshape(-1)


@functools.lru_cache(maxsize=None)
def _cached_log_mel(name: str, n_mels: int) -> np.ndarray:
    """Normalised log-mels of one fixture, computed once per (name, n_mels); read-only."""
    feats = log_mel(load_waveform(name), n_mels)
    feats.setflags(write=False)
    return feats


# Frame shift applied when batch rows wrap around the fixture list, so that row
# b and row b + n_fixtures still differ (a prime, unlikely to divide the cycle).
_WRAP_SHIFT = 53


def speech_features(n_mels: int, time: int, batch: int = 1, offset: int = 0) -> np.ndarray:
    """Real-speech log-mel features, float32 ``[batch, time, n_mels]``, for any ``time >= 1``.

    Row ``b`` concatenates the fixtures' normalised log-mels cyclically, starting at
    fixture ``(offset + b) % n``, and is cropped to ``time`` frames. Rows that wrap
    past the fixture count also start ``53 * ((offset + b) // n)`` frames later, so
    every row differs. Deterministic; log-mels are cached per (fixture, n_mels).
    """
    if time < 1 or batch < 1 or n_mels < 1:
        raise ValueError(f"need n_mels, time, batch >= 1, got {n_mels}, {time}, {batch}")
    names = fixture_names()
    n = len(names)
    mels = [_cached_log_mel(name, n_mels) for name in names]
    cycle = sum(m.shape[0] for m in mels)
    out = np.empty((batch, time, n_mels), dtype=np.float32)
    for b in range(batch):
        k = offset + b
        first = k % n
        skip = (_WRAP_SHIFT * (k // n)) % cycle
        need = skip + time
        parts, have, i = [], 0, first
        while have < need:
            parts.append(mels[i % n])
            have += mels[i % n].shape[0]
            i += 1
        out[b] = np.concatenate(parts, axis=0)[skip:need]
    return out


__all__ = [
    "SAMPLE_RATE", "HOP", "WIN", "N_FFT", "hz_to_mel", "mel_to_hz", "mel_filterbank",
    "log_mel", "fixture_names", "load_waveform", "speech_features",
]
