"""Base speakers: the VITS base TTS of OpenVoice v1 (`BaseSpeakerTTS`), and espeak-ng itself as a
zero-weight base speaker (`EspeakSpeaker`) for any language it speaks."""
from __future__ import annotations

import io
import shutil
import warnings
import subprocess
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ovjax import batching, precision, sharding
from ovjax.audio.io import write_wav
from ovjax.checkpoint.store import load_base_tts, load_tone_color
from ovjax.config import BaseTTSConfig
from ovjax.errors import OvjaxError, TextError
from ovjax.layers.conv import fold_weight_norm
from ovjax.models import base_tts as tts_model
from ovjax import text as text_frontend

PAUSE_S = 0.05  # Silence after every sentence piece (divided by speed), as the reference.
_DEFAULT_LANGUAGE = {"cjke": "English", "espeak": "en-us"}


def join_pieces(pieces: Sequence[np.ndarray], sample_rate: int, speed: float) -> np.ndarray:
  """Each piece followed by 50 ms / speed of silence (the last one too, like the reference)."""
  pause = np.zeros(int(sample_rate * PAUSE_S / speed), np.float32)
  return np.concatenate([part for piece in pieces for part in (piece, pause)])


def check_options(speed=1.0, noise_scale=0.667, noise_scale_w=0.6, sdp_ratio=0.2) -> dict:
  """The synthesis numbers as floats, each checked against `batching.NUMBER_RANGES` (OvjaxError
  naming the option otherwise): the same ranges as the CLI and batch jobs."""
  given = dict(speed=speed, noise_scale=noise_scale, noise_scale_w=noise_scale_w,
               sdp_ratio=sdp_ratio)
  return {name: batching.check_number(name, value) for name, value in given.items()}


def check_seeds(seed, n: int, what: str = "texts"):
  """An int seed, or a list of n of them, each in [0, batching.SEED_LIMIT) (OvjaxError)."""
  if isinstance(seed, (list, tuple, np.ndarray)):
    if len(seed) != n:
      raise OvjaxError(f"{len(seed)} seeds for {n} {what}")
    return [batching.check_seed(s) for s in seed]
  return batching.check_seed(seed)


