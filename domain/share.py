"""Several delivery processes, each with its share of the messages.

A message belongs to one share by its id (ids are uuid5 and uuid7 values: their low bits
are spread evenly), so no two processes ever claim the same message and the exactly-once
claim of :mod:`engine.delivery.worker` is never contended.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class DeliveryShare:
    number: int  # 1 … count
    count: int

    @classmethod
    def parse(cls, text: str) -> DeliveryShare:
        """``"2/3"``: the second of three shares; ValueError for anything else."""
        number, slash, count = text.strip().partition("/")
        if not (slash and number.isdigit() and count.isdigit()):
            raise ValueError(f"a delivery share is K/N, not {text!r}")
        share = cls(int(number), int(count))
        if not 1 <= share.number <= share.count:
            raise ValueError(f"a delivery share K/N needs 1 <= K <= N, not {text!r}")
        return share

    def holds(self, message_id: UUID) -> bool:
        return message_id.int % self.count == self.number - 1

    @property
    def consumer(self) -> str:
        """The stream position's name: each share reads the stream at its own pace."""
        return f"delivery-{self.number}of{self.count}"

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"
