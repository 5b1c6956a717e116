"""Front end B: IPA from espeak-ng (through phonemizer) for any language espeak-ng speaks.

The official v1 weights only understand front end A (`cjke.py`); this front end is for models
trained on espeak IPA (ovjax's own base TTS or a fine-tune). The model's config carries its
symbol table; `DEFAULT_ESPEAK_SYMBOLS` is the table new models should start from.

Needs the Debian package `espeak-ng` (the shared library `libespeak-ng1`) and the PyPI package
`phonemizer`. Both are imported/loaded lazily, so the cjke front end works without them.

Notes on espeak-ng 1.51 (Debian 12):
* Its `cmn` voice is broken: the dictionary turns Han characters into tone-numbered pinyin, which
  that voice then reads with English rules ("今天" -> "jin one tian one"). We detect that and use
  the `cmn-latn-pinyin` voice instead, which reads the same pinyin correctly (latin text inside
  Chinese is then read as pinyin too).
* `ja` reads kana only; kanji are read as "Chinese letter". Pass kana for Japanese.
* Punctuation outside phonemizer's default set (CJK full stops, Arabic comma, Devanagari danda)
  would be silently lost, so it is mapped to ASCII first (`normalize_punctuation`).
"""

from __future__ import annotations

import functools
import logging
import re

from ovjax.errors import TextError
from ovjax.text.symbols import PAD

# ------------------------------------------------------------------------------------------
# The default symbol table
# ------------------------------------------------------------------------------------------

# Everything phonemizer keeps with preserve_punctuation=True (its default marks), plus the hyphen
# espeak writes inside some words (fr "ʒə-", ko "ps-", cmn "kˈo-1").
_PUNCTUATION = ';:,.!?¡¿—…"«»“”(){}[]-'
# Tone numbers: espeak writes tones as digits for cmn, yue, vi (e.g. "tɕˈi5n", "bˈaː6n").
_DIGITS = "0123456789"
# Plain latin letters double as IPA letters (a, b, d, ... ; espeak also emits c, q, r, x, y).
_LATIN = "abcdefghijklmnopqrstuvwxyz"
# The IPA chart, minus letters already in _LATIN:
_IPA_CONSONANTS = "ʈɖɟɡɢʔɱɳɲŋɴʙʀⱱɾɽɸβθðʃʒʂʐçʝɣχʁħʕɦɬɮʋɹɻɰɭʎʟ"
_IPA_NON_PULMONIC = "ʘǀǃǂǁɓɗʄɠʛ"
_IPA_OTHER = "ʍɥʜʢʡɕʑɺɧʧʤʦʣ"
_IPA_VOWELS = "ɨʉɯɪʏʊøɘɵɤəɛœɜɞʌɔæɐɶɑɒɚɝɫᵻᵿä"
# Stress, length, linking and intonation-group marks.
_SUPRASEGMENTALS = "ˈˌːˑ˘|‖‿"
# Modifier letters: aspiration, palatalisation, labialisation, velarisation, pharyngealisation,
# rhoticity, nasal/lateral release, ejective, and espeak's "ᵝ" (ja compressed u).
_MODIFIERS = "ʰʱʲʷˠˤ˞ⁿˡʼᵝ"
# Combining diacritics (each its own symbol, so "ɔ̃" is two ids): nasal, centralised, voiceless,
# unreleased, raised, lowered, advanced, retracted, breathy, syllabic, dental, voiced,
# non-syllabic, creaky, velarised, apical, laminal, extra short, tie bars.
_COMBINING = ("\u0303\u0308\u030a\u031a\u031d\u031e\u031f\u0320\u0324\u0325\u0329\u032a"
              "\u032c\u032f\u0330\u0334\u033a\u033b\u0306\u0361\u035c")
# Chao tone letters (not emitted by espeak-ng 1.51, but by other IPA sources for tone languages).
_TONE_LETTERS = "˥˦˧˨˩"

DEFAULT_ESPEAK_SYMBOLS: tuple[str, ...] = (
    PAD, *_PUNCTUATION, *_DIGITS, *_LATIN, *_IPA_CONSONANTS, *_IPA_NON_PULMONIC, *_IPA_OTHER,
    *_IPA_VOWELS, *_SUPRASEGMENTALS, *_MODIFIERS, *_COMBINING, *_TONE_LETTERS, " ")
"""Symbol table for espeak IPA (pad "_" = id 0, space last).

Covers what espeak-ng emits (with stress, punctuation kept) for ordinary sentences in en, es, fr,
de, cmn, ja (kana), ko, hi, vi and ar, checked against espeak-ng 1.51, plus the rest of the IPA
chart, so other languages mostly work too. A model stores the table it was trained with in its
config; never reorder this one once a model uses it (append instead).
"""
assert len(set(DEFAULT_ESPEAK_SYMBOLS)) == len(DEFAULT_ESPEAK_SYMBOLS), "duplicate symbol"

# ------------------------------------------------------------------------------------------
# Punctuation normalisation
# ------------------------------------------------------------------------------------------

