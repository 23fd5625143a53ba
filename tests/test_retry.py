"""bridge.retry: full-jitter backoff, a capped Retry-After floor, expiry from the first failure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import RetrySettings
from bridge.retry import RetryPolicy


class TestRetryPolicy:
    """Full-jitter backoff, floored by a capped Retry-After; expiry from the first failure."""

    @given(attempt=st.integers(0, 100))
    def test_backoff_within_full_jitter_bounds(self, attempt: int) -> None:
        policy = RetryPolicy.from_settings(initial_backoff=0.5, max_backoff=30.0)
        delay = policy.backoff(attempt)
        assert 0.0 <= delay <= min(30.0, 0.5 * 2**attempt)

    @given(retry_after=st.floats(-10, 10_000, allow_nan=False))
    def test_retry_after_is_a_capped_floor(self, retry_after: float) -> None:
        policy = RetryPolicy.from_settings(
            initial_backoff=0.01, max_backoff=0.02, max_retry_after=60.0
        )
        delay = policy.delay(3, retry_after)
        assert delay >= min(max(retry_after, 0.0), 60.0)
        assert delay <= max(60.0, 0.02)

    def test_expired_only_after_give_up_after(self) -> None:
        policy = RetryPolicy.from_settings(give_up_after=100.0)
        assert not policy.expired(None, 1e9)
        assert not policy.expired(1000.0, 1099.0)
        assert policy.expired(1000.0, 1100.0)

    def test_jitter_spreads_over_the_whole_range(self) -> None:
        """Full jitter, not "equal" jitter: delays near zero and near the ceiling both occur."""
        policy = RetryPolicy.from_settings(
            initial_backoff=1.0, max_backoff=8.0, rng=random.Random(3)
        )
        delays = [policy.backoff(3) for _ in range(2000)]
        assert min(delays) < 0.5 and max(delays) > 7.5
        assert all(0.0 <= d <= 8.0 for d in delays)

    def test_huge_attempt_counts_stay_at_the_cap(self) -> None:
        policy = RetryPolicy.from_settings(
            initial_backoff=2.0, max_backoff=30.0, rng=random.Random(1)
        )
        assert all(policy.backoff(10**6) <= 30.0 for _ in range(100))

    def test_same_seed_same_delays(self) -> None:
        one, two = (RetryPolicy.from_settings(rng=random.Random(42)) for _ in range(2))
        assert [one.delay(n) for n in range(10)] == [two.delay(n) for n in range(10)]

    def test_negative_retry_after_is_no_floor(self) -> None:
        policy = RetryPolicy.from_settings(initial_backoff=0.0, max_backoff=0.0)
        assert policy.delay(0, -5.0) == 0.0
        assert policy.delay(0, 7.0) == 7.0
        assert policy.delay(0, 1e6) == policy.max_retry_after



class TestFromSettings:
    """The policy's bounds are the `retry` section's: one place decides the defaults."""

    def test_defaults_are_the_sections(self) -> None:
        policy, section = RetryPolicy.from_settings(), RetrySettings()
        assert (policy.initial_backoff, policy.max_backoff, policy.give_up_after,
                policy.max_retry_after) == (section.initial_backoff, section.max_backoff,
                                            section.give_up_after, section.max_retry_after)

    def test_a_configured_section(self) -> None:
        section = RetrySettings(initial_backoff="2s", max_backoff="1m", give_up_after="1h",
                                max_retry_after="30s")
        policy = RetryPolicy.from_settings(section)
        assert (policy.initial_backoff, policy.max_backoff, policy.give_up_after,
                policy.max_retry_after) == (2.0, 60.0, 3600.0, 30.0)

    def test_bounds_override_single_values(self) -> None:
        policy = RetryPolicy.from_settings(RetrySettings(give_up_after="1h"), max_backoff=0.5)
        assert (policy.max_backoff, policy.give_up_after) == (0.5, 3600.0)
        assert policy.initial_backoff == RetrySettings().initial_backoff

    def test_every_bound_must_be_given_to_the_constructor(self) -> None:
        with pytest.raises(TypeError):
            RetryPolicy(initial_backoff=1.0)  # type: ignore[call-arg]
