"""The coordinator's loop: the single owner of an attempt's live state.

It dispatches a job the moment its last dependency succeeds (event driven: it blocks on the event
queue, waking early only to flush history or renew the run's lock), marks the descendants of a
failure UPSTREAM_FAILED while independent branches go on, and cancels cleanly on request.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import DBAPIError

from orchestrator.db.closing import Totals
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.db.rows import ended_columns, started_columns
from orchestrator.errors import DatabaseFault, FencedError, ServiceLostError, ServiceUnavailableError
from orchestrator.executors.base import (
    CancelRequested,
    Event,
    Executor,
    ExecutorFailed,
    JobEnded,
    JobLost,
    TryEnded,
    TryStarted,
)
from orchestrator.history_health import HistoryHealth
from orchestrator.locks.base import RunHandle
from orchestrator.queue_watch import QueueWatch
from orchestrator.reporting import NullReporter, Reporter
from orchestrator.trigger_rules import FAILED, Verdict, evaluate, fails_eagerly
from orchestrator.workflow import JobDef
from workers.retry import decide
from workers.spec import JobTask, TryRecord
from workers.statuses import (
    EXIT_1_JOB_STATUSES,
    AttemptStatus,
    EndReason,
    JobStatus,
    SkipReason,
    check_job_transition,
)

log = logging.getLogger("executioner.coordinator")
# How long one dispatch pass may publish before the loop sees to its lock, history and events.
DISPATCH_SLICE_SECONDS = 0.5
QUEUE_TIMEOUT = "queue_timeout"  # the reason of a job that waited for a worker past its queue_timeout


@dataclass(slots=True)
class JobOutcome:
    status: JobStatus
    exit_code: int | None = None
    retry_count: int = 0
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict:
        return {"status": str(self.status), "exit_code": self.exit_code, "retry_count": self.retry_count}


@dataclass(slots=True)
class AttemptOutcome:
    run_id: int | None
    attempt_id: int | None
    status: AttemptStatus
    jobs: dict[str, JobOutcome]
    totals: Totals | None = None
    cancelled_by: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. resume: the workflow file changed
    inputs: Any = None  # the run's RunInputs (parameters, logical date), shown by --json

    @property
    def failed(self) -> bool:
        return any(j.status in EXIT_1_JOB_STATUSES for j in self.jobs.values())

    @property
    def exit_code(self) -> int:
        if self.cancelled_by is not None:
            return 130
        if (
            self.status in (AttemptStatus.CANCELLED, AttemptStatus.INTERRUPTED, AttemptStatus.FAILED)
            or self.failed
        ):
            return 1
        return 0


@dataclass(slots=True)
class _Live:
    status: JobStatus = JobStatus.PENDING
    dispatched_try: int = 0  # first try number of the current dispatch (0: never dispatched)
    first_started_at: float | None = None
    recorded_tries: set[int] | None = None  # made at the first: an empty set per job is 20 MB at 100,000
    retry_count: int = 0
    exit_code: int | None = None


class Coordinator:
    def __init__(
        self,
        *,
        start: AttemptStart,
        executor: Executor,
        handle: RunHandle,
        recorder: AttemptRecorder,
        reporter: Reporter | None = None,
        max_in_flight: int | None = None,
        history_patience: float = 300.0,
    ) -> None:
        self.start, self.dag, self.executor = start, start.workflow.dag, executor
        executor.label = start.workflow.application_name
        self.handle, self.recorder = handle, recorder
        self.history = HistoryHealth(history_patience)
        self.reporter = reporter or NullReporter()
        self.max_in_flight = max_in_flight  # submitted and not yet ended (the executor's limit)
        self.batch = executor.dispatch_batch(max_in_flight)  # free slots that start a dispatch
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        plan = start.plan
        self.jobs = start.jobs_to_dispatch  # templates rendered (a new run's: at _begin)
        self.rules = {j: job.trigger_rule for j, job in start.workflow.jobs.items()}
        # The run's variables around each job's env (orchestrator.run_inputs): pass_env under it,
        # EXECUTIONER_* over it.
        inputs = start.inputs
        self.env_before = inputs.pass_env if inputs is not None else {}
        self.env_after = inputs.job_env(start.workflow) if inputs is not None else {}
        self.live = {j: _Live() for j in plan.will_run}
        self.waiting = {
            j: sum(1 for p in self.dag.parents(j) if p in self.live) for j in self.live
        }  # unfinished dependencies inside this attempt (the others ended before it)
        self.ready = deque(j for j in plan.will_run if self.waiting[j] == 0)
        self.delayed: list[tuple[float, str, JobTask]] = []  # re-dispatches after a lost worker
        self.in_flight = 0
        self.cancelled_by: str | None = None
        self.began = False
        self._acks: list[Any] = []
        self._next_renewal = 0.0
        self._abandon = False  # stopping without recording the rest: leave running jobs to finish
        # max_run_time: the attempt's deadline (monotonic), set when it begins; past it, it is stopped.
        self.deadline: float | None = None
        self.deadline_missed = False
        self.queues = QueueWatch()  # jobs waiting for a worker: queue_timeout, unconsumed queues

    def request_cancel(self, why: str) -> None:
        """Safe from a signal handler: it only enqueues."""
        self.events.put(CancelRequested(why))

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> AttemptOutcome:
        try:
            while True:
                self._dispatch_ready()
                if self.in_flight == 0 and not self.delayed and (not self.ready or self.cancelled_by):
                    break
                event = self._next_event()
                while event is not None:
                    self._handle(event)
                    event = self._poll()
                self._maintain()
            return self._finish()
        except (DatabaseFault, FencedError):
            # Its jobs go on: their results are kept (journal, stream) and whoever holds the run now
            # (a resume) waits for them and records them. Killing them would only waste their work.
            self._abandon = True
            raise
        except ServiceUnavailableError as exc:
            try:
                self.executor.cancel()
            except Exception as cancel_exc:  # the broker is what failed: the original error is the one
                log.warning("cancelling the jobs of run %s failed: %s", self.recorder.run_id, cancel_exc)
            if self.began:  # the attempt exists now: it did not finish, it was not refused
                raise ServiceLostError(exc.message, exc.details) from None
            raise
        except BaseException:
            # A failure of our own (a bug, an interrupt): stop the jobs we started.
            try:
                self.executor.cancel()
            except Exception as exc:  # the original failure is the one to report
                log.warning("cancelling the jobs of run %s failed: %s", self.recorder.run_id, exc)
            raise
        finally:
            self.executor.close(abandon=self._abandon)

    def _next_event(self) -> Event | None:
        return self._poll(self._seconds_until_next_duty())

    def _poll(self, timeout: float | None = 0.0) -> Event | None:
        try:
            return self.events.get(timeout=timeout) if timeout != 0.0 else self.events.get_nowait()
        except queue.Empty:
            return None

    def _seconds_until_next_duty(self) -> float | None:
        if self._can_dispatch(self.batch):
            return 0.0  # a dispatch slice ended with jobs left: back to it after the duties
        waits = [
            self.history.seconds_until_retry() if self.history.down else self.recorder.seconds_until_due()
        ]
        if self.handle.held:
            waits.append(max(0.0, self._next_renewal - time.monotonic()))
        if self.delayed:
            waits.append(max(0.0, self.delayed[0][0] - time.monotonic()))
        if self.deadline is not None and not self.cancelled_by:
            waits.append(max(0.0, self.deadline - time.monotonic()))
        if self.queues.queued:  # a queue timeout, or the probe for unconsumed queues
            probe = max(self.queues.next_probe, time.monotonic() + 1.0)
            waits.append(max(0.0, min(probe, self.queues.next_deadline() or probe) - time.monotonic()))
        waits = [w for w in waits if w is not None]
        return min(waits) if waits else None

    def _maintain(self) -> None:
        failure = self.executor.failure()
        if failure is not None:
            raise ServiceUnavailableError(
                f"{failure}; the attempt is left for `executioner resume {self.recorder.run_id}`"
            )
        now = time.monotonic()
        if self.queues.queued and not self.cancelled_by:
            self._watch_queues()
        if self.deadline is not None and now >= self.deadline and not self.cancelled_by:
            self.deadline_missed = True
            self._cancel(f"deadline: max_run_time {self.start.workflow.max_run_time:g}s exceeded")
        while self.delayed and self.delayed[0][0] <= now and not self.cancelled_by and not self.history.down:
            _, job_id, task = heapq.heappop(self.delayed)
            self._submit(job_id, task)
            self.executor.flush()
        due = self.history.seconds_until_retry() if self.history.down else self.recorder.seconds_until_due()
        if due is not None and due <= 0:
            self._flush()
        if self.handle.held and now >= self._next_renewal:
            try:
                self.handle.extend()  # raises FencedError if another coordinator took the run
            except DBAPIError as exc:  # the SQL lease's database is away: ride it out like history
                self.history.failed(exc, self.recorder.run_id)
            self._next_renewal = now + self.handle.ttl / 3

    def _watch_queues(self) -> None:
        self.queues.unconsumed(self.executor.consumers)
        for job_id, queue_name, timeout in self.queues.timed_out():
            task = self.queues.tasks[job_id]
            self.queues.left_queue(job_id)
            if not self.executor.withdraw(task):  # it started meanwhile (or cannot be withdrawn)
                continue
            self.in_flight -= 1
            detail = f"no worker started it within {timeout:g}s (queue {queue_name!r})"
            self._settle(
                job_id,
                JobStatus.ERROR,
                None,
                task.first_try,
                time.time(),
                "",
                reason=QUEUE_TIMEOUT,
                detail=detail,
            )

    def _flush(self) -> None:
        try:
            self.recorder.flush()
        except DBAPIError as exc:
            # Nothing is lost meanwhile: events stay in memory here and on disk (journal) or in
            # Redis (stream) until acknowledged, which happens only after they are committed.
            self.history.failed(exc, self.recorder.run_id)
            return
        self.history.recovered(self.recorder.run_id)
        if self._acks:
            self.executor.acknowledge(self._acks)
            self._acks = []

    # -- dispatch ------------------------------------------------------------------------------------

    def _can_dispatch(self, slots: int = 1) -> bool:
        # Nothing new starts while its history cannot be written (``HistoryHealth``).
        free = self.max_in_flight is None or self.max_in_flight - self.in_flight >= slots
        return bool(self.ready) and free and not self.cancelled_by and not self.history.down

    def _dispatch_ready(self) -> None:
        if not self._can_dispatch(self.batch):
            return
        # A slice at a time: publishing 20,000 ready jobs to a broker takes tens of seconds, longer
        # than the run's lock lives unless the loop gets back to renewing it (and to the events).
        until = time.monotonic() + DISPATCH_SLICE_SECONDS
        while self._can_dispatch():
            job_id = self.ready.popleft()
            if not self.began:
                self._begin()
            self._submit(job_id, self._task(self.jobs[job_id]))
            if time.monotonic() >= until:
                break
        self.executor.flush()  # one write for the whole batch just submitted

    def _task(self, job: JobDef) -> JobTask:
        return job.task(
            self.recorder.run_id, self.recorder.attempt_id, self.handle.epoch, self.env_before, self.env_after
        )

    def _begin(self) -> None:
        locks = self.handle.locks
        self.recorder.begin(self.start, self.handle, locks.kind, locks.servers)
        self.jobs = self.start.jobs_to_dispatch
        self._next_renewal = time.monotonic() + self.handle.ttl / 3
        self.began = True
        if self.start.workflow.max_run_time is not None:
            self.deadline = time.monotonic() + self.start.workflow.max_run_time
        self.executor.open(self.recorder.run_id, self.recorder.attempt_id, self.handle.epoch, self.events.put)
        plan = self.start.plan
        self.reporter.attempt_started(
            self.recorder.run_id, self.recorder.attempt_id, len(plan.will_run), len(plan.decisions)
        )

    def _submit(self, job_id: str, task: JobTask) -> None:
        live = self.live[job_id]
        live.status = check_job_transition(live.status, JobStatus.QUEUED)
        live.dispatched_try = task.first_try
        self.recorder.job_update(job_id, status=JobStatus.QUEUED)
        self.in_flight += 1
        self.executor.submit(task)
        self.queues.queued_now(job_id, task, self.jobs[job_id].queue_timeout)
        self.reporter.job_changed(job_id, JobStatus.QUEUED, try_number=task.first_try)

    # -- events --------------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        ack = getattr(event, "ack", None)
        if ack is not None:
            self._acks.append(ack)
        if isinstance(event, CancelRequested):
            self._cancel(event.why)
            return
        if isinstance(event, ExecutorFailed):
            raise ServiceUnavailableError(
                f"{event.reason}; the attempt is left for `executioner resume {self.recorder.run_id}`"
            )
        live = self.live.get(event.job_id)
        if live is None or live.status.is_terminal:
            return  # not ours, or a late copy of something already settled
        if isinstance(event, TryStarted):
            if event.try_number >= live.dispatched_try:
                self._started(event, live)
        elif isinstance(event, TryEnded):
            if event.record.try_number >= live.dispatched_try:  # a try that another follows
                self._record_try(event.job_id, live, event.record, retried=True)
        elif isinstance(event, JobEnded):
            if event.result.tries and event.result.tries[0].try_number == live.dispatched_try:
                self._job_ended(event)
        elif isinstance(event, JobLost) and event.try_number >= live.dispatched_try:
            self._lost(event, live)

    def _started(self, event: TryStarted, live: _Live) -> None:
        self.queues.left_queue(event.job_id)
        columns = started_columns(
            event.worker, event.pid, event.at, first_start=live.first_started_at is None
        )
        if live.first_started_at is None:
            live.first_started_at = event.at
        live.status = check_job_transition(live.status, JobStatus.RUNNING)
        self.recorder.job_update(event.job_id, **columns)
        self.reporter.job_changed(event.job_id, JobStatus.RUNNING, try_number=event.try_number)

    def _record_try(self, job_id: str, live: _Live, record: TryRecord, retried: bool = False) -> None:
        if live.recorded_tries is None:
            live.recorded_tries = set()
        elif record.try_number in live.recorded_tries:
            return
        live.recorded_tries.add(record.try_number)
        if live.first_started_at is None:
            live.first_started_at = record.start_time
        self.recorder.try_ended(job_id, record)
        if retried and record.status.is_failure:
            self.recorder.retried(job_id, record)
        if record.status is not JobStatus.SUCCESS:
            detail = record.error or f"exit {record.exit_code}"
            self.reporter.try_failed(job_id, record.try_number, record.status, detail)

    def _job_ended(self, event: JobEnded) -> None:
        self.queues.left_queue(event.job_id)
        live = self.live[event.job_id]
        for record in event.result.tries:
            self._record_try(event.job_id, live, record, retried=record is not event.result.final)
        final = event.result.final
        self.in_flight -= 1
        self._settle(
            event.job_id,
            final.status,
            final.exit_code,
            final.try_number,
            final.end_time,
            final.worker,
            detail=final.error,
        )

    def _lost(self, event: JobLost, live: _Live) -> None:
        """A worker stopped heart-beating: its try is ERROR; the job's policy says whether to retry."""
        now = time.time()
        record = TryRecord(
            event.try_number, JobStatus.ERROR, None, event.started_at, now, event.worker, error=event.reason
        )
        self._record_try(event.job_id, live, record)
        self.in_flight -= 1
        job = self.jobs[event.job_id]
        decision = decide(
            job.retry,
            status=JobStatus.ERROR,
            exit_code=None,
            try_number=event.try_number,
            elapsed_since_first_start=now - (live.first_started_at or event.started_at),
            jitter_sample=random.random(),
        )
        if decision.retry and not self.cancelled_by:
            task = _redispatch(self._task(job), event.try_number + 1, live.first_started_at)
            live.status = check_job_transition(live.status, JobStatus.QUEUED)
            live.dispatched_try = task.first_try  # a late result of the lost copy is ignored
            heapq.heappush(self.delayed, (time.monotonic() + decision.delay, event.job_id, task))
            return
        self._settle(
            event.job_id,
            JobStatus.ERROR,
            None,
            event.try_number,
            now,
            event.worker,
            reason=EndReason.WORKER_LOST,
            detail=event.reason,
        )

    def _settle(
        self,
        job_id: str,
        status: JobStatus,
        exit_code: int | None,
        try_number: int,
        end_time: float,
        worker: str,
        *,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        live = self.live[job_id]
        live.status = check_job_transition(live.status, status)
        live.exit_code = exit_code
        live.retry_count = max(0, try_number - 1)
        self.recorder.job_update(
            job_id,
            **ended_columns(
                status,
                exit_code=exit_code,
                try_number=try_number,
                first_started_at=live.first_started_at,
                end_time=end_time,
                worker=worker,
                reason=reason,
                detail=detail,
            ),
        )
        if detail is None and exit_code not in (None, 0):
            detail = f"exit {exit_code}"
        self.reporter.job_changed(job_id, status, try_number=try_number, detail=detail or "")
        if status is not JobStatus.CANCELLED:  # a cancel settles every pending job itself
            self._ended(job_id, status)

    def _ended(self, ended: str, status: JobStatus) -> None:
        """A job of this attempt ended: each child waiting on it learns it, and once all of its
        dependencies in this attempt ended, its trigger rule decides (``orchestrator.trigger_rules``).

        A rule that cannot be met after a failure (``all_success``) ends the child UPSTREAM_FAILED at
        once; such ends and rule skips are ends too, walked in turn. A dependency that ended before
        this attempt counts with its effective state, whatever order events arrive in.
        """
        stack = [(ended, status)]
        while stack:
            parent, outcome = stack.pop()
            for child in self.dag.children(parent):
                live = self.live.get(child)
                if live is None:
                    continue
                self.waiting[child] -= 1
                if live.status is not JobStatus.PENDING:
                    continue
                rule = self.rules[child]
                if outcome in FAILED and fails_eagerly(rule):
                    verdict = Verdict.UPSTREAM_FAILED
                elif self.waiting[child] > 0:
                    continue
                else:
                    verdict = evaluate(rule, self._parent_statuses(child))
                if verdict is Verdict.RUN:
                    self.ready.append(child)
                    continue
                if verdict is Verdict.UPSTREAM_FAILED:
                    new, reason, detail = (
                        JobStatus.UPSTREAM_FAILED,
                        EndReason.UPSTREAM,
                        f"upstream {parent!r}",
                    )
                    detail += f" ended {outcome}"
                else:  # SKIP (WAIT cannot happen: every dependency has ended)
                    new, reason, detail = JobStatus.SKIPPED, SkipReason.TRIGGER_RULE, f"{rule} not met"
                live.status = check_job_transition(live.status, new)
                self.recorder.job_update(child, status=new, reason=reason.value, detail=detail)
                self.reporter.job_changed(child, new, detail=detail)
                stack.append((child, new))

    def _parent_statuses(self, job_id: str) -> list[JobStatus]:
        live, before = self.live, self.start.plan.state
        return [live[p].status if p in live else before[p].status for p in self.dag.parents(job_id)]

    def _cancel(self, why: str) -> None:
        if self.cancelled_by is not None:
            return
        self.cancelled_by = why
        self.executor.cancel()  # jobs in flight end CANCELLED through their JobEnded events
        self.ready.clear()
        now = time.time()
        for _, job_id, task in self.delayed:  # waiting to be re-dispatched: never started again
            self._settle(
                job_id,
                JobStatus.CANCELLED,
                None,
                task.first_try - 1,
                now,
                "",
                reason=EndReason.USER_CANCELLED,
                detail=why,
            )
        self.delayed = []
        if self.executor.withdraws_queued:
            for job_id, live in self.live.items():
                if live.status is JobStatus.QUEUED:
                    self.in_flight -= 1
                    self._settle(
                        job_id,
                        JobStatus.CANCELLED,
                        None,
                        live.dispatched_try - 1,
                        now,
                        "",
                        reason=EndReason.USER_CANCELLED,
                        detail=why,
                    )
        for job_id, live in self.live.items():
            if live.status is JobStatus.PENDING:
                live.status = check_job_transition(live.status, JobStatus.CANCELLED)
                self.recorder.job_update(
                    job_id, status=JobStatus.CANCELLED, reason=EndReason.USER_CANCELLED.value, detail=why
                )

    # -- the end -------------------------------------------------------------------------------------

    def _finish(self) -> AttemptOutcome:
        plan = self.start.plan
        outcomes: dict[str, JobOutcome] = {}
        for job_id, decision in plan.decisions.items():
            live = self.live.get(job_id)
            if live is None:
                outcomes[job_id] = JobOutcome(JobStatus.SKIPPED, reason=decision.reason)
            else:
                outcomes[job_id] = JobOutcome(live.status, live.exit_code, live.retry_count)
        if not self.began:
            status = AttemptStatus.CANCELLED if self.cancelled_by else AttemptStatus.PARTIAL
            return AttemptOutcome(None, None, status, outcomes, cancelled_by=self.cancelled_by)
        while True:  # the attempt's end is history too: ride out an outage like any other write
            try:
                status, totals = self.recorder.finish(
                    cancelled=bool(self.cancelled_by),
                    failed_reason="deadline" if self.deadline_missed else None,
                )
                break
            except DBAPIError as exc:
                self.history.failed(exc, self.recorder.run_id)
                self._wait_for_history()
        self.history.recovered(self.recorder.run_id)
        self._flush()  # acknowledges what the last events carried, now that they are committed
        self.reporter.attempt_ended(str(status))
        stopped_by = None if self.deadline_missed else self.cancelled_by  # a deadline is a failure: exit 1
        return AttemptOutcome(
            self.recorder.run_id, self.recorder.attempt_id, status, outcomes, totals, stopped_by
        )

    def _wait_for_history(self) -> None:
        """Until the next retry of a failed write, keep the run's lock renewed."""
        deadline = time.monotonic() + (self.history.seconds_until_retry() or 0.0)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.handle.ttl / 3))  # a timed wait: nothing to wake us earlier
            try:
                self.handle.extend()
            except DBAPIError as exc:
                self.history.failed(exc, self.recorder.run_id)


def _redispatch(task: JobTask, first_try: int, first_started_at: float | None) -> JobTask:
    return replace(task, first_try=first_try, first_started_at=first_started_at)