_PUNCT_MAP = str.maketrans({
    "。": ".", "、": ",", "「": "“", "」": "”", "『": "“", "』": "”", "《": "«", "》": "»",
    "【": "[", "】": "]", "〈": "«", "〉": "»", "\u3000": " ",
    "،": ",", "؟": "?", "؛": ";", "۔": ".",  # Arabic script.
    "।": ".", "॥": ".",  # Devanagari danda.
    **{chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)},  # Full-width ASCII forms.
})


def normalize_punctuation(text: str) -> str:
  """Maps script-specific punctuation to the marks phonemizer preserves (else espeak drops it)."""
  return text.translate(_PUNCT_MAP)


# ------------------------------------------------------------------------------------------
# espeak-ng access
# ------------------------------------------------------------------------------------------

# Friendly names and ISO 639-1 codes -> espeak voice ids (phonemizer accepts voice ids only).
LANGUAGE_ALIASES = {
    "en": "en-us", "english": "en-us", "en-uk": "en-gb", "british": "en-gb",
    "es": "es", "spanish": "es",
    "fr": "fr-fr", "french": "fr-fr",
    "de": "de", "german": "de",
    "zh": "cmn", "zh-cn": "cmn", "zh-hans": "cmn", "chinese": "cmn", "mandarin": "cmn",
    "cantonese": "yue", "zh-yue": "yue",
    "ja": "ja", "jp": "ja", "japanese": "ja",
    "ko": "ko", "kr": "ko", "korean": "ko",
    "hi": "hi", "hindi": "hi",
    "vi": "vi", "vietnamese": "vi",
    "ar": "ar", "arabic": "ar",
    "pt": "pt", "portuguese": "pt", "it": "it", "italian": "it", "ru": "ru", "russian": "ru",
}


def _load_phonemizer():
  try:
    from phonemizer.backend import EspeakBackend  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise TextError("the espeak front end needs the 'phonemizer' package "
                    "(pip install phonemizer)") from e
  return EspeakBackend


def espeak_available() -> bool:
  """Whether phonemizer is installed and can load the espeak-ng library."""
  try:
    return bool(_load_phonemizer().is_available())
  except Exception:  # pylint: disable=broad-except
    return False


def _require_espeak():
  backend = _load_phonemizer()
  if not espeak_available():
    raise TextError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng); "
                    "the espeak front end needs it")
  return backend


@functools.lru_cache(maxsize=1)
def espeak_languages() -> frozenset[str]:
  """Voice ids the installed espeak-ng accepts (e.g. 'en-us', 'cmn', 'fr-fr')."""
  return frozenset(_require_espeak().supported_languages())


# phonemizer logs "language switch" and "words count mismatch" warnings through the root logger,
# which JAX's absl logging configures: keep them off the user's terminal.
_QUIET = logging.getLogger("ovjax.phonemizer")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@functools.lru_cache(maxsize=1)
def _cmn_voice_is_broken() -> bool:
  # Broken installs switch to English to read the pinyin of common words (see module doc).
  backend = _require_espeak()("cmn", language_switch="keep-flags", logger=_QUIET)
  return "(en)" in backend.phonemize(["你好"], strip=True)[0]


def resolve_language(language: str) -> str:
  """Maps a language name or code to an espeak-ng voice id.

  Raises:
    TextError: espeak-ng is missing, or it has no voice for `language`.
  """
  if not isinstance(language, str) or not language.strip():
    raise TextError(f"no language given for the espeak front end: {language!r}")
  code = language.strip().lower().replace("_", "-")
  code = LANGUAGE_ALIASES.get(code, code)
  known = espeak_languages()
  if code not in known:
    raise TextError(f"espeak-ng has no voice for language {language!r} "
                    "(try en-us, es, fr-fr, de, cmn, ja, ko, hi, vi, ar)")
  if code == "cmn" and "cmn-latn-pinyin" in known and _cmn_voice_is_broken():
    code = "cmn-latn-pinyin"
  return code


@functools.lru_cache(maxsize=32)
def _backend(voice: str):
  # Backends are cached: each one loads (and copies) the espeak-ng library.
  return _require_espeak()(voice, preserve_punctuation=True, with_stress=True,
                           language_switch="remove-flags", logger=_QUIET)


def phonemize(text: str, language: str) -> str:
  """Text to an IPA string with stress marks and punctuation, words separated by spaces.

  Args:
    text: text in `language`.
    language: an espeak-ng voice id or an alias from `LANGUAGE_ALIASES`.

  Returns:
    The IPA string (empty if espeak found nothing to say).

  Raises:
    TextError: espeak-ng/phonemizer missing, or unknown language.
  """
  voice = resolve_language(language)
  text = normalize_punctuation(text)
  # One line per call: phonemizer treats each line as an utterance and we want one string.
  text = re.sub(r"\s+", " ", text).strip()
  if not text:
    return ""
  return _backend(voice).phonemize([text], strip=True)[0]
