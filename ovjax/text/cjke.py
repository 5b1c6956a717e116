"""Front end A: `cjke_cleaners2`, the text cleaner the official OpenVoice v1 base models expect.

English goes through CMU-dictionary IPA (`eng_to_ipa`) with number/abbreviation expansion and a
few substitutions; Mandarin through jieba + pypinyin bopomofo and a bopomofo-to-IPA table. The
output must match the reference character for character: the v1 weights were trained on exactly
these strings, so every rule below (odd ones included) is deliberate. Package versions matter for
parity; see REQUIREMENTS.txt beside this file.

Text is marked by language: `[EN]...[EN]` and `[ZH]...[ZH]`; unmarked text passes through
unchanged (and most of it is then dropped by the symbol table).
"""

from __future__ import annotations

import logging
import re

import cn2an
import eng_to_ipa
import inflect
import jieba
from pypinyin import lazy_pinyin
from pypinyin import Style
from unidecode import unidecode

from ovjax.errors import TextError

# jieba logs its dictionary build to stderr on first use; that is noise for a library.
jieba.setLogLevel(logging.WARNING)

_inflect = inflect.engine()

# --------------------------------------------------------------------------------------------
# English
# --------------------------------------------------------------------------------------------

# "dr." -> "doctor" etc.; the period is consumed so it does not end a sentence.
_ABBREVIATIONS = [(re.compile(rf"\b{abbr}\.", re.IGNORECASE), full) for abbr, full in [
    ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
    ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"),
    ("rev", "reverend"), ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"),
    ("capt", "captain"), ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"),
    ("ft", "fort"),
]]

_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9,]+[0-9])")
_DECIMAL_NUMBER_RE = re.compile(r"([0-9]+\.[0-9]+)")
_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")

# Dark L: an "l" whose following letters up to the word end contain no vowel ("world", "twelve").
_DARK_L_RE = re.compile(r"l([^aeiouæɑɔəɛɪʊ ]*(?: |$))")

# eng_to_ipa writes r and the affricate ligatures; the v1 table has ɹ and two-letter affricates.
_IPA_TO_IPA2 = [("r", "ɹ"), ("ʤ", "dʒ"), ("ʧ", "tʃ")]


def _expand_dollars(m: re.Match) -> str:
  amount = m.group(1)
  parts = amount.split(".")
  if len(parts) > 2:
    return amount + " dollars"  # Not a money amount we understand ("$1.2.3").
  dollars = int(parts[0]) if parts[0] else 0
  cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
  dollar_unit = "dollar" if dollars == 1 else "dollars"
  cent_unit = "cent" if cents == 1 else "cents"
  if dollars and cents:
    return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
  if dollars:
    return f"{dollars} {dollar_unit}"
  if cents:
    return f"{cents} {cent_unit}"
  return "zero dollars"