class BaseSpeakerTTS:
  """Text -> speech in one of the base speaker's styles (OpenVoice v1 `BaseSpeakerTTS`)."""

  def __init__(self, config: BaseTTSConfig, params, path=None, max_batch: int = 8,
               devices=None, dtype: str = "float32"):
    self.config = config
    self.path = None if path is None else Path(path)
    self.mesh = sharding.data_mesh(devices)
    self.n_devices = self.mesh.devices.size
    self.max_batch = max(max_batch, self.n_devices)
    self.params = sharding.replicate(fold_weight_norm(jax.tree.map(np.asarray, params)), self.mesh)
    # dtype: the synthesis stage's (flow and decoder) compute dtype. The text encoder and the
    # duration predictors stay float32, so bfloat16 never changes an utterance's length.
    self.compute_dtype = precision.compute_dtype(dtype)
    self.synthesis_params = precision.cast_floating(self.params, self.compute_dtype)

  @classmethod
  def from_pretrained(cls, path, **kwargs) -> "BaseSpeakerTTS":
    config, params = load_base_tts(path)
    return cls(config, params, path=path, **kwargs)

  @property
  def sampling_rate(self) -> int:
    return self.config.vits.sampling_rate

  @property
  def styles(self) -> list[str]:
    return list(self.config.speaker_ids)

  @property
  def default_language(self) -> str:
    return _DEFAULT_LANGUAGE[self.config.frontend]

  def resolve_style(self, style: str | None) -> str:
    """The style to speak in ('default' unless given); an unknown one is a TextError naming the
    styles the model has."""
    if style is None:
      style = "default" if "default" in self.styles else self.styles[0]
    self.speaker_id(style)
    return style

  def resolve_language(self, language: str | None) -> str:
    """The language to speak (the model's default unless given), checked against the model's
    front end, so a language it lacks is reported as such, not as "nothing speakable"."""
    language = language or self.default_language
    if self.config.frontend == "cjke":
      try:
        text_frontend.cjke_mark(language)
      except TextError:
        raise TextError(f"language {language!r}: this model speaks English and Chinese only "
                        "(cjke front end); espeak-ng speaks other languages "
                        "(`--base espeak:VOICE`)") from None
    else:
      from ovjax.text import espeak
      espeak.resolve_language(language)
    return language

  def speaker_id(self, style: str) -> int:
    ids = self.config.speaker_ids
    if style not in ids:
      raise TextError(f"unknown style {style!r}; this model has: {', '.join(ids)}")
    return ids[style]

  def text_to_pieces(self, text: str, language: str | None = None) -> list[list[int]]:
    """Text -> the id sequences of its sentence pieces (the reference's splitting)."""
    language = self.resolve_language(language)
    pieces = text_frontend.split_sentences(text, language)
    out = []
    for piece in pieces:
      try:
        out.append(text_frontend.text_to_sequence(piece, language, self.config.symbols,
                                                  self.config.add_blank, self.config.frontend))
      except TextError:
        continue  # A piece of punctuation alone; the text as a whole is checked below.
    if not out:
      raise TextError(f"nothing speakable in {text[:40]!r}")
    return out

  def infer_ids(self, sequences: Sequence[Sequence[int]], style: str = "default",
                speed: float = 1.0, noise_scale: float = 0.667, noise_scale_w: float = 0.6,
                sdp_ratio: float = 0.2, seed: int = 0) -> list[np.ndarray]:
    """Id sequences -> waveforms, in token-length buckets. seed: an int (item i's noise from
    fold_in(key(seed), i)) or one seed path per item (see `batching.item_keys`)."""
    options = check_options(speed, noise_scale, noise_scale_w, sdp_ratio)
    speed, noise_scale, noise_scale_w, sdp_ratio = options.values()
    sid = self.speaker_id(style)
    hop = self.config.vits.hop_length
    all_keys = batching.item_keys(seed, len(sequences))
    outputs: list[np.ndarray | None] = [None] * len(sequences)
    plan = batching.plan_batches([len(s) for s in sequences], self.max_batch, minimum=16)
    for bucket, items in plan:
      size = batching.bucket_batch(len(items), self.max_batch, self.n_devices)
      idx = items + [items[0]] * (size - len(items))
      ids = np.zeros((size, bucket), np.int32)
      lengths = np.zeros(size, np.int32)
      for row, i in enumerate(idx):
        ids[row, :len(sequences[i])] = sequences[i]
        lengths[row] = len(sequences[i])
      put = lambda x: sharding.shard_batch(x, self.mesh)
      keys = put(all_keys[np.asarray(idx)])
      sids = put(np.full(size, sid, np.int32))
      stage1 = tts_model.predict_durations(
          self.params, put(ids), put(lengths), sids, keys, jnp.float32(noise_scale_w),
          jnp.float32(sdp_ratio), jnp.float32(1.0 / speed), config=self.config)
      y_lengths = np.asarray(stage1[1])
      frames = batching.fine_bucket_frames(int(y_lengths.max()))
      audio = np.asarray(tts_model.synthesize(
          self.synthesis_params, *stage1, sids, keys, jnp.float32(noise_scale), frames=frames,
          config=self.config, dtype=self.compute_dtype))
      for row, i in enumerate(items):
        outputs[i] = audio[row, :y_lengths[row] * hop]
    return outputs

  def synthesize(self, texts, speaker: str = "default", language: str | None = None,
                 speed: float = 1.0, noise_scale: float = 0.667, noise_scale_w: float = 0.6,
                 sdp_ratio: float = 0.2, seed=0):
    """One text or a list -> waveform(s) at the model's rate; every sentence piece of every text
    is synthesised in one bucketed batch stream. seed: an int (piece j of text k draws its noise
    from key(seed) folded with k then j, so text k gets the same audio in any batch) or one int
    per text (text k then gets what `synthesize(text_k, seed=seed[k])` gives). The numbers must
    lie in `batching.NUMBER_RANGES`, seeds in [0, 2**32), each text within
    `batching.MAX_TEXT_CHARS` characters (OvjaxError / TextError, before any work)."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    check_options(speed, noise_scale, noise_scale_w, sdp_ratio)  # Before the text front end.
    check_seeds(seed, len(texts))
    for k, t in enumerate(texts):
      if not isinstance(t, str):
        raise TextError(f"text {k}: expected a string, got {type(t).__name__}")
      batching.check_text(t, "text" if single else f"text {k}")
    pieces = [self.text_to_pieces(t, language) for t in texts]
    out = self.synthesize_pieces(pieces, speaker, speed, noise_scale, noise_scale_w, sdp_ratio,
                                 seed)
    return out[0] if single else out

  def synthesize_pieces(self, pieces, style: str = "default", speed: float = 1.0,
                        noise_scale: float = 0.667, noise_scale_w: float = 0.6,
                        sdp_ratio: float = 0.2, seed=0) -> list[np.ndarray]:
    """`synthesize` of texts already split by `text_to_pieces`: one list of id sequences per
    text -> one waveform per text (seed as in `synthesize`)."""
    seed = check_seeds(seed, len(pieces))
    if isinstance(seed, int):
      text_paths = [(seed, k) for k in range(len(pieces))]
    else:
      text_paths = [(s, 0) for s in seed]
    flat = [p for ps in pieces for p in ps]
    paths = [path + (j,) for path, ps in zip(text_paths, pieces) for j in range(len(ps))]
    waves = self.infer_ids(flat, style, speed, noise_scale, noise_scale_w, sdp_ratio, paths)
    out, start = [], 0
    for ps in pieces:
      out.append(join_pieces(waves[start:start + len(ps)], self.sampling_rate, speed))
      start += len(ps)
    return out

  def tts(self, text: str, output_path=None, speaker: str = "default", language=None,
          speed: float = 1.0, **kwargs):
    """OpenVoice's `BaseSpeakerTTS.tts`; writes a float32 WAV when output_path is given."""
    audio = self.synthesize(text, speaker, language, speed, **kwargs)
    if output_path is not None:
      write_wav(output_path, audio, self.sampling_rate)
    return audio

  def tone_color_file(self, style: str, language: str | None = None) -> Path | None:
    """The base folder's embedding for a style: OpenVoice v1 ships `en_default_se.pth` (style
    "default"), `en_style_se.pth` (every other style) and `zh_default_se.pth`."""
    if self.path is None:
      return None
    files = sorted(self.path.glob("*_se.pth")) + sorted(self.path.glob("*_se.npy"))
    if not files:
      return None
    wanted = "default" if style == "default" else "style"
    for f in files:
      if f.stem.endswith(f"_{wanted}_se"):
        return f
    return files[0] if len(files) == 1 else None

  def source_se(self, style: str) -> np.ndarray | None:
    f = self.tone_color_file(style)
    return None if f is None else load_tone_color(f, self.config.vits.gin_channels)


