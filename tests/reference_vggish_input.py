"""An independent, deliberately plain re-statement of Google's VGGish input pipeline.

Follows tensorflow/models research/audioset/vggish/mel_features.py and
vggish_input.py (Apache-2.0) step by step with explicit loops and a full
complex FFT, so it shares no code with tagger.embedding.vggish.frontend. Test oracle only.
"""

import math

import numpy as np


def reference_log_mel(y):
    """Log-mel spectrogram of a 16 kHz waveform, shape (n_frames, 64), float64."""
    y = np.asarray(y, dtype=np.float64)
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(y) - win) // hop
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / win) for i in range(win)])
    spectrum = np.empty((n_frames, nfft // 2 + 1))
    for i in range(n_frames):
        frame = np.zeros(nfft)
        frame[:win] = y[i * hop : i * hop + win] * window
        spectrum[i] = np.abs(np.fft.fft(frame))[: nfft // 2 + 1]

    def mel(hz):
        return 1127.0 * math.log(1.0 + hz / 700.0)

    nyquist = 8000.0
    bins_hz = [nyquist * k / (nfft // 2) for k in range(nfft // 2 + 1)]
    edges = [mel(125.0) + (mel(7500.0) - mel(125.0)) * j / 65 for j in range(66)]
    weights = np.zeros((nfft // 2 + 1, 64))
    for m in range(64):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(1, nfft // 2 + 1):  # the DC bin stays zero
            b = mel(bins_hz[k])
            if lo < b <= centre:
                weights[k, m] = (b - lo) / (centre - lo)
            elif centre < b < hi:
                weights[k, m] = (hi - b) / (hi - centre)
    return np.log(spectrum @ weights + 0.01)


def reference_examples(y, hop_frames=96):
    """Patches of 96 frames every ``hop_frames`` frames, shape (T, 96, 64)."""
    log_mel = reference_log_mel(y)
    n = 1 + (len(log_mel) - 96) // hop_frames
    return np.stack([log_mel[i * hop_frames : i * hop_frames + 96] for i in range(n)])
