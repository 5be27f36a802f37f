"""The ASR noise model: fitted from aligned (said, recognised) pairs, applied deterministically."""

from __future__ import annotations

from pathlib import Path

from routing.asr_noise import POOLED, NoiseModel, fit_language

PAIRS = [
    ("manžel nedýchá a nereaguje", "manžel nedýchá a ne reaguje"),
    ("hoří nám střecha na chalupě", "hoři nam střecha na chalupe"),
    ("leží na zemi a je celý modrý", "leží na zemi je celý motrý"),
    ("přijeďte rychle prosím", "přijeďte rychle prosím no"),
]


def test_fit_counts_each_kind_of_error() -> None:
    noise = fit_language(PAIRS)
    assert noise.words == 19
    assert noise.split > 0  # "nereaguje" -> "ne reaguje"
    assert noise.diacritic_loss > 0  # "hoří" -> "hoři", "nám" -> "nam"
    assert noise.deletion > 0  # "a" lost
    assert noise.substitution > 0  # "modrý" -> "motrý"
    assert noise.insertion > 0 and "no" in noise.inserted_words
    assert noise.confusions.get("d", {}).get("t") == 1


def test_apply_is_deterministic_for_a_seed_and_differs_between_keys(tmp_path: Path) -> None:
    model = NoiseModel.fit([("cs", a, b) for a, b in PAIRS * 100])
    text = "Dobrý den, manžel upadl v kuchyni, nereaguje a nedýchá, bydlíme v Sokolově na Husově ulici"
    once = model.apply(text, "cs", 7, "call-1")
    assert once == model.apply(text, "cs", 7, "call-1")
    assert once != text.lower()
    others = {model.apply(text, "cs", 7, f"call-{i}") for i in range(10)}
    assert len(others) > 1
    path = tmp_path / "noise.json"
    model.save(path)
    again = NoiseModel.load(path)
    assert again.apply(text, "cs", 7, "call-1") == once
    assert again.for_language("vi") is again.languages[POOLED]


def test_the_shipped_noise_model_loads_and_noises_every_language() -> None:
    model = NoiseModel.load()
    for language in ("cs", "sk", "de", "en", "ru", "uk", "pl", "vi"):
        assert model.apply("pomoc hoří nám dům help fire пожар", language, 1, "x")