def _expand_number(m: re.Match) -> str:
  num = int(m.group(0))
  if 1000 < num < 3000:
    # Read as a year: 1984 "nineteen eighty-four", 1905 "nineteen oh five".
    if num == 2000:
      return "two thousand"
    if 2000 < num < 2010:
      return "two thousand " + _inflect.number_to_words(num % 100)
    if num % 100 == 0:
      return _inflect.number_to_words(num // 100) + " hundred"
    return _inflect.number_to_words(num, andword="", zero="oh", group=2).replace(", ", " ")
  return _inflect.number_to_words(num, andword="")


def normalize_numbers(text: str) -> str:
  """Spells out numbers, money, decimals and ordinals (order of the passes matters)."""
  text = _COMMA_NUMBER_RE.sub(lambda m: m.group(1).replace(",", ""), text)
  text = _POUNDS_RE.sub(r"\1 pounds", text)
  text = _DOLLARS_RE.sub(_expand_dollars, text)
  text = _DECIMAL_NUMBER_RE.sub(lambda m: m.group(1).replace(".", " point "), text)
  text = _ORDINAL_RE.sub(lambda m: _inflect.number_to_words(m.group(0)), text)
  return _NUMBER_RE.sub(_expand_number, text)


def english_to_ipa(text: str) -> str:
  """ASCII-folds, lowercases, expands, then looks words up in the CMU dictionary.

  Out-of-dictionary words come back spelled and followed by `*` (the reference keeps that).
  """
  text = unidecode(text).lower()
  for regex, replacement in _ABBREVIATIONS:
    text = regex.sub(replacement, text)
  text = normalize_numbers(text)
  phonemes = eng_to_ipa.convert(text)
  return re.sub(r"\s+", " ", phonemes)


def english_to_ipa2(text: str) -> str:
  """English text to the IPA variant of the v1 symbol table."""
  text = english_to_ipa(text)
  text = _DARK_L_RE.sub(lambda m: "ɫ" + m.group(1), text)
  for old, new in _IPA_TO_IPA2:
    text = text.replace(old, new)
  return text.replace("...", "…")


# --------------------------------------------------------------------------------------------
# Mandarin
# --------------------------------------------------------------------------------------------

# Latin letters spelled the way a Mandarin speaker reads them, in bopomofo with tones.
_LATIN_TO_BOPOMOFO = [(re.compile(letter, re.IGNORECASE), spelled) for letter, spelled in [
    ("a", "ㄟˉ"), ("b", "ㄅㄧˋ"), ("c", "ㄙㄧˉ"), ("d", "ㄉㄧˋ"), ("e", "ㄧˋ"),
    ("f", "ㄝˊㄈㄨˋ"), ("g", "ㄐㄧˋ"), ("h", "ㄝˇㄑㄩˋ"), ("i", "ㄞˋ"), ("j", "ㄐㄟˋ"),
    ("k", "ㄎㄟˋ"), ("l", "ㄝˊㄛˋ"), ("m", "ㄝˊㄇㄨˋ"), ("n", "ㄣˉ"), ("o", "ㄡˉ"),
    ("p", "ㄆㄧˉ"), ("q", "ㄎㄧㄡˉ"), ("r", "ㄚˋ"), ("s", "ㄝˊㄙˋ"), ("t", "ㄊㄧˋ"),
    ("u", "ㄧㄡˉ"), ("v", "ㄨㄧˉ"), ("w", "ㄉㄚˋㄅㄨˋㄌㄧㄡˋ"), ("x", "ㄝˉㄎㄨˋㄙˋ"),
    ("y", "ㄨㄞˋ"), ("z", "ㄗㄟˋ"),
]]

# Applied in order: two-letter entries must come before their single letters.
_BOPOMOFO_TO_IPA = [
    ("ㄅㄛ", "p⁼wo"), ("ㄆㄛ", "pʰwo"), ("ㄇㄛ", "mwo"), ("ㄈㄛ", "fwo"),
    # Initials.
    ("ㄅ", "p⁼"), ("ㄆ", "pʰ"), ("ㄇ", "m"), ("ㄈ", "f"), ("ㄉ", "t⁼"), ("ㄊ", "tʰ"),
    ("ㄋ", "n"), ("ㄌ", "l"), ("ㄍ", "k⁼"), ("ㄎ", "kʰ"), ("ㄏ", "x"), ("ㄐ", "tʃ⁼"),
    ("ㄑ", "tʃʰ"), ("ㄒ", "ʃ"), ("ㄓ", "ts`⁼"), ("ㄔ", "ts`ʰ"), ("ㄕ", "s`"), ("ㄖ", "ɹ`"),
    ("ㄗ", "ts⁼"), ("ㄘ", "tsʰ"), ("ㄙ", "s"),
    # Finals.
    ("ㄚ", "a"), ("ㄛ", "o"), ("ㄜ", "ə"), ("ㄝ", "ɛ"), ("ㄞ", "aɪ"), ("ㄟ", "eɪ"),
    ("ㄠ", "ɑʊ"), ("ㄡ", "oʊ"), ("ㄧㄢ", "jɛn"), ("ㄩㄢ", "ɥæn"), ("ㄢ", "an"),
    ("ㄧㄣ", "in"), ("ㄩㄣ", "ɥn"), ("ㄣ", "ən"), ("ㄤ", "ɑŋ"), ("ㄧㄥ", "iŋ"),
    ("ㄨㄥ", "ʊŋ"), ("ㄩㄥ", "jʊŋ"), ("ㄥ", "əŋ"), ("ㄦ", "əɻ"), ("ㄧ", "i"), ("ㄨ", "u"),
    ("ㄩ", "ɥ"),
    # Tones (1 level, 2 rising, 3 dipping, 4 falling, neutral silent), then punctuation.
    ("ˉ", "→"), ("ˊ", "↑"), ("ˇ", "↓↑"), ("ˋ", "↓"), ("˙", ""),
    ("，", ","), ("。", "."), ("！", "!"), ("？", "?"), ("—", "-"),
]

_HAN_RE = re.compile("[\u4e00-\u9fff]")
_CN_NUMBER_RE = re.compile(r"\d+(?:\.?\d+)?")


def number_to_chinese(text: str) -> str:
  """Writes Arabic numerals in Chinese characters (3 -> 三, 1.5 -> 一点五)."""
  def convert(m: re.Match) -> str:
    try:
      return cn2an.an2cn(m.group(0))
    except Exception as e:  # cn2an raises bare ValueErrors on e.g. full-width digits.
      raise TextError(f"cannot read the number {m.group(0)!r} in Mandarin text: {e}") from e
  return _CN_NUMBER_RE.sub(convert, text)


def chinese_to_bopomofo(text: str) -> str:
  """Segments with jieba and writes each Han word in bopomofo; other tokens pass through."""
  text = text.replace("、", "，").replace("；", "，").replace("：", "，")
  out = ""
  for word in jieba.lcut(text, cut_all=False):
    if not _HAN_RE.search(word):
      out += word  # Punctuation, spaces, latin: glued on as they are.
      continue
    # pypinyin leaves tone 1 unmarked; make it explicit so it becomes "→".
    syllables = [re.sub(r"([\u3105-\u3129])$", r"\1ˉ", s)
                 for s in lazy_pinyin(word, Style.BOPOMOFO)]
    if out:
      out += " "
    out += "".join(syllables)
  return out


def latin_to_bopomofo(text: str) -> str:
  for regex, spelled in _LATIN_TO_BOPOMOFO:
    text = regex.sub(spelled, text)
  return text


def bopomofo_to_ipa(text: str) -> str:
  for old, new in _BOPOMOFO_TO_IPA:
    text = text.replace(old, new)
  return text


def chinese_to_ipa(text: str) -> str:
  """Mandarin text to the IPA variant of the v1 symbol table."""
  text = number_to_chinese(text)
  text = chinese_to_bopomofo(text)
  text = latin_to_bopomofo(text)
  text = bopomofo_to_ipa(text)
  # Medials: i/u before a vowel are glides.
  text = re.sub(r"i([aoe])", r"j\1", text)
  text = re.sub(r"u([aoəe])", r"w\1", text)
  # Syllabic (apical) vowels after retroflex and dental sibilants, which bopomofo leaves unwritten.
  text = re.sub(r"([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ`\2", text).replace("ɻ", "ɹ`")
  text = re.sub(r"(s[⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ\2", text)
  return text


# --------------------------------------------------------------------------------------------
# The cleaner
# --------------------------------------------------------------------------------------------

_ZH_RE = re.compile(r"\[ZH\](.*?)\[ZH\]")
_EN_RE = re.compile(r"\[EN\](.*?)\[EN\]")
_JA_KO_RE = re.compile(r"\[(JA|KO)\](.*?)\[\1\]")
MARKS = ("EN", "ZH")
"""Language marks cjke_cleaners2 understands."""


def has_marks(text: str) -> bool:
  """Whether text already carries `[EN]`/`[ZH]` (or `[JA]`/`[KO]`) language marks."""
  return bool(re.search(r"\[(EN|ZH|JA|KO)\]", text))


def cjke_cleaners2(text: str) -> str:
  """The reference cleaner: marked segments to IPA, then a final punctuation mark.

  Args:
    text: text with `[EN]...[EN]` / `[ZH]...[ZH]` segments.

  Returns:
    The IPA string, ending in one of `.,!?-…~` (a "." is appended otherwise).

  Raises:
    TextError: for `[JA]`/`[KO]` segments (the reference imports no cleaner for them).
  """
  m = _JA_KO_RE.search(text)
  if m:
    raise TextError(f"the cjke front end has no {m.group(1)} cleaner; use frontend='espeak'")
  # Order matters for parity: every ZH segment first, then every EN segment.
  text = _ZH_RE.sub(lambda m: chinese_to_ipa(m.group(1)) + " ", text)
  text = _EN_RE.sub(lambda m: english_to_ipa2(m.group(1)) + " ", text)
  text = re.sub(r"\s+$", "", text)
  return re.sub(r"([^.,!?\-…~])$", r"\1.", text)
