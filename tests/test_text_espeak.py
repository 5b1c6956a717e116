"""Front end B (espeak-ng IPA). Needs the Debian package espeak-ng; CI installs it."""

import warnings

import pytest

from ovjax.errors import TextError
from ovjax.text import clean_text
from ovjax.text import split_sentences
from ovjax.text import text_to_sequence
from ovjax.text import espeak
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.text.symbols import DroppedSymbolsWarning

SENTENCES = {
    "en": ["Hello world, this is a test! How are you doing today?",
           "The quick brown fox jumps over the lazy dog.",
           "Thoughtful measures usually require judgement, vision and pleasure."],
    "es": ["¿Dónde está la biblioteca? Me llamo Juan.",
           "El perro corre rápidamente por el parque, y la niña ríe."],
    "fr": ["Bonjour, je m'appelle Marie. Où est la gare?",
           "Un bon vin blanc, une brune et un parfum."],
    "de": ["Guten Tag! Wie geht es Ihnen? Schön, dich zu sehen.",
           "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich."],
    "cmn": ["今天天气真好。我有三个苹果，你呢？",
            "这是一个很长的句子，用来测试中文的语音合成系统。"],
    "ja": ["こんにちは、げんきですか？", "カタカナのテストです。"],
    "ko": ["안녕하세요. 만나서 반갑습니다.", "오늘 날씨가 정말 좋네요!"],
    "hi": ["नमस्ते, आप कैसे हैं?", "मेरा नाम राम है। मैं दिल्ली में रहता हूँ।"],
    "vi": ["Xin chào, bạn khỏe không?", "Người Việt Nam rất thân thiện và hiếu khách."],
    "ar": ["مرحبا، كيف حالك؟", "اسمي محمد وأنا من مصر."],
}


def test_espeak_is_available():
  # No skips: the espeak front end is part of the product, so a missing espeak-ng must fail.
  assert espeak.espeak_available(), "install the Debian package espeak-ng"


def test_default_table_layout():
  assert DEFAULT_ESPEAK_SYMBOLS[0] == "_"
  assert DEFAULT_ESPEAK_SYMBOLS[-1] == " "
  assert len(set(DEFAULT_ESPEAK_SYMBOLS)) == len(DEFAULT_ESPEAK_SYMBOLS)
  assert all(len(s) == 1 for s in DEFAULT_ESPEAK_SYMBOLS)
  for mark in "ˈˌː,.!?¿¡":
    assert mark in DEFAULT_ESPEAK_SYMBOLS


@pytest.mark.parametrize("lang,text", [(k, s) for k, v in SENTENCES.items() for s in v])
def test_ordinary_sentences_map_without_drops(lang, text):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ids = text_to_sequence(text, lang, DEFAULT_ESPEAK_SYMBOLS, add_blank=True, frontend="espeak")
  assert not [w for w in caught if issubclass(w.category, DroppedSymbolsWarning)], (
      [str(w.message) for w in caught])
  assert len(ids) > 10 and len(ids) % 2 == 1
  assert ids[0::2] == [0] * (len(ids) // 2 + 1)
  assert all(i > 0 for i in ids[1::2])


def test_ipa_keeps_stress_and_punctuation():
  ipa = clean_text("Hello world, this is a test!", "en", frontend="espeak")
  assert "ˈ" in ipa and "," in ipa and ipa.endswith("!")
  assert "ð" in ipa


def test_mandarin_is_read_as_mandarin():
  ipa = clean_text("今天天气真好。你好！", "cmn", frontend="espeak")
  # Tone numbers present, no English reading of pinyin ("one", "three"), CJK punctuation kept.
  assert any(c.isdigit() for c in ipa)
  assert "wˈɒn" not in ipa and "θɹ" not in ipa
  assert "." in ipa and ipa.endswith("!")
  assert clean_text("今天", "zh", frontend="espeak") == clean_text("今天", "cmn", frontend="espeak")


@pytest.mark.parametrize("alias,voice", [("en", "en-us"), ("EN_US", "en-us"), ("french", "fr-fr"),
                                         ("de", "de"), ("es", "es")])
def test_language_aliases(alias, voice):
  assert espeak.resolve_language(alias) == voice


@pytest.mark.parametrize("code", ["xx-nope", "klingonish", "", "   "])
def test_unknown_language_code_is_an_error(code):
  with pytest.raises(TextError) as info:
    espeak.phonemize("hello", code)
  assert "\n" not in str(info.value)
  with pytest.raises(TextError):
    text_to_sequence("hello", code, frontend="espeak")


def test_empty_and_unspeakable_text_are_errors():
  with pytest.raises(TextError, match="empty"):
    text_to_sequence("  ", "en", frontend="espeak")
  with pytest.raises(TextError, match="nothing speakable"):
    text_to_sequence("?!", "en", frontend="espeak")


def test_model_table_drops_unknown_with_one_warning():
  # A model whose table lacks some phones: they are dropped, one warning names them.
  table = ("_", " ", ".", "h", "l", "o", "ə", "ˈ")
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ids = text_to_sequence("Hello.", "en", table, add_blank=False, frontend="espeak")
  dropped = [w for w in caught if issubclass(w.category, DroppedSymbolsWarning)]
  assert len(dropped) == 1 and "'ʊ'" in str(dropped[0].message)
  assert ids == [table.index(c) for c in "həlˈo."]


def test_split_sentences_for_espeak_languages():
  es = ("Hoy hace mucho calor en la ciudad, pero mañana lloverá según el pronóstico del tiempo. "
        "Quiero ir a España en junio con mis amigos de la universidad para visitar museos.")
  pieces = split_sentences(es, "es")
  assert len(pieces) == 2 and pieces[0].endswith(".")
  ja = "こんにちは、げんきですか？わたしはにほんごをはなします。カタカナのテストです。"
  assert all(len(p) > 2 for p in split_sentences(ja, "ja"))
  with pytest.raises(TextError):
    split_sentences("hello", "xx-nope")
