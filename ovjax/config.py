"""Typed, validated model configs read from OpenVoice's official `config.json`.

A typo or a wrong type fails loudly here, with the key named, instead of deep inside a model.
Configs are frozen (hashable), so they can be static arguments of jitted functions.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ovjax.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class ConverterConfig:
  """The tone-colour converter (OpenVoice `SynthesizerTrn` with n_speakers = 0).

  Also the part of a base speaker TTS config that both models share (`BaseTTSConfig.vits`): audio,
  posterior encoder, flow, HiFi-GAN and the text encoder's hyper-parameters. The converter's text
  encoder (over `text_symbols`, IPA from espeak-ng) exists only in training; inference never loads it.
  """
  sampling_rate: int = 22050
  filter_length: int = 1024
  hop_length: int = 256
  win_length: int = 1024
  # The training loss's log-mel (VITS' data.n_mel_channels, mel_fmin, mel_fmax; fmax None = sr/2).
  n_mel_channels: int = 80
  mel_fmin: float = 0.0
  mel_fmax: float | None = None
  add_blank: bool = True
  inter_channels: int = 192
  hidden_channels: int = 192
  resblock: str = "1"
  resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
  resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
  upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
  upsample_initial_channel: int = 512
  upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
  gin_channels: int = 256
  zero_g: bool = False
  version: str = "v1"
  # Text encoder (the base TTS's enc_p; the converter's training-only IPA encoder).
  filter_channels: int = 768
  n_heads: int = 2
  n_layers: int = 6
  kernel_size: int = 3
  p_dropout: float = 0.1
  text_symbols: tuple[str, ...] = ()  # The converter's IPA table (config key `ipa_symbols`).
  # Fixed in the reference's code rather than its config; ovjax reads them from `model` too (for
  # small experiments) and writes them only when they differ from the reference's.
  posterior_layers: int = 16
  posterior_kernel_size: int = 5
  flow_layers: int = 4
  flow_kernel_size: int = 5
  n_flows: int = 4

  @property
  def spec_channels(self) -> int:
    return self.filter_length // 2 + 1

  @property
  def upsample_factor(self) -> int:
    out = 1
    for r in self.upsample_rates:
      out *= r
    return out

  def validate(self) -> "ConverterConfig":
    if self.resblock != "1":
      raise CheckpointError(f"config: resblock {self.resblock!r} is not supported (only '1')")
    if self.upsample_factor != self.hop_length:
      raise CheckpointError(f"config: upsample_rates multiply to {self.upsample_factor}, "
                            f"but hop_length is {self.hop_length}")
    if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
      raise CheckpointError("config: upsample_rates and upsample_kernel_sizes differ in length")
    if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
      raise CheckpointError("config: resblock_kernel_sizes and resblock_dilation_sizes differ")
    for name in ("inter_channels", "hidden_channels", "gin_channels", "upsample_initial_channel"):
      if getattr(self, name) <= 0:
        raise CheckpointError(f"config: {name} must be positive")
    if self.inter_channels % 2:
      raise CheckpointError("config: inter_channels must be even (the flow splits it in halves)")
    return self

  def to_official(self) -> dict[str, Any]:
    """The official config.json layout (what `from_official` reads)."""
    cfg = {
        "data": {k: getattr(self, k) for k in _DATA_KEYS} | {"n_speakers": 0},
        "model": {k: _jsonable(getattr(self, k)) for k in _MODEL_KEYS} | {"zero_g": self.zero_g},
    }
    defaults = ConverterConfig()
    cfg["model"].update({k: getattr(self, k) for k in _OVJAX_MODEL_KEYS
                         if getattr(self, k) != getattr(defaults, k)})
    if self.version != "v1":
      cfg["_version_"] = self.version
    if self.text_symbols:
      cfg["ipa_symbols"] = list(self.text_symbols)
    return cfg


_DATA_KEYS = ("sampling_rate", "filter_length", "hop_length", "win_length", "n_mel_channels",
              "mel_fmin", "mel_fmax", "add_blank")
_MODEL_KEYS = ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers",
               "kernel_size", "p_dropout", "resblock", "resblock_kernel_sizes",
               "resblock_dilation_sizes", "upsample_rates", "upsample_initial_channel",
               "upsample_kernel_sizes", "gin_channels")
_OVJAX_MODEL_KEYS = ("posterior_layers", "posterior_kernel_size", "flow_layers", "flow_kernel_size",
                     "n_flows")
# Present in official configs, used only by training-time or dead code of the reference.
_IGNORED_MODEL_KEYS = {"n_layers_q", "use_spectral_norm", "n_layers_trans_flow",
                       "contentvec_final_proj", "use_transformer_flow", "use_sdp",
                       "use_noise_scaled_mas", "use_mel_posterior_encoder",
                       "use_duration_discriminator"}


def _jsonable(v):
  if isinstance(v, tuple):
    return [_jsonable(x) for x in v]
  return v


def _tuplify(v):
  if isinstance(v, list):
    return tuple(_tuplify(x) for x in v)
  return v


def _typed(name: str, value, default):
  """Check `value` has the type of the field's default (ints stay ints, lists become tuples,
  floats accept ints; a None default (optional float) accepts None or a number)."""
  value = _tuplify(value)
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  ok = (isinstance(value, bool) if isinstance(default, bool) else
        isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int) else
        number if isinstance(default, float) else
        value is None or number if default is None else
        isinstance(value, str) if isinstance(default, str) else
        isinstance(value, tuple) if isinstance(default, tuple) else True)
  if not ok:
    kind = "number" if default is None else type(default).__name__
    raise CheckpointError(f"config: {name} should be {kind}, got {value!r}")
  return float(value) if number and isinstance(default, float) else value


def _sections(cfg) -> tuple[dict[str, Any], dict[str, Any]]:
  try:
    data, model = cfg["data"], cfg["model"]
  except (KeyError, TypeError):
    raise CheckpointError("config: expected the official layout with 'data' and 'model' sections")
  if not isinstance(data, dict) or not isinstance(model, dict):
    raise CheckpointError("config: 'data' and 'model' must be JSON objects")
  return data, model


def converter_config_from_official(cfg: dict[str, Any]) -> ConverterConfig:
  """Parse an official converter config.json dict."""
  data, model = _sections(cfg)
  if data.get("n_speakers", 0) != 0:
    raise CheckpointError(f"config: n_speakers is {data.get('n_speakers')}: this is a base "
                          "speaker TTS config, not a tone-colour converter")
  return ConverterConfig(**_vits_fields(cfg, data, model)).validate()


def _vits_fields(cfg, data, model) -> dict[str, Any]:
  """The ConverterConfig fields of an official config (both kinds share them)."""
  defaults = ConverterConfig()
  kwargs = {}
  for key in _DATA_KEYS:
    if key in data:
      kwargs[key] = _typed(f"data.{key}", data[key], getattr(defaults, key))
  for key, value in model.items():
    if key in _MODEL_KEYS or key in _OVJAX_MODEL_KEYS or key == "zero_g":
      kwargs[key] = _typed(f"model.{key}", value, getattr(defaults, key))
    elif key not in _IGNORED_MODEL_KEYS:
      raise CheckpointError(f"config: unknown model key {key!r}")
  kwargs["version"] = str(cfg.get("_version_", "v1"))
  symbols = cfg.get("ipa_symbols")
  if symbols is not None:
    if not isinstance(symbols, list) or not all(isinstance(x, str) for x in symbols):
      raise CheckpointError("config: 'ipa_symbols' must be a list of strings")
    kwargs["text_symbols"] = tuple(symbols)
  return kwargs


def read_json(path: Path) -> dict[str, Any]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f"{path}: no such file")
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})")


@dataclasses.dataclass(frozen=True)
class BaseTTSConfig:
  """The VITS base speaker TTS (OpenVoice `SynthesizerTrn` with n_speakers > 0).

  `vits` holds what it shares with the converter (audio, posterior encoder, flow, HiFi-GAN, text
  encoder hyper-parameters).
  """
  vits: ConverterConfig
  n_vocab: int
  n_speakers: int
  symbols: tuple[str, ...]
  speakers: tuple[tuple[str, int], ...]
  text_cleaners: tuple[str, ...] = ("cjke_cleaners2",)
  # Fixed in the reference's code rather than its config.
  dp_filter_channels: int = 256
  dp_kernel_size: int = 3
  dp_p_dropout: float = 0.5  # Both duration predictors' dropout (config key `dp_p_dropout`).
  sdp_kernel_size: int = 3
  sdp_n_flows: int = 4

  @property
  def add_blank(self) -> bool:
    return self.vits.add_blank

  @property
  def speaker_ids(self) -> dict[str, int]:
    return dict(self.speakers)

  @property
  def frontend(self) -> str:
    """'cjke' for the official v1 cleaners, 'espeak' for IPA from espeak-ng."""
    return "espeak" if "espeak" in self.text_cleaners else "cjke"

  def to_official(self) -> dict[str, Any]:
    cfg = self.vits.to_official()
    cfg["data"].update(n_speakers=self.n_speakers, text_cleaners=list(self.text_cleaners),
                       cleaned_text=True)
    cfg["model"].pop("zero_g", None)
    if self.dp_p_dropout != 0.5:
      cfg["model"]["dp_p_dropout"] = self.dp_p_dropout
    cfg.pop("ipa_symbols", None)
    cfg["symbols"] = list(self.symbols)
    cfg["speakers"] = dict(self.speakers)
    return cfg


def base_tts_config_from_official(cfg: dict[str, Any]) -> BaseTTSConfig:
  """Parse an official base speaker config.json (with `symbols` and `speakers`)."""
  data, model = _sections(cfg)
  n_speakers = data.get("n_speakers", 0)
  if not isinstance(n_speakers, int) or n_speakers <= 0:
    raise CheckpointError("config: n_speakers is 0: this is a tone-colour converter config, "
                          "not a base speaker TTS")
  symbols = cfg.get("symbols")
  if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
    raise CheckpointError("config: a base speaker config needs a 'symbols' list (its text "
                          "symbol table)")
  speakers = cfg.get("speakers", {"default": 0})
  if not isinstance(speakers, dict) or not all(
      isinstance(v, int) and 0 <= v < n_speakers for v in speakers.values()):
    raise CheckpointError(f"config: 'speakers' must map style names to ids below {n_speakers}")
  model = dict(model)
  tts_kwargs = {}
  if "dp_p_dropout" in model:
    tts_kwargs["dp_p_dropout"] = _typed("model.dp_p_dropout", model.pop("dp_p_dropout"), 0.5)
  vits = ConverterConfig(**_vits_fields({k: v for k, v in cfg.items() if k != "ipa_symbols"},
                                        data, model)).validate()
  cleaners = data.get("text_cleaners", ["cjke_cleaners2"])
  return BaseTTSConfig(
      vits=vits, n_vocab=len(symbols), n_speakers=n_speakers, symbols=tuple(symbols),
      speakers=tuple(speakers.items()), text_cleaners=tuple(cleaners), **tts_kwargs)
