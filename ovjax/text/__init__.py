"""Text front ends: text -> symbol ids for the base TTS, and sentence splitting.

Two front ends:
* "cjke" (`cjke.py`): the reference `cjke_cleaners2`, English and Mandarin, exactly what the
  official OpenVoice v1 base models expect (use with their config's `symbols`).
* "espeak" (`espeak.py`): espeak-ng IPA for any language espeak-ng speaks, for models trained
  on it (default table `DEFAULT_ESPEAK_SYMBOLS`).

Heavy dependencies (eng_to_ipa, jieba, pypinyin, phonemizer) load on first use of a front end.
"""

from __future__ import annotations

from collections.abc import Sequence
import re

from ovjax.errors import TextError
from ovjax.text.split import split_camel_case
from ovjax.text.split import split_sentences_latin
from ovjax.text.split import split_sentences_zh
from ovjax.text.symbols import CJKE_SYMBOLS
from ovjax.text.symbols import DroppedSymbolsWarning
from ovjax.text.symbols import ids_are_speakable
from ovjax.text.symbols import intersperse
from ovjax.text.symbols import text_to_ids

__all__ = [
    "CJKE_SYMBOLS", "DroppedSymbolsWarning", "FRONTENDS", "clean_text", "cjke_mark",
    "intersperse", "split_camel_case", "split_sentences", "text_to_ids", "text_to_sequence",
]

FRONTENDS = ("cjke", "espeak")

# Names the reference API accepts ("English"/"Chinese") plus the marks and ISO codes.
_CJKE_MARKS = {"en": "EN", "english": "EN", "zh": "ZH", "chinese": "ZH", "cmn": "ZH",
               "mandarin": "ZH"}

# Scripts written without spaces between words: split by characters, not words.
_UNSPACED = ("zh", "cmn", "yue", "ja", "jp", "chinese", "mandarin", "cantonese", "japanese",
             "th", "lo", "km", "my", "bo")


def _short(text: str, limit: int = 40) -> str:
  # repr keeps the error message on one line even for multi-line text.
  return repr(text if len(text) <= limit else text[:limit] + "...")


def cjke_mark(language: str) -> str:
  """'EN' or 'ZH' for a language the cjke front end handles; TextError otherwise."""
  mark = _CJKE_MARKS.get(str(language).strip().lower())
  if mark is None:
    raise TextError(f"the cjke front end speaks English (EN) and Chinese (ZH), not {language!r}"
                    "; use frontend='espeak' for other languages")
  return mark


def _check_text(text: str) -> None:
  if not isinstance(text, str):
    raise TextError(f"text must be a string, got {type(text).__name__}")
  if not text.strip():
    raise TextError("empty text: nothing to speak")


def _check_frontend(frontend: str) -> None:
  if frontend not in FRONTENDS:
    raise TextError(f"unknown text front end {frontend!r}; choose one of {', '.join(FRONTENDS)}")


def clean_text(text: str, language: str, frontend: str = "cjke") -> str:
  """Text -> the front end's phoneme string (before symbol lookup).

  For "cjke", text is wrapped in `[EN]`/`[ZH]` marks unless it already carries marks (mixed
  language input such as "[ZH]你好[ZH][EN]hello[EN]"); line breaks become spaces.
  """
  _check_text(text)
  _check_frontend(frontend)
  if frontend == "cjke":
    mark = cjke_mark(language)
    from ovjax.text import cjke  # pylint: disable=import-outside-toplevel
    # The cleaner's mark regexes do not cross line breaks (text spanning lines would pass through
    # uncleaned); the reference never sees them because its splitter collapses whitespace.
    text = re.sub(r"[\r\n]+", " ", text)
    marked = text if cjke.has_marks(text) else f"[{mark}]{text}[{mark}]"
    return cjke.cjke_cleaners2(marked)
  from ovjax.text import espeak  # pylint: disable=import-outside-toplevel
  return espeak.phonemize(text, language)


def text_to_sequence(text: str, language: str, symbols: Sequence[str] | None = None,
                     add_blank: bool = True, frontend: str = "cjke") -> list[int]:
  """Text -> symbol ids ready for the text encoder.

  Args:
    text: one piece of text (see `split_sentences` for long text).
    language: "EN"/"ZH" (or English/Chinese, en/zh) for "cjke"; any espeak-ng language for
      "espeak".
    symbols: the model config's symbol table; defaults to the front end's own table.
    add_blank: intersperse blank id 0 (config `data.add_blank`; true for official models).
    frontend: "cjke" or "espeak".

  Returns:
    List of ids (length 2n + 1 with blanks).

  Raises:
    TextError: empty text, unknown language or front end, or nothing speakable left.
  """
  cleaned = clean_text(text, language, frontend)
  if symbols is None:
    if frontend == "cjke":
      symbols = CJKE_SYMBOLS
    else:
      from ovjax.text import espeak  # pylint: disable=import-outside-toplevel
      symbols = espeak.DEFAULT_ESPEAK_SYMBOLS
  ids = text_to_ids(cleaned, symbols)
  if not ids_are_speakable(ids, symbols):
    raise TextError(f"nothing speakable in {_short(text)} (cleaned to {_short(cleaned)})")
  return intersperse(ids, 0) if add_blank else ids


def _is_unspaced(language: str) -> bool:
  code = str(language).strip().lower().replace("_", "-")
  return code.split("-")[0] in _UNSPACED or code in _UNSPACED


def _check_language(language: str) -> None:
  code = str(language).strip().lower().replace("_", "-")
  if code in _CJKE_MARKS:
    return
  from ovjax.text import espeak  # pylint: disable=import-outside-toplevel
  if code in espeak.LANGUAGE_ALIASES:
    return
  if espeak.espeak_available() and code in espeak.espeak_languages():
    return
  raise TextError(f"unknown language {language!r}")


def split_sentences(text: str, language: str, min_len: int = 10) -> list[str]:
  """Splits long text into pieces the way the reference base TTS does, camelCase split applied.

  English and other spaced scripts count words (pieces close after more than `min_len` words),
  Chinese/Japanese/Thai count characters; pieces of at most two words/characters are merged into
  a neighbour. Each piece then gets a space between a lowercase and an uppercase letter, as the
  reference does before cleaning. Synthesise pieces one by one and join them with 50 ms of
  silence (divided by speed), as the reference does.

  Raises:
    TextError: empty text or unknown language.
  """
  _check_text(text)
  _check_language(language)
  split = split_sentences_zh if _is_unspaced(language) else split_sentences_latin
  pieces = [split_camel_case(p) for p in split(text, min_len=min_len)]
  pieces = [p for p in pieces if p.strip()]
  if not pieces:
    raise TextError(f"nothing to speak in {_short(text)}")
  return pieces
