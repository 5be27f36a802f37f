from __future__ import annotations

from transcription.whisper_engine import _cut_repetition, _TimedWord


def words(text: str) -> list[_TimedWord]:
    return [_TimedWord(w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())]


def texts(ws: list[_TimedWord]) -> str:
    return " ".join(w.text for w in ws)


def test_whisper_word_loop_is_cut_to_one_copy() -> None:
    assert texts(_cut_repetition(words("je tu hodně lidí. Všaká všaká všaká všaká všaká"))) == (
        "je tu hodně lidí. Všaká"
    )


def test_whisper_phrase_loop_is_cut_to_one_copy() -> None:
    looped = words("nejbí se mi to. Když na vždy, když na vždy, když na vždy, když na")
    assert texts(_cut_repetition(looped)) == "nejbí se mi to. Když na vždy,"


def test_ordinary_repetition_in_speech_is_kept() -> None:
    speech = "ano ano rychle prosím rychle prosím on nedýchá"
    assert texts(_cut_repetition(words(speech))) == speech
