"""Speech detection and segmentation for tone-colour (speaker embedding) extraction.

The reference (se_extractor.get_se) runs silero VAD through whisper_timestamped, keeps speech with
min speech 0.1 s / min silence 1 s, concatenates it and embeds ~10 s chunks. Silero needs torch and
a network download, so we use webrtcvad (Google's WebRTC GMM detector, a tiny offline C extension)
plus two small guards that make it behave on the inputs users actually give us:

* Level normalisation: webrtcvad has fixed internal energy thresholds, so a quiet recording
  (speech peaking at -40 dBFS) is reported as silence. We scale to a fixed loudness first.
* Stationary-noise gate: after normalisation, webrtcvad calls loud enough white noise or hum
  "speech" on every frame. Speech is bursty (syllables, ~30 dB of frame-energy range) while such
  noise is flat, so a frame must also stand clearly above the file's own noise floor.
"""

import numpy as np
import librosa
import webrtcvad

from ovjax.errors import AudioError

_VAD_SR = 16000  # webrtcvad accepts 8/16/32/48 kHz; 16 kHz is its native band (and silero's).

# Frames quieter than this (RMS, dBFS) are digital silence / float rounding: never speech, and
# left out of the loudness estimate so long silent stretches do not inflate the gain.
_ABS_FLOOR_DB = -90.0
# Loud speech frames (95th percentile of non-silent frames) are brought to this RMS level, where
# webrtcvad's thresholds are tuned for; the gain is capped so rounding noise is never blown up.
_TARGET_DB = -20.0
_MAX_GAIN_DB = 60.0
# A speech frame must be this far above the noise floor (10th-percentile frame energy). Stationary
# noise varies by well under 1 dB between 30 ms frames, fan/hum noise by a few dB; speech onsets
# sit 10-40 dB above the floor. Short dips this rule cuts inside speech are re-bridged by the
# min-silence smoothing below.
_FLOOR_MARGIN_DB = 6.0


def _frame_db(x: np.ndarray, n: int) -> np.ndarray:
  frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64)
  return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) index pairs of the True runs of a boolean array."""
  edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def speech_regions(
    audio: np.ndarray,
    sample_rate: int,
    aggressiveness: int = 3,
    frame_ms: int = 30,
    min_speech_s: float = 0.1,
    min_silence_s: float = 1.0,
    pad_s: float = 0.1,
) -> list[tuple[int, int]]:
  """Speech as sorted, non-overlapping (start, end) sample indices at `sample_rate`.

  aggressiveness=3 (webrtcvad's strictest): the min-silence bridging already restores the quiet
  tails that strict mode misses inside an utterance, so being strict costs little speech and keeps
  breaths, clicks and background sounds out of the tone-colour embedding.
  pad_s=0.1: webrtcvad decides per 30 ms frame and tends to clip weak onsets (fricatives, plosive
  bursts) and decaying word ends; a few frames of padding keeps them (silero pads 30 ms by default,
  but its frames are finer).
  """
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1:
    raise ValueError(f"speech_regions expects mono 1-D audio, got shape {audio.shape}")
  if len(audio) == 0:
    return []
  x = audio
  if sample_rate != _VAD_SR:
    x = librosa.resample(audio, orig_sr=sample_rate, target_sr=_VAD_SR, res_type="soxr_hq")
  n = _VAD_SR * frame_ms // 1000
  db = _frame_db(x, n)
  if len(db) == 0:  # shorter than one frame
    return []

  audible = db > _ABS_FLOOR_DB
  if not audible.any():
    return []
  loud = np.percentile(db[audible], 95)
  gain = 10.0 ** (min(_TARGET_DB - loud, _MAX_GAIN_DB) / 20.0)
  # Clipping the loudest peaks after the gain is harmless for detection.
  pcm = (np.clip(x[: len(db) * n] * gain, -1.0, 1.0) * 32767.0).astype("<i2")

  vad = webrtcvad.Vad(aggressiveness)
  voiced = np.array([vad.is_speech(pcm[i * n:(i + 1) * n].tobytes(), _VAD_SR)
                     for i in range(len(db))])
  floor = np.percentile(db, 10)
  speech = voiced & audible & (db > floor + _FLOOR_MARGIN_DB)

  # Drop short blips first so isolated false positives (a click, one noisy frame) are not then
  # bridged into seconds of "speech"; then bridge pauses shorter than min_silence, as silero does.
  frame_s = frame_ms / 1000.0
  min_speech = int(np.ceil(min_speech_s / frame_s - 1e-9))
  min_silence = int(np.ceil(min_silence_s / frame_s - 1e-9))
  runs = [(s, e) for s, e in _runs(speech) if e - s >= min_speech]
  merged: list[list[int]] = []
  for s, e in runs:
    if merged and s - merged[-1][1] < min_silence:
      merged[-1][1] = e
    else:
      merged.append([s, e])

  # Frames -> original-rate samples, padded, clamped, and re-merged where padding made them touch.
  scale = sample_rate * frame_s
  pad = int(round(pad_s * sample_rate))
  out: list[tuple[int, int]] = []
  for s, e in merged:
    start = max(0, int(round(s * scale)) - pad)
    end = min(len(audio), int(round(e * scale)) + pad)
    if out and start <= out[-1][1]:
      out[-1] = (out[-1][0], end)
    else:
      out.append((start, end))
  return out


def embedding_segments(
    audio: np.ndarray,
    sample_rate: int,
    segment_s: float = 10.0,
    use_vad: bool = True,
    name: str = "audio",
) -> list[np.ndarray]:
  """Chunks of `audio` to embed separately (the caller averages the embeddings).

  With VAD the speech regions are concatenated and cut into max(1, round(dur / segment_s))
  near-equal consecutive chunks. The reference asserts >= 1 split and so rejects references with
  under ~5 s of speech; we embed whatever speech there is instead.
  """
  audio = np.asarray(audio, dtype=np.float32)
  if use_vad:
    regions = speech_regions(audio, sample_rate)
    if not regions:
      raise AudioError(f"no speech found in {name}")
    audio = np.concatenate([audio[s:e] for s, e in regions])
  if len(audio) == 0:
    raise AudioError(f"no audio in {name}")
  if not use_vad:
    return [audio]
  num = max(1, int(round(len(audio) / sample_rate / segment_s)))
  return np.array_split(audio, num)
