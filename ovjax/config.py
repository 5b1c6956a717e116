"""Typed, validated model configs read from OpenVoice's official `config.json`.

A typo, a wrong type or an absurd value fails loudly here as one line naming the key (`ovjax:
error: ...` from the CLI), instead of deep inside a model or as a huge allocation. Every field has
one check (`_FIELD_CHECKS`, run by `validate`), with the bounds below; relations between fields
follow in `validate`. Configs are frozen (hashable), so they can be static arguments of jitted
functions.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

from ovjax.errors import CheckpointError

# -- limits ----------------------------------------------------------------------------------------
# Generous: every OpenVoice, VITS and MeloTTS config is far inside them. They exist so that a
# hostile config.json cannot ask for a model (or a parse) of unbounded size.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000
MAX_FILTER_LENGTH = 8192    # The FFT size; win_length and hop_length are at most this.
MAX_MEL_CHANNELS = 1024
MAX_CHANNELS = 4096         # Every channel count (inter, hidden, filter, gin, upsample).
MAX_HEADS = 64
MAX_LAYERS = 64             # Every layer, flow and block count.
MAX_KERNEL_SIZE = 64        # Every kernel size and upsampling rate.
MAX_DILATION = 64
MAX_STAGES = 16             # Entries of the upsample and resblock lists, and of each dilation list.
MAX_SPEAKERS = 100_000
MAX_SYMBOLS = 100_000       # Entries of a text symbol table.
MAX_SYMBOL_CHARS = 64
MAX_NAME_CHARS = 256        # A speaker or text cleaner name.
MAX_CLEANERS = 16
MAX_JSON_BYTES = 4 << 20    # Real configs are a few kB (their symbol tables included).
MAX_JSON_DEPTH = 32
MAX_JSON_INT_DIGITS = 30    # Past int64 already; Python refuses to parse past 4300 anyway.
VERSIONS = ("v1", "v2")
RESBLOCKS = ("1", "2")      # VITS' two HiFi-GAN residual blocks (ovjax implements "1").


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
    """This config with every field type- and bound-checked (lists become tuples), or a one-line
    `CheckpointError` naming the config key; then the relations the layers rely on."""
    c = dataclasses.replace(self, **{name: check(_config_key(name), getattr(self, name))
                                     for name, check in _FIELD_CHECKS.items()})
    if c.resblock != "1":
      raise _error(f"model.resblock {c.resblock!r} is not supported (only '1')")
    if c.win_length > c.filter_length:
      raise _error(f"data.win_length ({c.win_length}) must be at most data.filter_length "
                   f"({c.filter_length})")
    if c.hop_length > c.win_length:
      raise _error(f"data.hop_length ({c.hop_length}) must be at most data.win_length "
                   f"({c.win_length})")
    if len(c.upsample_rates) != len(c.upsample_kernel_sizes):
      raise _error("model.upsample_rates and model.upsample_kernel_sizes differ in length")
    for i, (rate, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)):
      # The transposed conv pads (k - rate) / 2 on each side to upsample exactly by `rate`.
      if k < rate or (k - rate) % 2:
        raise _error(f"model.upsample_kernel_sizes[{i}] ({k}) must be at least "
                     f"model.upsample_rates[{i}] ({rate}) and differ from it by an even number")
    if c.upsample_factor != c.hop_length:
      raise _error(f"model.upsample_rates multiply to {c.upsample_factor}, but data.hop_length "
                   f"is {c.hop_length}")
    if c.upsample_initial_channel >> len(c.upsample_rates) < 1:  # Each stage halves the width.
      raise _error(f"model.upsample_initial_channel ({c.upsample_initial_channel}) must be at "
                   f"least 2 ** {len(c.upsample_rates)} (one halving per upsampling stage)")
    if len(c.resblock_kernel_sizes) != len(c.resblock_dilation_sizes):
      raise _error("model.resblock_kernel_sizes and model.resblock_dilation_sizes differ in "
                   "length")
    # "Same" convolutions keep the length (residual adds need it) only with odd kernels.
    odd = {f"resblock_kernel_sizes[{i}]": k for i, k in enumerate(c.resblock_kernel_sizes)}
    odd |= {"posterior_kernel_size": c.posterior_kernel_size,
            "flow_kernel_size": c.flow_kernel_size}
    for name, k in odd.items():
      if k % 2 == 0:
        raise _error(f"model.{name} must be odd, got {k}")
    if c.inter_channels % 2:
      raise _error("model.inter_channels must be even (the flow splits it in halves)")
    if c.hidden_channels % c.n_heads:
      raise _error(f"model.hidden_channels ({c.hidden_channels}) must be divisible by "
                   f"model.n_heads ({c.n_heads})")
    nyquist = c.sampling_rate / 2
    if c.mel_fmin >= nyquist:
      raise _error(f"data.mel_fmin ({c.mel_fmin}) must be below half of data.sampling_rate "
                   f"({nyquist})")
    if c.mel_fmax is not None and not c.mel_fmin < c.mel_fmax <= nyquist:
      raise _error(f"data.mel_fmax ({c.mel_fmax}) must be above data.mel_fmin and at most half "
                   f"of data.sampling_rate ({nyquist})")
    return c

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


# -- field checks ----------------------------------------------------------------------------------


def _error(message: str) -> CheckpointError:
  return CheckpointError(f"config: {message}")


def _show(value, depth: int = 0) -> str:
  """A short one-line rendering of a config value (a hostile one may be huge or deeply nested,
  and `repr` of an int past 4300 digits raises)."""
  if isinstance(value, (list, tuple)):
    if depth < 2 and len(value) <= 8:
      return "[" + ", ".join(_show(v, depth + 1) for v in value) + "]"
    return f"a list of {len(value)} items"
  if isinstance(value, dict):
    return f"an object of {len(value)} keys"
  if isinstance(value, str):
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
  if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
    return "a huge integer"
  if value is None or isinstance(value, bool):
    return json.dumps(value)  # The JSON spelling: null, true, false.
  if isinstance(value, (int, float)):
    return repr(value)
  return f"a {type(value).__name__}"


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _int(name: str, value, lo: int, hi: int) -> int:
  if not _is_int(value):
    raise _error(f"{name} should be int, got {_show(value)}")
  if not lo <= value <= hi:
    raise _error(f"{name} must be in {lo}..{hi}, got {_show(value)}")
  return value


def _float(name: str, value, lo: float, hi: float, hi_open: bool = False) -> float:
  """A finite number in [lo, hi] (or [lo, hi)); ints are accepted and made floats."""
  if not isinstance(value, (int, float)) or isinstance(value, bool):
    raise _error(f"{name} should be float, got {_show(value)}")
  try:
    number = float(value)
  except OverflowError:  # An int too large for a float.
    number = math.inf
  if not math.isfinite(number):
    raise _error(f"{name} must be finite, got {_show(value)}")
  if not lo <= number <= hi or hi_open and number == hi:
    raise _error(f"{name} must be in [{lo}, {hi}{')' if hi_open else ']'}, got {_show(value)}")
  return number


def _optional_float(name: str, value, lo: float, hi: float) -> float | None:
  return None if value is None else _float(name, value, lo, hi)


def _bool(name: str, value) -> bool:
  if not isinstance(value, bool):  # 0/1 and "true" are not booleans.
    raise _error(f"{name} should be bool (true or false), got {_show(value)}")
  return value


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
  if not isinstance(value, str) or value not in choices:
    raise _error(f"{name} must be one of {', '.join(map(repr, choices))}, got {_show(value)}")
  return value


def _list(name: str, value, min_len: int, max_len: int) -> tuple:
  if not isinstance(value, (list, tuple)):
    raise _error(f"{name} should be a list, got {_show(value)}")
  if not min_len <= len(value) <= max_len:
    raise _error(f"{name} must have {min_len}..{max_len} entries, got {len(value)}")
  return tuple(value)


def _ints(name: str, value, lo: int, hi: int, min_len: int = 1, max_len: int = MAX_STAGES):
  return tuple(_int(f"{name}[{i}]", v, lo, hi)
               for i, v in enumerate(_list(name, value, min_len, max_len)))


def _int_lists(name: str, value, lo: int, hi: int) -> tuple[tuple[int, ...], ...]:
  return tuple(_ints(f"{name}[{i}]", v, lo, hi)
               for i, v in enumerate(_list(name, value, 1, MAX_STAGES)))


def _strings(name: str, value, max_len: int, max_chars: int, min_len: int = 0) -> tuple[str, ...]:
  items = _list(name, value, min_len, max_len)
  for i, s in enumerate(items):
    if not isinstance(s, str):
      raise _error(f"{name}[{i}] should be a string, got {_show(s)}")
    if len(s) > max_chars:
      raise _error(f"{name}[{i}] is longer than {max_chars} characters")
  return items


_size = functools.partial(_int, lo=1)
_channels = functools.partial(_int, lo=1, hi=MAX_CHANNELS)
_layers = functools.partial(_int, lo=1, hi=MAX_LAYERS)
_kernel = functools.partial(_int, lo=1, hi=MAX_KERNEL_SIZE)
_dropout = functools.partial(_float, lo=0.0, hi=1.0, hi_open=True)

# One check per ConverterConfig field: (config key, value) -> the value, typed and bounded.
_FIELD_CHECKS = {
    "sampling_rate": functools.partial(_int, lo=MIN_SAMPLING_RATE, hi=MAX_SAMPLING_RATE),
    "filter_length": functools.partial(_size, hi=MAX_FILTER_LENGTH),
    "hop_length": functools.partial(_size, hi=MAX_FILTER_LENGTH),
    "win_length": functools.partial(_size, hi=MAX_FILTER_LENGTH),
    "n_mel_channels": functools.partial(_size, hi=MAX_MEL_CHANNELS),
    "mel_fmin": functools.partial(_float, lo=0.0, hi=MAX_SAMPLING_RATE / 2),
    "mel_fmax": functools.partial(_optional_float, lo=0.0, hi=MAX_SAMPLING_RATE / 2),
    "add_blank": _bool,
    "inter_channels": _channels,
    "hidden_channels": _channels,
    "resblock": functools.partial(_choice, choices=RESBLOCKS),
    "resblock_kernel_sizes": functools.partial(_ints, lo=1, hi=MAX_KERNEL_SIZE),
    "resblock_dilation_sizes": functools.partial(_int_lists, lo=1, hi=MAX_DILATION),
    "upsample_rates": functools.partial(_ints, lo=1, hi=MAX_KERNEL_SIZE),
    "upsample_initial_channel": _channels,
    "upsample_kernel_sizes": functools.partial(_ints, lo=1, hi=MAX_KERNEL_SIZE),
    "gin_channels": _channels,
    "zero_g": _bool,
    "version": functools.partial(_choice, choices=VERSIONS),
    "filter_channels": _channels,
    "n_heads": functools.partial(_size, hi=MAX_HEADS),
    "n_layers": _layers,
    "kernel_size": _kernel,
    "p_dropout": _dropout,
    "text_symbols": functools.partial(_strings, max_len=MAX_SYMBOLS, max_chars=MAX_SYMBOL_CHARS),
    "posterior_layers": _layers,
    "posterior_kernel_size": _kernel,
    "flow_layers": _layers,
    "flow_kernel_size": _kernel,
    "n_flows": _layers,
}


def _config_key(field: str) -> str:
  """Where a ConverterConfig field lives in config.json."""
  if field in _DATA_KEYS:
    return f"data.{field}"
  return {"version": "_version_", "text_symbols": "ipa_symbols"}.get(field, f"model.{field}")


def _jsonable(v):
  if isinstance(v, tuple):
    return [_jsonable(x) for x in v]
  return v


# -- parsing official configs ----------------------------------------------------------------------


def _sections(cfg) -> tuple[dict[str, Any], dict[str, Any]]:
  if not isinstance(cfg, dict) or "data" not in cfg or "model" not in cfg:
    raise _error("expected the official layout with 'data' and 'model' sections")
  for key in ("data", "model"):
    if not isinstance(cfg[key], dict):
      raise _error(f"'{key}' must be a JSON object, got {_show(cfg[key])}")
  return cfg["data"], cfg["model"]


def _n_speakers(data) -> int:
  return _int("data.n_speakers", data.get("n_speakers", 0), 0, MAX_SPEAKERS)


def converter_config_from_official(cfg: dict[str, Any]) -> ConverterConfig:
  """Parse an official converter config.json dict."""
  data, model = _sections(cfg)
  n_speakers = _n_speakers(data)
  if n_speakers != 0:
    raise _error(f"n_speakers is {n_speakers}: this is a base speaker TTS config, not a "
                 "tone-colour converter")
  return ConverterConfig(**_vits_fields(cfg, data, model)).validate()


def _vits_fields(cfg, data, model) -> dict[str, Any]:
  """The ConverterConfig fields of an official config (both kinds share them), as found there;
  `ConverterConfig.validate` checks them."""
  kwargs = {key: data[key] for key in _DATA_KEYS if key in data}
  for key, value in model.items():
    if key in _MODEL_KEYS or key in _OVJAX_MODEL_KEYS or key == "zero_g":
      kwargs[key] = value
    elif key not in _IGNORED_MODEL_KEYS:
      raise _error(f"unknown model key {_show(key)}")
  if "_version_" in cfg:
    kwargs["version"] = cfg["_version_"]
  if cfg.get("ipa_symbols") is not None:
    kwargs["text_symbols"] = cfg["ipa_symbols"]
  return kwargs


# -- reading JSON ----------------------------------------------------------------------------------


class _Absurd(ValueError):
  """A JSON number no config holds (raised from inside the parser)."""


def _json_int(text: str) -> int:
  if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
    raise _Absurd(f"an integer of {len(text.lstrip('-'))} digits")
  return int(text)


def _json_float(text: str) -> float:
  value = float(text)
  if not math.isfinite(value):
    raise _Absurd(f"a number out of float range ({text[:20]})")
  return value


def _json_constant(text: str):
  raise _Absurd(f"{text} (not a JSON number)")


_TOO_DEEP = object()


def _too_deep(value, limit: int) -> bool:
  """Whether containers nest more than `limit` levels (iteratively: no recursion to exhaust)."""
  stack = [(value, 1)] if isinstance(value, (dict, list)) else []
  while stack:
    item, depth = stack.pop()
    if depth > limit:
      return True
    children = item.values() if isinstance(item, dict) else item
    stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
  return False


def read_json(path: Path) -> dict[str, Any]:
  """A JSON object from a file. Refused, as one line naming the file: a missing or unreadable
  file, one over MAX_JSON_BYTES, invalid JSON, NaN or Infinity, numbers out of float range or
  integers over MAX_JSON_INT_DIGITS digits, nesting deeper than MAX_JSON_DEPTH, and a top level
  that is not an object."""
  try:
    with open(path, "rb") as f:
      raw = f.read(MAX_JSON_BYTES + 1)
  except FileNotFoundError:
    raise CheckpointError(f"{path}: no such file")
  except OSError as e:  # A folder, no permission, an I/O error.
    raise CheckpointError(f"{path}: cannot read ({e.strerror or type(e).__name__})")
  if len(raw) > MAX_JSON_BYTES:
    raise CheckpointError(f"{path}: larger than {MAX_JSON_BYTES >> 20} MiB; not a config")
  try:
    value = json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                       parse_constant=_json_constant)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})")
  except _Absurd as e:
    raise CheckpointError(f"{path}: not a config: it holds {e}")
  except RecursionError:  # The C parser's own depth limit (about 1000 levels).
    value = _TOO_DEEP
  if value is _TOO_DEEP or _too_deep(value, MAX_JSON_DEPTH):
    raise CheckpointError(f"{path}: not a config: nested more than {MAX_JSON_DEPTH} levels deep")
  if not isinstance(value, dict):
    raise CheckpointError(f"{path}: expected a JSON object, got {_show(value)}")
  return value


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

  def validate(self) -> "BaseTTSConfig":
    """This config with every field checked and lists made tuples (see
    `ConverterConfig.validate`), or a one-line `CheckpointError` naming the config key."""
    if not isinstance(self.vits, ConverterConfig):
      raise _error(f"vits should be a ConverterConfig, got {_show(self.vits)}")
    n_speakers = _int("data.n_speakers", self.n_speakers, 1, MAX_SPEAKERS)
    symbols = _strings("symbols", self.symbols, MAX_SYMBOLS, MAX_SYMBOL_CHARS, min_len=1)
    if self.n_vocab != len(symbols):
      raise _error(f"n_vocab ({_show(self.n_vocab)}) must be the number of symbols "
                   f"({len(symbols)})")
    speakers = _list("speakers", self.speakers, 1, MAX_SPEAKERS)
    for entry in speakers:
      name, sid = entry if isinstance(entry, (list, tuple)) and len(entry) == 2 else (None, None)
      if not (isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _is_int(sid)
              and 0 <= sid < n_speakers):
        raise _error(f"'speakers' must map style names to ids below {n_speakers}, got "
                     f"{_show(entry)}")
    return dataclasses.replace(
        self, vits=self.vits.validate(), symbols=symbols,
        speakers=tuple(tuple(e) for e in speakers),
        text_cleaners=_strings("data.text_cleaners", self.text_cleaners, MAX_CLEANERS,
                               MAX_NAME_CHARS, min_len=1),
        dp_filter_channels=_channels("dp_filter_channels", self.dp_filter_channels),
        dp_kernel_size=_kernel("dp_kernel_size", self.dp_kernel_size),
        dp_p_dropout=_dropout("model.dp_p_dropout", self.dp_p_dropout),
        sdp_kernel_size=_kernel("sdp_kernel_size", self.sdp_kernel_size),
        sdp_n_flows=_layers("sdp_n_flows", self.sdp_n_flows))

  def to_official(self) -> dict[str, Any]:
    cfg = self.vits.to_official()
    cfg["data"].update(n_speakers=self.n_speakers, text_cleaners=list(self.text_cleaners),
                       cleaned_text=True)
    if not self.vits.zero_g:  # The official base layout has no zero_g; keep it only when set.
      cfg["model"].pop("zero_g")
    if self.dp_p_dropout != 0.5:
      cfg["model"]["dp_p_dropout"] = self.dp_p_dropout
    cfg.pop("ipa_symbols", None)
    cfg["symbols"] = list(self.symbols)
    cfg["speakers"] = dict(self.speakers)
    return cfg


def base_tts_config_from_official(cfg: dict[str, Any]) -> BaseTTSConfig:
  """Parse an official base speaker config.json (with `symbols` and `speakers`)."""
  data, model = _sections(cfg)
  n_speakers = _n_speakers(data)
  if n_speakers == 0:
    raise _error("n_speakers is 0: this is a tone-colour converter config, not a base speaker TTS")
  symbols = cfg.get("symbols")
  if not isinstance(symbols, (list, tuple)) or not symbols:
    raise _error("a base speaker config needs a 'symbols' list (its text symbol table)")
  speakers = cfg.get("speakers", {"default": 0})
  if not isinstance(speakers, dict):
    raise _error(f"'speakers' must map style names to ids below {n_speakers}, got "
                 f"{_show(speakers)}")
  model = dict(model)
  tts_kwargs = {"dp_p_dropout": model.pop("dp_p_dropout")} if "dp_p_dropout" in model else {}
  vits = ConverterConfig(**_vits_fields({k: v for k, v in cfg.items() if k != "ipa_symbols"},
                                        data, model))
  return BaseTTSConfig(
      vits=vits, n_vocab=len(symbols), n_speakers=n_speakers, symbols=symbols,
      speakers=tuple(speakers.items()), text_cleaners=data.get("text_cleaners", ["cjke_cleaners2"]),
      **tts_kwargs).validate()
