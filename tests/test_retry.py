import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.retry import RetryPolicy, decide
from workers.statuses import JobStatus


def test_delays_grow_by_backoff():
    policy = RetryPolicy(max_retries=5, retry_delay=2, retry_backoff=3)
    assert [policy.next_delay(n) for n in range(1, 5)] == [2, 6, 18, 54]


def test_cap_bounds_the_whole_delay_jitter_included():
    policy = RetryPolicy(max_retries=9, retry_delay=10, retry_backoff=2, retry_jitter=5, max_retry_delay=25)
    assert policy.next_delay(1, jitter_sample=0.0) == 10
    assert policy.next_delay(1, jitter_sample=0.5) == 12.5
    assert policy.next_delay(2, jitter_sample=0.99) == 24.95
    assert policy.next_delay(3, jitter_sample=0.0) == 25


def test_try_numbers_are_one_based():
    with pytest.raises(ValueError):
        RetryPolicy().next_delay(0)


@given(
    delay=st.floats(0, 100),
    backoff=st.floats(1, 5),
    jitter=st.floats(0, 10),
    cap=st.one_of(st.none(), st.floats(0, 50)),
    n=st.integers(1, 20),
    sample=st.floats(0, 0.999),
)
def test_delay_is_never_negative_and_respects_the_cap(delay, backoff, jitter, cap, n, sample):
    policy = RetryPolicy(retry_delay=delay, retry_backoff=backoff, retry_jitter=jitter, max_retry_delay=cap)
    d = policy.next_delay(n, sample)
    assert d >= 0
    if cap is not None:
        assert d <= cap


def test_should_retry_counts_tries():
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(JobStatus.FAILED, 1, try_number=1)
    assert policy.should_retry(JobStatus.FAILED, 1, try_number=2)
    assert not policy.should_retry(JobStatus.FAILED, 1, try_number=3)


def test_should_retry_filters_statuses():
    policy = RetryPolicy(max_retries=3, retry_on_status=frozenset({JobStatus.TIMEOUT}))
    assert policy.should_retry(JobStatus.TIMEOUT, None, 1)
    assert not policy.should_retry(JobStatus.FAILED, 1, 1)
    assert not policy.should_retry(JobStatus.ERROR, None, 1)


def test_exit_code_filter_applies_to_failed_tries_only():
    policy = RetryPolicy(max_retries=3, retry_on_exit_codes=frozenset({75}))
    assert policy.should_retry(JobStatus.FAILED, 75, 1)
    assert not policy.should_retry(JobStatus.FAILED, 1, 1)
    assert policy.should_retry(JobStatus.TIMEOUT, None, 1)
    assert policy.should_retry(JobStatus.ERROR, None, 1)


def test_success_and_cancelled_are_final():
    policy = RetryPolicy(max_retries=5)
    for status in (JobStatus.SUCCESS, JobStatus.CANCELLED):
        assert not decide(
            policy, status=status, exit_code=0, try_number=1, elapsed_since_first_start=0, jitter_sample=0
        ).retry


def test_max_retry_time_forbids_late_retries():
    policy = RetryPolicy(max_retries=5, retry_delay=10, max_retry_time=30)
    early = decide(
        policy,
        status=JobStatus.FAILED,
        exit_code=1,
        try_number=1,
        elapsed_since_first_start=5,
        jitter_sample=0,
    )
    late = decide(
        policy,
        status=JobStatus.FAILED,
        exit_code=1,
        try_number=2,
        elapsed_since_first_start=25,
        jitter_sample=0,
    )
    assert early.retry and early.delay == 10
    assert not late.retry and "max_retry_time" in late.why


def test_round_trip_through_json_shape():
    policy = RetryPolicy(3, 1.5, 2, 0.5, 30, 600, frozenset({JobStatus.FAILED}), frozenset({1, 2}))
    assert RetryPolicy.from_dict(policy.to_dict()) == policy


def test_worst_case_bounds_a_job():
    policy = RetryPolicy(max_retries=2, retry_delay=5, retry_backoff=2)
    assert policy.worst_case_seconds(10) == 10 * 3 + 5 + 10
    assert policy.worst_case_seconds(None) is None
