"""CreditLedger: cumulative grants bounded by free capacity and each producer's window."""

from rollspec.transport.credit_ledger import CreditLedger


def test_grants_never_exceed_free_slots_or_windows():
    ledger = CreditLedger()
    a, b = ledger.touch("a", 8, 0.0), ledger.touch("b", 8, 0.0)
    changed = ledger.top_up(free=10)
    assert {p.key for p in changed} == {"a", "b"}
    assert a.granted + b.granted == 10 and max(a.granted, b.granted) <= 8
    assert ledger.reserved() == 10 and ledger.top_up(free=0) == []


def test_used_credit_is_no_longer_reserved_and_grants_are_cumulative():
    ledger = CreditLedger()
    p = ledger.touch("p", 8, 0.0)
    ledger.top_up(free=100)
    assert p.granted == 8
    ledger.on_items(p, max_seq=6)
    assert p.outstanding == 2 and ledger.reserved() == 2
    ledger.top_up(free=100)  # below half its window: topped up to a full window again
    assert p.granted == 14 and p.outstanding == 8
    ledger.on_items(p, max_seq=3)  # a late resend never moves the count backwards
    assert p.granted == 14 and p.max_seq == 6


def test_silent_producers_release_their_reservation():
    ledger = CreditLedger()
    ledger.touch("gone", 8, 0.0)
    ledger.touch("here", 8, 5.0)
    ledger.top_up(free=16)
    ledger.reap(now=12.0, timeout_s=10.0)
    assert len(ledger) == 1 and ledger.reserved() == 8
