"""bridge.retry: full-jitter backoff, a capped Retry-After floor, expiry from the first failure."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bridge.retry import RetryPolicy


class TestRetryPolicy:
    """Full-jitter backoff, floored by a capped Retry-After; expiry from the first failure."""

    @given(attempt=st.integers(0, 100))
    def test_backoff_within_full_jitter_bounds(self, attempt: int) -> None:
        policy = RetryPolicy(initial_backoff=0.5, max_backoff=30.0)
        delay = policy.backoff(attempt)
        assert 0.0 <= delay <= min(30.0, 0.5 * 2**attempt)

    @given(retry_after=st.floats(-10, 10_000, allow_nan=False))
    def test_retry_after_is_a_capped_floor(self, retry_after: float) -> None:
        policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_retry_after=60.0)
        delay = policy.delay(3, retry_after)
        assert delay >= min(max(retry_after, 0.0), 60.0)
        assert delay <= max(60.0, 0.02)

    def test_expired_only_after_give_up_after(self) -> None:
        policy = RetryPolicy(give_up_after=100.0)
        assert not policy.expired(None, 1e9)
        assert not policy.expired(1000.0, 1099.0)
        assert policy.expired(1000.0, 1100.0)

    def test_jitter_spreads_over_the_whole_range(self) -> None:
        """Full jitter, not "equal" jitter: delays near zero and near the ceiling both occur."""
        policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, rng=random.Random(3))
        delays = [policy.backoff(3) for _ in range(2000)]
        assert min(delays) < 0.5 and max(delays) > 7.5
        assert all(0.0 <= d <= 8.0 for d in delays)

    def test_huge_attempt_counts_stay_at_the_cap(self) -> None:
        policy = RetryPolicy(initial_backoff=2.0, max_backoff=30.0, rng=random.Random(1))
        assert all(policy.backoff(10**6) <= 30.0 for _ in range(100))

    def test_same_seed_same_delays(self) -> None:
        one, two = (RetryPolicy(rng=random.Random(42)) for _ in range(2))
        assert [one.delay(n) for n in range(10)] == [two.delay(n) for n in range(10)]

    def test_negative_retry_after_is_no_floor(self) -> None:
        policy = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)
        assert policy.delay(0, -5.0) == 0.0
        assert policy.delay(0, 7.0) == 7.0
        assert policy.delay(0, 1e6) == policy.max_retry_after

