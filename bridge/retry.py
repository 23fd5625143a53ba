"""When to try a failed request again.

A small policy object rather than tenacity or stamina. Both are well kept, but both wrap *a call*
in an in-process retry loop (sleep, call again), and the bridge must not retry that way: its
retries have to survive a crash or a restart, and a 429 must pause every batch, not one coroutine.
So a retry here is a *time* stored with the events in the outbox (`next_attempt_at`), and the
dispatcher picks them up again when it comes; what is left to decide is only how long to wait:
exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"),
never less than a server-sent `Retry-After` (seconds or an HTTP-date, parsed in `bridge.http`),
which itself is capped so a hostile or broken header cannot park the bridge for a day; and when to
stop (`give_up_after`, counted from an event's first failure: then it is dead-lettered `expired`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

from bridge.config import RetrySettings


@dataclass(kw_only=True)
class RetryPolicy:
    """Delays for attempt n (0-based): uniform in [0, min(max_backoff, initial * 2**n)].

    The bounds are the `retry` section's; their defaults are decided there, and only there.
    """

    initial_backoff: float
    max_backoff: float
    give_up_after: float
    max_retry_after: float
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(
        cls,
        settings: RetrySettings | None = None,
        *,
        rng: random.Random | None = None,
        **bounds: float,
    ) -> RetryPolicy:
        """The policy of a `retry` section (None: its defaults), `bounds` overriding single ones."""
        section = settings or RetrySettings()
        values = {f.name: getattr(section, f.name) for f in fields(cls) if f.name != "rng"}
        return cls(**(values | bounds), rng=rng or random.Random())

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.initial_backoff * (2 ** min(attempt, 30)))
        return self.rng.uniform(0, ceiling)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before the next try: jittered backoff, but at least the (capped) Retry-After."""
        delay = self.backoff(attempt)
        if retry_after is not None:
            delay = max(delay, min(max(retry_after, 0.0), self.max_retry_after))
        return delay

    def expired(self, first_failed_at: float | None, now: float) -> bool:
        """True once an event has kept failing for longer than `give_up_after`."""
        return first_failed_at is not None and now - first_failed_at >= self.give_up_after
