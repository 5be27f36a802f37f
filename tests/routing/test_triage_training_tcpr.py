"""The prefix-aware T-CPR head (issue 12): partial transcripts of calls that are not cardiac arrests are the
negatives that teach the head not to flag an early partial (the flag is sticky for the whole call)."""

from __future__ import annotations

from routing.eval import Scenario
from routing.training import MIN_PREFIX_WORDS, Sample, prefix_samples


def _sample(call_id: str, text: str, tcpr: bool, track: str = "clean") -> Sample:
    expected = {
        "agencies": ["ZZS"],
        "incident_type": "MED_TRAUMA",
        "priority": 2,
        "tcpr": tcpr,
        "location": None,
    }
    return Sample(Scenario(call_id, "155", None, "cs", text, expected), text, track, 0)


def test_partials_come_only_from_calls_that_are_not_arrests() -> None:
    fall = "je mi osmdesát let upadla jsem v koupelně ležím na zemi a nemůžu vstát bolí mě kyčel"
    arrest = "manžel upadl v kuchyni leží na zemi nereaguje a vůbec nedýchá prosím rychle přijeďte"
    samples = [_sample("a", fall, False), _sample("b", arrest, True), _sample("a", fall, False, "recognised")]
    partials, parents = prefix_samples(samples)
    assert partials and all(samples[p].scenario.id == "a" for p in parents)
    for partial, parent in zip(partials, parents, strict=True):
        words = partial.text.split()
        assert MIN_PREFIX_WORDS <= len(words) < len(samples[parent].text.split())
        assert samples[parent].text.startswith(partial.text)
        assert partial.track == f"{samples[parent].track}-partial"
        assert partial.fold == samples[parent].fold  # a partial is held out with its call


def test_a_text_too_short_to_cut_gives_no_partials() -> None:
    partials, parents = prefix_samples([_sample("c", "hoří nám dům", False)])
    assert partials == [] and parents == []