class EspeakSpeaker:
  """espeak-ng as a base speaker: no weights, every language espeak-ng speaks. Its tone colour is
  extracted from its own output, so the converter can move it to any reference voice."""

  sampling_rate = 22050

  def __init__(self, voice: str = "en-us"):
    if shutil.which("espeak-ng") is None:
      raise OvjaxError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    voice = voice.strip().lower()
    from ovjax.text import espeak
    if voice not in espeak.espeak_languages() and voice not in espeak.LANGUAGE_ALIASES:
      raise TextError(f"espeak-ng has no voice {voice!r}")
    self.voice = espeak.LANGUAGE_ALIASES.get(voice, voice)

  def synthesize(self, texts, speed: float = 1.0, **_):
    single = isinstance(texts, str)
    speed = batching.check_number("speed", speed)
    texts = [texts] if single else list(texts)
    for k, t in enumerate(texts):
      batching.check_text(t, "text" if single else f"text {k}")
    out = [self._speak(t, speed) for t in texts]
    return out[0] if single else out

  def _speak(self, text: str, speed: float) -> np.ndarray:
    import soundfile as sf
    import librosa
    speed = batching.check_number("speed", speed)
    if not isinstance(text, str) or not text.strip():
      raise TextError("empty text: nothing to speak")
    # espeak-ng would read punctuation-only text by name ("ellipsis"); refuse it like the TTS.
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      text_frontend.text_to_sequence(text, self.voice, frontend="espeak")
    # 175 words per minute is espeak-ng's own default rate.
    cmd = ["espeak-ng", "-v", self.voice, "-s", str(int(round(175 * speed))), "--stdout"]
    result = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
      msg = result.stderr.decode("utf-8", "replace").strip().splitlines()
      raise TextError(f"espeak-ng failed: {msg[0] if msg else 'no audio'}")
    audio, sr = sf.read(io.BytesIO(result.stdout), dtype="float32")
    audio = librosa.resample(audio, orig_sr=sr, target_sr=self.sampling_rate, res_type="soxr_hq")
    if np.max(np.abs(audio), initial=0.0) < 1e-4:
      raise TextError(f"nothing speakable in {text[:40]!r}")
    return audio.astype(np.float32)
