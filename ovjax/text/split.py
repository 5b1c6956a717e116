"""Sentence splitting for long text, as the reference base TTS does it before synthesis.

Each piece is synthesised on its own and the pieces are joined with a short silence, so long
input never reaches the text encoder in one go. Latin-script text is split by words, Chinese (and
other unspaced scripts) by characters: pieces are grown sentence by sentence (a sentence ends at
`, . ! ? ;`) until they exceed `min_len`, then pieces of at most two words/characters are merged
into a neighbour.
"""

from __future__ import annotations

import re

# Marker inserted after each sentence end, then split on (text containing it literally would
# split there too, as in the reference).
_MARK = "$#!"
_CAMEL_RE = re.compile(r"([a-z])([A-Z])")


def split_camel_case(text: str) -> str:
  """Puts a space between a lowercase and an uppercase letter ("OpenVoice" -> "Open Voice").

  The reference does this to each piece before cleaning, so brand names are read as words
  instead of being spelled out as out-of-dictionary strings.
  """
  return _CAMEL_RE.sub(r"\1 \2", text)


def _mark_sentence_ends(text: str) -> list[str]:
  text = re.sub(r"[\n\t ]+", " ", text)
  text = re.sub(r"([,.!?;])", r"\1 " + _MARK, text)
  sentences = [s.strip() for s in text.split(_MARK)]
  if sentences and not sentences[-1]:
    sentences.pop()
  return sentences


def _group(sentences: list[str], min_len: int, length) -> list[str]:
  pieces, current, count = [], [], 0
  for i, sent in enumerate(sentences):
    current.append(sent)
    count += length(sent)
    if count > min_len or i == len(sentences) - 1:
      pieces.append(" ".join(current))
      current, count = [], 0
  return pieces


def _merge_short(pieces: list[str], length) -> list[str]:
  out = []
  for piece in pieces:
    # A piece of <= 2 units is glued to the one after it ...
    if out and length(out[-1]) <= 2:
      out[-1] = out[-1] + " " + piece
    else:
      out.append(piece)
  # ... and a short last piece to the one before it (when there is one).
  if len(out) >= 2 and length(out[-1]) <= 2:
    last = out.pop()
    out[-1] = out[-1] + " " + last
  return out


def _word_count(s: str) -> int:
  return len(s.split(" "))


def split_sentences_latin(text: str, min_len: int = 10) -> list[str]:
  """Splits space-separated text into pieces of more than `min_len` words (except the last).

  Args:
    text: any amount of text.
    min_len: a piece is closed at the first sentence end after it has more than this many words.

  Returns:
    The pieces; their concatenation holds every word of `text` (brackets and double quotes are
    deleted, full-width and curly punctuation made ASCII, whitespace collapsed).
  """
  text = re.sub("[。！？；]", ".", text)
  text = re.sub("[，]", ",", text)
  text = re.sub("[“”]", '"', text)
  text = re.sub("[‘’]", "'", text)
  text = re.sub(r"[<>()\[\]\"«»]+", "", text)
  sentences = _mark_sentence_ends(text)
  return _merge_short(_group(sentences, min_len, _word_count), _word_count)


def split_sentences_zh(text: str, min_len: int = 10) -> list[str]:
  """Splits Chinese text into pieces of more than `min_len` characters (except the last)."""
  text = re.sub("[。！？；]", ".", text)
  text = re.sub("[，]", ",", text)
  sentences = _mark_sentence_ends(text)
  return _merge_short(_group(sentences, min_len, len), len)
