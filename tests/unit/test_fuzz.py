"""A small run of bench/fuzz.py's mutator in the normal test run (the 10^6 run is the bench)."""

from __future__ import annotations

from bench.fuzz import Stats, check_one, corpus, run_mutate


def test_seed_corpus_is_valid_in_every_format() -> None:
    st = Stats()
    for topic, payload in corpus():
        check_one(topic, payload, st)
    assert st.crash_count == 0
    assert st.with_readings == st.inputs, st.rejects  # every seed decodes


def test_mutated_inputs_never_crash_and_always_end_somewhere() -> None:
    st = run_mutate(20_000, seed=7)
    assert st.crash_count == 0, st.crashes
    assert st.inputs == 20_000
    # The mutator reaches both sides: plenty of good readings and many kinds of reject.
    assert st.with_readings > 1000
    assert {"bad_json", "bad_topic", "validation", "crc", "payload_too_large"} <= set(st.rejects)


def test_the_checker_catches_an_unstorable_reading() -> None:
    """The year-1 timestamp that passed validation before max_age would count as a crash."""
    from datetime import timedelta

    from ingest.readings import ValidationPolicy

    lax = ValidationPolicy(max_age=timedelta(days=800_000))
    st = Stats()
    body = b'{"ts":"0001-01-01T00:00:00Z","fill_ratio":0.5}'
    check_one("city/central/bin/bin-0042/up", body, st, lax)
    assert st.crash_count == 1
    assert "Integer exceeds 64-bit range" in st.crashes[0]
