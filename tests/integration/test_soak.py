"""A short soak (issue 20): ``python -m bench soak`` for a minute and a half at 30 % of
the engine's capacity, tracking hits, bounces and webhooks mixed in. Every accepted
message is delivered and counted, the log holds no error, and what the processes hold
(memory, file descriptors, the write-ahead log, chdb's parts) stays within the bench's
bounds. The full hour is run by hand: ``python -m bench soak --minutes 60``."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = [pytest.mark.unit, pytest.mark.slow]


def test_a_short_soak_loses_nothing_logs_no_error_and_holds_steady() -> None:
    result = soak.run(minutes=1.5, load=0.3, burst=1000)
    figures = {name: (measured, target) for name, measured, target in result.rows}
    assert result.accepted > 1000, figures
    assert result.delivered == result.accepted, figures
    assert result.errors == [], result.errors[:20]
    assert result.leaks == [], figures
