#!/usr/bin/env python3
"""Regenerate the real-speech waveform fixtures in edgeseq/models/fixtures/.

Run once by developers (output is committed):

    python tools/make_fixtures.py

Synthesises 4 short English utterances with the ``espeak-ng`` CLI, reads the
22050 Hz WAVs with the stdlib ``wave`` module, resamples them to 16 kHz with a
windowed-sinc (band-limited) interpolator written in numpy, trims leading and
trailing silence, peak-normalises and stores them as int16 ``speech_<i>.npy``.
Only numpy + stdlib + espeak-ng are used, and every step is deterministic for a
given espeak-ng version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

TARGET_SR = 16000
OUT_DIR = Path(__file__).resolve().parents[1] / "edgeseq" / "models" / "fixtures"

# (voice, words per minute, text) - two voices and several speeds for variety.
UTTERANCES = [
    ("en-us", 165, "The quick brown fox jumps over the lazy dog."),
    ("en-gb", 150, "Edge devices run small speech models in real time."),
    ("en-us", 140, "Please call Stella and ask her to bring these things."),
    ("en-gb", 180, "Seven hundred and forty two numbers were counted today."),
]


def synthesize(voice: str, speed: int, text: str, path: Path) -> None:
    """Run espeak-ng and write a WAV to ``path``."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
        check=True,
    )


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit PCM WAV into float64 in [-1, 1]."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {w.getsampwidth() * 8}-bit")
        sr = w.getframerate()
        n_ch = w.getnchannels()
        raw = w.readframes(w.getnframes())
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if n_ch > 1:
        x = x.reshape(-1, n_ch).mean(axis=1)
    return x, sr


def resample(x: np.ndarray, sr_in: int, sr_out: int, half_taps: int = 32) -> np.ndarray:
    """Band-limited resampling by Hann-windowed sinc interpolation.

    The sinc cutoff is set just below the lower Nyquist frequency so that
    down-sampling 22050 -> 16000 Hz does not alias the 8-11 kHz band.
    """
    if sr_in == sr_out:
        return x.copy()
    n_out = int(round(len(x) * sr_out / sr_in))
    t = np.arange(n_out) * (sr_in / sr_out)  # output instants in input-sample units
    cutoff = 0.95 * min(1.0, sr_out / sr_in)  # fraction of the input Nyquist
    base = np.floor(t).astype(np.int64)
    y = np.zeros(n_out)
    for k in range(-half_taps + 1, half_taps + 1):
        idx = base + k
        d = t - idx
        w = 0.5 * (1.0 + np.cos(np.pi * d / half_taps))
        w[np.abs(d) >= half_taps] = 0.0
        h = cutoff * np.sinc(cutoff * d) * w
        valid = (idx >= 0) & (idx < len(x))
        y[valid] += h[valid] * x[idx[valid]]
    return y


def trim_silence(x: np.ndarray, sr: int, rel_db: float = -40.0, margin_s: float = 0.05) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``rel_db`` below the peak, keep a margin."""
    thr = np.max(np.abs(x)) * 10.0 ** (rel_db / 20.0)
    loud = np.flatnonzero(np.abs(x) > thr)
    if loud.size == 0:
        return x
    margin = int(margin_s * sr)
    return x[max(0, loud[0] - margin): min(len(x), loud[-1] + margin + 1)]


def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (voice, speed, text) in enumerate(UTTERANCES):
            wav_path = Path(tmp) / f"speech_{i}.wav"
            synthesize(voice, speed, text, wav_path)
            x, sr = read_wav(wav_path)
            y = trim_silence(resample(x, sr, TARGET_SR), TARGET_SR)
            y = 0.9 * y / np.max(np.abs(y))  # peak-normalise to -0.9 dBFS
            pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
            out = OUT_DIR / f"speech_{i}.npy"
            np.save(out, pcm)
            total += out.stat().st_size
            print(f"{out.name}: {voice} -s {speed} {len(pcm) / TARGET_SR:.2f}s "
                  f"{out.stat().st_size} B  {text!r}")
    print(f"total {total} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
