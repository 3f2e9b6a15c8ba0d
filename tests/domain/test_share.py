"""Delivery shares: every message id in exactly one share, about evenly."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

import pytest

from domain.message import message_id_for
from domain.share import DeliveryShare
from engine.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_each_message_is_in_exactly_one_share_and_shares_are_even(count: int) -> None:
    shares = [DeliveryShare(number, count) for number in range(1, count + 1)]
    # A fixed submission: shares are even on average, and a random one lands beyond the
    # bound about once in a hundred runs.
    submission = UUID("6f1c2b1e-8d4a-4c1e-9f3b-2a7d5e9c0b41")
    ids = [message_id_for(submission, index) for index in range(7000)]

    holders = Counter(sum(share.holds(i) for share in shares) for i in ids)
    sizes = [sum(share.holds(i) for i in ids) for share in shares]

    assert holders == {1: len(ids)}
    assert max(sizes) - min(sizes) < len(ids) / count * 0.15


@pytest.mark.parametrize("text", ["", "2", "0/2", "3/2", "1/0", "a/b", "1/2/3", "-1/2"])
def test_a_share_that_is_not_k_of_n_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        DeliveryShare.parse(text)


def test_the_setting_names_this_process_share() -> None:
    assert Settings(DELIVERY_SHARE="").share is None
    share = Settings(DELIVERY_SHARE=" 2/3").share
    assert share == DeliveryShare(2, 3) and share.consumer == "delivery-2of3"
    with pytest.raises(ValueError):
        Settings(DELIVERY_SHARE="4/3")
