"""The admission: at most its limit of sends in progress; the next is refused at once,
and a place freed is taken again."""

from __future__ import annotations

import pytest

from domain.errors import Extensions, RequestRejected
from engine.admission import BUSY_RETRY_AFTER, Admission


def test_sends_beyond_the_limit_are_refused_until_one_is_answered() -> None:
    admission = Admission(3)
    assert [admission.admit() for _ in range(5)] == [True, True, True, False, False]
    assert (admission.in_progress, admission.refused) == (3, 2)
    admission.release()
    assert admission.admit() is True
    assert admission.admit() is False
    assert (admission.in_progress, admission.refused) == (3, 3)


def test_the_block_form_refuses_with_the_busy_error_and_frees_its_place_on_failure() -> None:
    admission = Admission(1)
    with pytest.raises(ValueError), admission.admitted():
        raise ValueError("the send failed")
    assert admission.in_progress == 0
    with admission.admitted():
        with pytest.raises(RequestRejected) as refusal, admission.admitted():
            pass
        assert refusal.value.errors == (Extensions.BUSY,)
        assert refusal.value.retry_after == BUSY_RETRY_AFTER
    assert admission.in_progress == 0


def test_a_limit_of_zero_admits_everything() -> None:
    admission = Admission(0)
    assert all(admission.admit() for _ in range(10_000))
    assert admission.refused == 0
