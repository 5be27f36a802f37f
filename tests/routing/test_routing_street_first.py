from routing.triage import Triage
from routing.types import TriageInput


def test_street_and_number_said_first_in_a_sentence_are_a_street():
    triage = Triage.from_data_dir()
    decision = triage.decide(
        TriageInput(
            dialled="150", transcript="Haló, hasiči? Rokycanova 1712 v Sokolově, hoří tam, vidím oheň."
        )
    )
    assert decision.location is not None
    assert (decision.location.street, decision.location.house_number) == ("Rokycanova", "1712")
    assert decision.location.municipality == "Sokolov"


def test_capitalised_first_word_of_a_sentence_without_a_number_is_no_street():
    triage = Triage.from_data_dir()
    decision = triage.decide(
        TriageInput(dialled="155", transcript="Prosím rychle. Manžel nedýchá, jsme v Chebu.")
    )
    assert decision.location is not None
    assert decision.location.street is None
