"""Tests for edgeseq.models.features (numpy-only log-mels of real speech fixtures)."""

import numpy as np
import pytest

from edgeseq.models import features as F

N_MELS = (40, 80, 128)
TIMES = (1, 7, 1000)


# --------------------------------------------------------------------------- filterbank
@pytest.mark.parametrize("n_mels", N_MELS)
def test_filterbank_shape_nonneg_positive_rows(n_mels):
    fb = F.mel_filterbank(n_mels)
    assert fb.shape == (n_mels, F.N_FFT // 2 + 1)
    assert fb.dtype == np.float32
    assert np.all(fb >= 0)
    assert np.all(fb.sum(axis=1) > 0)
    # filter centres rise monotonically in frequency
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > peaks[0]


def test_filterbank_respects_fmin_fmax():
    fb = F.mel_filterbank(40, fmin=300.0, fmax=4000.0)
    freqs = np.linspace(0, F.SAMPLE_RATE / 2, F.N_FFT // 2 + 1)
    used = freqs[fb.sum(axis=0) > 0]
    assert used.min() >= 300.0 and used.max() <= 4000.0


def test_mel_scale_slaney_reference_points():
    assert F.hz_to_mel(1000.0) == pytest.approx(15.0)
    assert F.hz_to_mel(200.0) == pytest.approx(3.0)
    f = np.array([0.0, 123.0, 1000.0, 4321.0, 8000.0])
    np.testing.assert_allclose(F.mel_to_hz(F.hz_to_mel(f)), f, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- log_mel
def test_log_mel_frame_count_and_dtype():
    for n in (1, 199, 200, 16000, 16123):
        out = F.log_mel(np.zeros(n) + 0.1 * np.sin(np.arange(n)), 40)
        assert out.shape == (1 + n // F.HOP, 40)
        assert out.dtype == np.float32


def test_log_mel_tone_lands_in_right_band():
    t = np.arange(F.SAMPLE_RATE) / F.SAMPLE_RATE
    for hz in (440.0, 1000.0, 3000.0):
        feats = F.log_mel(0.5 * np.sin(2 * np.pi * hz * t), 80, preemphasis=False, normalize=False)
        fb = F.mel_filterbank(80)
        expected = fb[:, int(round(hz * F.N_FFT / F.SAMPLE_RATE))].argmax()
        assert abs(int(np.median(feats.argmax(axis=1))) - int(expected)) <= 1


def test_log_mel_floor_keeps_silence_finite():
    feats = F.log_mel(np.zeros(4000), 40, normalize=False)
    np.testing.assert_allclose(feats, np.log(F.LOG_FLOOR), rtol=1e-6)
    assert np.all(np.isfinite(F.log_mel(np.zeros(4000), 40)))


# --------------------------------------------------------------------------- fixtures
def test_fixture_names_and_waveforms():
    names = F.fixture_names()
    assert names == [f"speech_{i}" for i in range(4)]
    for name in names:
        w = F.load_waveform(name)
        assert w.dtype == np.float32 and w.ndim == 1
        assert np.all(np.abs(w) <= 1.0)
        assert 2.0 <= w.size / F.SAMPLE_RATE <= 4.0
        assert 0.5 < np.abs(w).max() <= 0.91  # peak-normalised to 0.9
    # different utterances, not copies
    assert len({F.load_waveform(n).size for n in names}) == len(names)


@pytest.mark.parametrize("name", ["speech_0", "speech_1", "speech_2", "speech_3"])
def test_fixtures_are_speech(name):
    """Real speech: loudness and spectrum change a lot over time; a steady tone does not."""
    raw = F.log_mel(F.load_waveform(name), 80, normalize=False)
    energy = raw.mean(axis=1)  # per-frame log-mel energy
    assert energy.std() > 1.0
    assert energy.max() - energy.min() > 5.0
    assert raw.std(axis=0).mean() > 1.5  # spectral shape varies over time too

    t = np.arange(3 * F.SAMPLE_RATE) / F.SAMPLE_RATE
    tone = F.log_mel(0.5 * np.sin(2 * np.pi * 300 * t), 80, normalize=False)[5:-5]
    assert tone.mean(axis=1).std() < 0.1  # the threshold does separate speech from constants

    # voiced speech carries most mel energy below 4 kHz
    fb_hz = F.mel_to_hz(np.linspace(F.hz_to_mel(0), F.hz_to_mel(8000), 82)[1:-1])
    lin = np.exp(raw)
    assert lin[:, fb_hz < 4000].sum() > lin[:, fb_hz >= 4000].sum()


# --------------------------------------------------------------------------- speech_features
@pytest.mark.parametrize("n_mels", N_MELS)
@pytest.mark.parametrize("time", TIMES)
def test_speech_features_shape_dtype_finite(n_mels, time):
    x = F.speech_features(n_mels, time, batch=3)
    assert x.shape == (3, time, n_mels)
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))
    assert np.abs(x).max() < 12.0


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("batch", (4, 9))
def test_batch_rows_differ(time, batch):
    x = F.speech_features(40, time, batch=batch)
    for i in range(batch):
        for j in range(i + 1, batch):
            assert not np.array_equal(x[i], x[j]), (i, j)


def test_deterministic_and_not_aliasing_cache():
    a = F.speech_features(80, 500, batch=2, offset=1)
    a[:] = 0.0  # mutating a result must not poison the cache
    b = F.speech_features(80, 500, batch=2, offset=1)
    c = F.speech_features(80, 500, batch=2, offset=1)
    np.testing.assert_array_equal(b, c)
    assert np.abs(b).sum() > 0


def test_offset_shifts_rows():
    x = F.speech_features(40, 50, batch=3)
    y = F.speech_features(40, 50, batch=2, offset=1)
    np.testing.assert_array_equal(x[1:], y)


def test_long_sequence_is_cyclic_concatenation():
    names = F.fixture_names()
    mels = [F.log_mel(F.load_waveform(n), 80) for n in names]
    cat = np.concatenate(mels + mels, axis=0)
    time = 5000
    x = F.speech_features(80, time, batch=2)
    assert x.shape == (2, time, 80)
    np.testing.assert_allclose(x[0, : cat.shape[0]], cat[: min(time, cat.shape[0])], atol=1e-6)
    # row 1 starts at the second utterance
    np.testing.assert_allclose(x[1, : mels[1].shape[0]], mels[1], atol=1e-6)
    # per-utterance normalisation: one full cycle has ~zero mean / unit std per feature
    one_cycle = sum(m.shape[0] for m in mels)
    seg = x[0, :one_cycle]
    assert np.abs(seg.mean(axis=0)).max() < 1e-3
    np.testing.assert_allclose(seg.std(axis=0), 1.0, atol=1e-3)
    assert np.mean(np.abs(seg) < 4.0) > 0.99


def test_cache_is_used_and_read_only():
    F._cached_log_mel.cache_clear()
    F.speech_features(40, 10)
    F.speech_features(40, 10)
    info = F._cached_log_mel.cache_info()
    assert info.hits >= len(F.fixture_names()) and info.currsize == len(F.fixture_names())
    assert not F._cached_log_mel("speech_0", 40).flags.writeable


@pytest.mark.parametrize("bad", [dict(time=0), dict(batch=0), dict(n_mels=0)])
def test_rejects_bad_sizes(bad):
    kw = dict(n_mels=40, time=5, batch=1) | bad
    with pytest.raises(ValueError):
        F.speech_features(**kw)
