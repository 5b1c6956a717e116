"""Symbol tables and id conversion shared by every text front end.

A symbol table is an ordered sequence of single characters; a character's id is its position.
The table that matters at run time is the one stored in a model's config (`symbols`), so every
function here takes the table as an argument; `CJKE_SYMBOLS` is the table of the official
OpenVoice v1 base models (identical to their config.json).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import functools
import unicodedata
import warnings

PAD = "_"
"""The padding symbol; id 0 in every table here, and the blank interspersed by `intersperse`."""

# OpenVoice v1 (cjke_cleaners2) table, 68 entries: pad, punctuation, latin letters, IPA letters,
# then space. Order defines ids and must never change: the official weights index it.
_CJKE_PUNCTUATION = ",.!?-~…"
_CJKE_LETTERS = "NQabdefghijklmnopstuvwxyzɑæʃʑçɯɪɔɛɹðəɫɥɸʊɾʒθβŋɦ⁼ʰ`^#*=ˈˌ→↓↑ "
CJKE_SYMBOLS: tuple[str, ...] = (PAD, *_CJKE_PUNCTUATION, *_CJKE_LETTERS)


class DroppedSymbolsWarning(UserWarning):
  """Characters of a cleaned text were not in the symbol table and were left out."""


@functools.lru_cache(maxsize=16)
def _symbol_to_id(symbols: tuple[str, ...]) -> dict[str, int]:
  # A dict comprehension keeps the last index of a duplicated symbol, as the reference does.
  return {s: i for i, s in enumerate(symbols)}


def text_to_ids(cleaned: str, symbols: Sequence[str]) -> list[int]:
  """Maps each character of a cleaned string to its id in `symbols`.

  Characters missing from the table are dropped (the reference drops them silently; we warn once
  per call, naming them, so a mismatched table or front end is noticed).

  Args:
    cleaned: output of a text cleaner (IPA string).
    symbols: the symbol table, e.g. a model config's `symbols`.

  Returns:
    The list of ids, without blanks.
  """
  table = _symbol_to_id(tuple(symbols))
  ids = []
  dropped = {}
  for ch in cleaned:
    i = table.get(ch)
    if i is None:
      dropped[ch] = dropped.get(ch, 0) + 1
    else:
      ids.append(i)
  if dropped:
    names = ", ".join(f"{_describe(ch)} x{n}" for ch, n in dropped.items())
    warnings.warn(f"dropped characters not in the symbol table: {names}", DroppedSymbolsWarning,
                  stacklevel=2)
  return ids


def _describe(ch: str) -> str:
  # Combining marks and spaces are invisible in a message; add the code point.
  return f"{ch!r} (U+{ord(ch):04X})"


def intersperse(ids: Iterable[int], item: int = 0) -> list[int]:
  """Puts `item` between ids and at both ends: [a, b] -> [0, a, 0, b, 0] (length 2n + 1)."""
  ids = list(ids)
  out = [item] * (2 * len(ids) + 1)
  out[1::2] = ids
  return out


def is_speakable(ch: str) -> bool:
  """Whether a symbol is a sound rather than punctuation, stress, length, tone or space.

  Letters (IPA letters included) count; modifier letters such as ˈ ː ʰ alone do not.
  """
  return unicodedata.category(ch) in ("Ll", "Lu", "Lo")


def ids_are_speakable(ids: Iterable[int], symbols: Sequence[str]) -> bool:
  """Whether at least one id names a speakable symbol (see `is_speakable`)."""
  return any(is_speakable(symbols[i]) for i in ids)
