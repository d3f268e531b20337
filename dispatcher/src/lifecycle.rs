//! The job's lifecycle: every transition a job makes, decided here from the job as it
//! is and what happened to it. No I/O: a queue backend reads the job, asks
//! [`decide`], and writes the answer atomically (only if the job did not change since
//! it was read), so both backends move jobs by the same rules.

use crate::error::{Error, Result};
use crate::job::{Finish, Job, JobError, JobStatus, NewJob, Receipt};

/// The limits every transition applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Attempts a job may spend; the lease, the sweep, a restart and a retry all stop
    /// at it.
    pub max_attempts: u32,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A worker wants the job: `owner` holds it until `until` (ms).
    Lease { owner: String, until: i64 },
    /// How `owner`'s attempt ended.
    Finish { owner: String, finish: Finish },
    /// The sweeper found the lease expired: its holder stopped.
    LeaseExpired,
    /// The dispatcher `owner` started again while it held the job.
    Restarted { owner: String },
    /// An operator asked for a failed job to be sent again.
    Retry,
    /// A receipt from the recipient's phone, or the gateway's overdue notice, at `at`.
    Receipt { receipt: Receipt, at: i64 },
    /// The stored job cannot be sent as it is written.
    Malformed(JobError),
}

/// A decided transition: the job as it must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub job: Job,
    /// The job reached an outcome the logger has to record (again).
    pub log: bool,
    /// The step the job's history keeps of it; `None` for a new job (its creation is
    /// read from `created_at`).
    pub step: Option<Step>,
}

/// One step of a job's story, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: i64,
    pub kind: StepKind,
    /// The attempt the step belongs to (0 before the first).
    pub attempt: u32,
    /// The dispatcher that leased the job, for [`StepKind::Leased`].
    pub owner: Option<String>,
    pub error: Option<JobError>,
    /// When the job may be tried again, for [`StepKind::RetryLater`] and
    /// [`StepKind::Released`].
    pub next_attempt_at: Option<i64>,
}

/// What a step was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A dispatcher took the job for an attempt.
    Leased,
    /// WhatsApp's server accepted the message.
    Sent,
    /// The attempt failed for now; the job waits for its next attempt.
    RetryLater,
    /// Given back without spending the attempt (the account's gateway was not ready,
    /// or held the message back).
    Released,
    /// The attempt ended without an outcome (the dispatcher stopped or restarted);
    /// the job waits again.
    Interrupted,
    /// The job ended failed.
    Failed,
    /// An operator sent a failed job again.
    OperatorRetry,
    Delivered,
    Read,
    /// No delivery receipt came within the gateway's delivery timeout.
    DeliveryOverdue,
}

impl StepKind {
    pub const ALL: [StepKind; 10] = [
        StepKind::Leased,
        StepKind::Sent,
        StepKind::RetryLater,
        StepKind::Released,
        StepKind::Interrupted,
        StepKind::Failed,
        StepKind::OperatorRetry,
        StepKind::Delivered,
        StepKind::Read,
        StepKind::DeliveryOverdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Leased => "leased",
            StepKind::Sent => "sent",
            StepKind::RetryLater => "retry_later",
            StepKind::Released => "released",
            StepKind::Interrupted => "interrupted",
            StepKind::Failed => "failed",
            StepKind::OperatorRetry => "operator_retry",
            StepKind::Delivered => "delivered",
            StepKind::Read => "read",
            StepKind::DeliveryOverdue => "delivery_overdue",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// The most steps a job's history keeps: the newest ones (a job released again and
/// again while its account's daily cap holds would otherwise grow without end).
pub const MAX_STEPS: usize = 50;

impl Change {
    /// True when the job now waits in the queue and is due at `now`.
    pub fn is_due(&self, now: i64) -> bool {
        self.job.status == JobStatus::Pending && due_at(&self.job) <= now
    }
}

/// When a pending job may be leased: after `sendAt` and after its retry time.
pub fn due_at(job: &Job) -> i64 {
    job.send_at
        .unwrap_or(0)
        .max(job.next_attempt_at.unwrap_or(0))
}

/// Decides what `event` does to `job` at `now`. `Ok(None)` when the event does not
/// apply (the job is not due, the lease is someone else's, the receipt is already
/// known); an error when the request is refused (only failed jobs can be retried).
pub fn decide(job: &Job, event: &Event, now: i64, rules: &Rules) -> Result<Option<Change>> {
    let mut next = job.clone();
    next.updated_at = now;
    let log = match event {
        Event::Lease { owner, until } => {
            if job.status != JobStatus::Pending || due_at(job) > now {
                return Ok(None);
            }
            if job.attempts >= rules.max_attempts {
                // A job whose attempts all ended without an outcome (the gateway or the
                // dispatcher stopped each time) ends here, before it is sent again.
                let last = job.last_error.clone().unwrap_or_else(|| {
                    JobError::new("attempts_exhausted", "no attempt recorded an outcome")
                });
                fail(&mut next, gave_up(last, job.attempts));
                true
            } else {
                next.status = JobStatus::Processing;
                next.lease_owner = Some(owner.clone());
                next.lease_expires_at = Some(*until);
                next.attempts = job.attempts + 1;
                false
            }
        }
        Event::Finish { owner, finish } => {
            if !held_by(job, owner) {
                return Ok(None);
            }
            clear_lease(&mut next);
            finished(&mut next, finish.clone(), rules)
        }
        Event::LeaseExpired => {
            let expired = job.status == JobStatus::Processing
                && job.lease_expires_at.is_some_and(|at| at <= now);
            if !expired {
                return Ok(None);
            }
            clear_lease(&mut next);
            interrupted(
                &mut next,
                JobError::new(
                    "lease_expired",
                    "the dispatcher holding this job stopped before recording its outcome",
                ),
                rules,
            )
        }
        Event::Restarted { owner } => {
            if !held_by(job, owner) {
                return Ok(None);
            }
            clear_lease(&mut next);
            interrupted(
                &mut next,
                JobError::new(
                    "restarted",
                    "the dispatcher restarted while sending this job",
                ),
                rules,
            )
        }
        Event::Retry => {
            if job.status != JobStatus::Failed {
                return Err(Error::FailedPrecondition(format!(
                    "job {:?} is {}; only failed jobs can be retried",
                    job.id,
                    job.status.as_str()
                )));
            }
            clear_lease(&mut next);
            next.status = JobStatus::Pending;
            next.attempts = 0;
            next.next_attempt_at = None;
            next.last_error = None;
            false
        }
        Event::Receipt { receipt, at } => {
            receipt_arrived(&mut next, *receipt, *at);
            if same_but_time(job, &next) {
                return Ok(None);
            }
            false
        }
        Event::Malformed(error) => {
            clear_lease(&mut next);
            fail(&mut next, error.clone());
            true
        }
    };
    let step = step_of(event, job, &next, now);
    Ok(Some(Change {
        job: next,
        log,
        step: Some(step),
    }))
}

/// The step a transition from `before` to `after` by `event` leaves in the job's
/// history.
fn step_of(event: &Event, before: &Job, after: &Job, now: i64) -> Step {
    let failed = after.status == JobStatus::Failed && before.status != JobStatus::Failed;
    let (kind, at) = match event {
        _ if failed => (StepKind::Failed, now),
        Event::Lease { .. } => (StepKind::Leased, now),
        Event::Finish { finish, .. } => match finish {
            Finish::Sent { .. } => (StepKind::Sent, now),
            Finish::Failed(_) => (StepKind::Failed, now),
            Finish::Retry { .. } => (StepKind::RetryLater, now),
            Finish::Release { .. } => (StepKind::Released, now),
        },
        Event::LeaseExpired | Event::Restarted { .. } => (StepKind::Interrupted, now),
        Event::Retry => (StepKind::OperatorRetry, now),
        Event::Receipt { receipt, at } => match receipt {
            Receipt::Delivered => (StepKind::Delivered, *at),
            Receipt::Read => (StepKind::Read, *at),
            Receipt::Overdue => (StepKind::DeliveryOverdue, now),
        },
        Event::Malformed(_) => (StepKind::Failed, now),
    };
    let error = match kind {
        StepKind::Failed | StepKind::RetryLater | StepKind::Released | StepKind::Interrupted => {
            after.last_error.clone()
        }
        _ => None,
    };
    Step {
        at,
        kind,
        // A released attempt was not spent, yet the step is that attempt's.
        attempt: if kind == StepKind::Released {
            before.attempts
        } else {
            after.attempts
        },
        owner: match event {
            Event::Lease { owner, .. } if kind == StepKind::Leased => Some(owner.clone()),
            _ => None,
        },
        error,
        next_attempt_at: match kind {
            StepKind::RetryLater | StepKind::Released => after.next_attempt_at,
            _ => None,
        },
    }
}

fn held_by(job: &Job, owner: &str) -> bool {
    job.status == JobStatus::Processing && job.lease_owner.as_deref() == Some(owner)
}

fn clear_lease(job: &mut Job) {
    job.lease_owner = None;
    job.lease_expires_at = None;
}

fn fail(job: &mut Job, error: JobError) {
    clear_lease(job);
    job.status = JobStatus::Failed;
    job.next_attempt_at = None;
    job.last_error = Some(error);
    job.delivery_overdue = false;
}

fn gave_up(error: JobError, attempts: u32) -> JobError {
    JobError {
        message: format!("{} (gave up after {attempts} attempts)", error.message),
        code: error.code,
    }
}

/// An attempt that ended without an outcome (or with a transient one): back to the
/// queue, or failed once the attempts are spent. True when the job ended.
fn interrupted(job: &mut Job, error: JobError, rules: &Rules) -> bool {
    if job.attempts >= rules.max_attempts {
        let attempts = job.attempts;
        fail(job, gave_up(error, attempts));
        return true;
    }
    job.status = JobStatus::Pending;
    job.last_error = Some(error);
    false
}

/// Writes how an attempt ended onto a job whose lease was just cleared. True when the
/// job reached an outcome.
fn finished(job: &mut Job, finish: Finish, rules: &Rules) -> bool {
    match finish {
        Finish::Sent {
            message_id,
            recipient,
            recipient_lid,
            sent_at,
        } => {
            // Receipts may have overtaken the outcome; the status follows them.
            job.status = if job.read_at.is_some() {
                JobStatus::Read
            } else if job.delivered_at.is_some() {
                JobStatus::Delivered
            } else {
                JobStatus::Sent
            };
            job.sent_at = Some(sent_at);
            job.message_id = Some(message_id);
            job.recipient = Some(recipient);
            job.recipient_lid = recipient_lid;
            job.next_attempt_at = None;
            job.last_error = None;
            true
        }
        Finish::Failed(error) => {
            fail(job, error);
            true
        }
        Finish::Retry {
            error,
            next_attempt_at,
        } => {
            let ended = interrupted(job, error, rules);
            if !ended {
                job.next_attempt_at = Some(next_attempt_at);
            }
            ended
        }
        Finish::Release {
            error,
            next_attempt_at,
        } => {
            job.status = JobStatus::Pending;
            job.attempts = job.attempts.saturating_sub(1);
            job.next_attempt_at = next_attempt_at;
            job.last_error = Some(error);
            false
        }
    }
}

/// A receipt keeps the first time it was seen; the status only moves forward, and
/// only once the job is sent (a receipt that overtakes the outcome waits in the
/// timestamps). The overdue flag goes only on a job still `sent`; a receipt clears it.
fn receipt_arrived(job: &mut Job, receipt: Receipt, at: i64) {
    match receipt {
        Receipt::Overdue => {
            if job.status == JobStatus::Sent {
                job.delivery_overdue = true;
            }
        }
        Receipt::Delivered => {
            job.delivered_at = job.delivered_at.or(Some(at));
            job.delivery_overdue = false;
            if job.status == JobStatus::Sent {
                job.status = JobStatus::Delivered;
            }
        }
        Receipt::Read => {
            job.read_at = job.read_at.or(Some(at));
            job.delivered_at = job.delivered_at.or(Some(at));
            job.delivery_overdue = false;
            if matches!(job.status, JobStatus::Sent | JobStatus::Delivered) {
                job.status = JobStatus::Read;
            }
        }
    }
}

fn same_but_time(before: &Job, after: &Job) -> bool {
    Job {
        updated_at: before.updated_at,
        ..after.clone()
    } == *before
}

/// Whether an enqueue with an id that already exists repeats the same job (and is
/// answered with it) or names a different one.
pub fn same_job(existing: &Job, job: &NewJob) -> Result<()> {
    if existing.to == job.to
        && existing.message == job.message
        && existing.send_at == job.send_at
        && existing.account == job.account
        && existing.media == job.media
    {
        Ok(())
    } else {
        Err(Error::AlreadyExists {
            field: "id",
            reason: format!("a different job with id {:?} already exists", existing.id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULES: Rules = Rules { max_attempts: 3 };

    fn pending() -> Job {
        Job {
            id: "j".into(),
            to: "081234567890".into(),
            message: "Halo".into(),
            status: JobStatus::Pending,
            attempts: 0,
            lease_owner: None,
            lease_expires_at: None,
            next_attempt_at: None,
            send_at: None,
            created_at: 0,
            updated_at: 0,
            last_error: None,
            sent_at: None,
            message_id: None,
            recipient: None,
            recipient_lid: None,
            delivered_at: None,
            read_at: None,
            delivery_overdue: false,
            account: None,
            media: None,
        }
    }

    fn lease(owner: &str) -> Event {
        Event::Lease {
            owner: owner.into(),
            until: i64::MAX,
        }
    }

    fn sent() -> Finish {
        Finish::Sent {
            message_id: "m".into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            recipient_lid: None,
            sent_at: 5,
        }
    }

    fn error() -> JobError {
        JobError::new("e", "why")
    }

    fn event() -> impl Strategy<Value = Event> {
        let owner = prop_oneof![Just("a".to_owned()), Just("b".to_owned())];
        let finish = prop_oneof![
            Just(sent()),
            Just(Finish::Failed(error())),
            (0..100i64).prop_map(|t| Finish::Retry {
                error: error(),
                next_attempt_at: t
            }),
            proptest::option::of(0..100i64).prop_map(|t| Finish::Release {
                error: error(),
                next_attempt_at: t
            }),
        ];
        let receipt = prop_oneof![
            Just(Receipt::Delivered),
            Just(Receipt::Read),
            Just(Receipt::Overdue)
        ];
        prop_oneof![
            (owner.clone(), 0..120i64).prop_map(|(owner, until)| Event::Lease { owner, until }),
            (owner.clone(), finish).prop_map(|(owner, finish)| Event::Finish { owner, finish }),
            Just(Event::LeaseExpired),
            owner.prop_map(|owner| Event::Restarted { owner }),
            Just(Event::Retry),
            (receipt, 0..100i64).prop_map(|(receipt, at)| Event::Receipt { receipt, at }),
            Just(Event::Malformed(error())),
        ]
    }

    fn rank(status: JobStatus) -> u8 {
        match status {
            JobStatus::Sent => 1,
            JobStatus::Delivered => 2,
            JobStatus::Read => 3,
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever happens, in whatever order: attempts stay within the bound, a
        /// lease is held exactly while processing, outcomes are logged, receipts never
        /// move a job backwards, and a refused or inapplicable event changes nothing.
        #[test]
        fn every_sequence_keeps_the_jobs_invariants(
            events in proptest::collection::vec((event(), 0..100i64), 1..40),
        ) {
            let mut job = pending();
            for (event, now) in events {
                let before = job.clone();
                match decide(&job, &event, now, &RULES) {
                    Err(_) => prop_assert!(matches!(event, Event::Retry) && job.status != JobStatus::Failed),
                    Ok(None) => {}
                    Ok(Some(change)) => {
                        job = change.job;
                        prop_assert_eq!(job.updated_at, now);
                        let became_outcome = job.status.is_terminal()
                            && (!before.status.is_terminal() || matches!(event, Event::Malformed(_)));
                        prop_assert_eq!(change.log, became_outcome, "{:?} -> {:?}", before, job);
                        if let Event::Lease { .. } = event {
                            prop_assert!(due_at(&before) <= now, "leased before due");
                        }
                        if rank(before.status) > 0 && job.status != JobStatus::Failed {
                            prop_assert!(rank(job.status) >= rank(before.status), "{:?} -> {:?}", before.status, job.status);
                        }
                        // Each change leaves one step, which says what the change did.
                        let step = change.step.expect("every decided change has a step");
                        let ended_failed = job.status == JobStatus::Failed
                            && (before.status != JobStatus::Failed || matches!(event, Event::Malformed(_)));
                        prop_assert_eq!(step.kind == StepKind::Failed, ended_failed, "{:?}", step);
                        prop_assert_eq!(
                            step.kind == StepKind::Leased,
                            job.status == JobStatus::Processing && before.status != JobStatus::Processing,
                            "{:?}", step
                        );
                        prop_assert_eq!(
                            step.kind == StepKind::Sent,
                            before.status == JobStatus::Processing && rank(job.status) > 0,
                            "{:?}", step
                        );
                        prop_assert_eq!(step.owner.is_some(), step.kind == StepKind::Leased);
                        if step.error.is_some() {
                            prop_assert_eq!(&step.error, &job.last_error);
                        }
                    }
                }
                prop_assert!(job.attempts <= RULES.max_attempts, "{:?}", job);
                let processing = job.status == JobStatus::Processing;
                prop_assert_eq!(processing, job.lease_owner.is_some());
                prop_assert_eq!(processing, job.lease_expires_at.is_some());
                if rank(job.status) > 0 {
                    prop_assert!(job.message_id.is_some() && job.sent_at.is_some());
                }
                if job.delivery_overdue {
                    prop_assert_eq!(job.status, JobStatus::Sent);
                }
            }
        }

        /// A job whose every attempt ends without an outcome (the gateway or the
        /// dispatcher dies mid-send) ends failed after at most `max_attempts` leases.
        #[test]
        fn attempts_without_an_outcome_are_bounded(
            ends in proptest::collection::vec(0..3u8, 10),
        ) {
            let mut job = pending();
            let mut leases = 0;
            for (now, end) in (1..).zip(ends) {
                let Some(change) = decide(&job, &lease("a"), now, &RULES).unwrap() else {
                    break;
                };
                job = change.job;
                if job.status == JobStatus::Failed {
                    break;
                }
                leases += 1;
                let event = match end {
                    0 => Event::Restarted { owner: "a".into() },
                    1 => Event::Finish {
                        owner: "a".into(),
                        finish: Finish::Retry { error: error(), next_attempt_at: now },
                    },
                    _ => {
                        job.lease_expires_at = Some(now);
                        Event::LeaseExpired
                    }
                };
                job = decide(&job, &event, now, &RULES).unwrap().unwrap().job;
                if job.status == JobStatus::Failed {
                    break;
                }
            }
            prop_assert_eq!(job.status, JobStatus::Failed);
            prop_assert!(leases <= RULES.max_attempts);
            prop_assert!(job.last_error.unwrap().message.contains("gave up after 3 attempts"));
        }
    }

    #[test]
    fn a_job_retried_once_then_read_tells_each_step() {
        let mut job = pending();
        let mut steps = Vec::new();
        let mut apply = |job: &mut Job, event: Event, now: i64| {
            let change = decide(job, &event, now, &RULES).unwrap().unwrap();
            *job = change.job;
            steps.push(change.step.unwrap());
        };
        apply(&mut job, lease("a"), 10);
        let finish = |finish| Event::Finish {
            owner: "a".into(),
            finish,
        };
        apply(
            &mut job,
            finish(Finish::Retry {
                error: error(),
                next_attempt_at: 30,
            }),
            20,
        );
        apply(&mut job, lease("a"), 30);
        apply(&mut job, finish(sent()), 40);
        let receipt = |receipt| Event::Receipt { receipt, at: 55 };
        apply(&mut job, receipt(Receipt::Delivered), 50);
        apply(&mut job, receipt(Receipt::Read), 60);
        let told: Vec<_> = steps
            .iter()
            .map(|s| {
                (
                    s.at,
                    s.kind,
                    s.attempt,
                    s.error.is_some(),
                    s.next_attempt_at,
                )
            })
            .collect();
        assert_eq!(
            told,
            [
                (10, StepKind::Leased, 1, false, None),
                (20, StepKind::RetryLater, 1, true, Some(30)),
                (30, StepKind::Leased, 2, false, None),
                (40, StepKind::Sent, 2, false, None),
                (55, StepKind::Delivered, 2, false, None),
                (55, StepKind::Read, 2, false, None),
            ]
        );
        assert_eq!(steps[0].owner.as_deref(), Some("a"));
        assert_eq!(steps[1].error, Some(error()));
        for kind in StepKind::ALL {
            assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn a_lease_takes_a_due_pending_job_and_counts_the_attempt() {
        let job = pending();
        let leased = decide(&job, &lease("a"), 10, &RULES).unwrap().unwrap();
        assert_eq!(
            (leased.job.status, leased.job.attempts, leased.log),
            (JobStatus::Processing, 1, false)
        );
        // Held jobs and jobs not due are not leased.
        assert_eq!(decide(&leased.job, &lease("b"), 10, &RULES).unwrap(), None);
        let later = Job {
            send_at: Some(20),
            ..pending()
        };
        assert_eq!(decide(&later, &lease("a"), 19, &RULES).unwrap(), None);
        assert!(decide(&later, &lease("a"), 20, &RULES).unwrap().is_some());
    }

    #[test]
    fn only_the_holder_finishes_and_receipts_that_came_first_are_kept() {
        let held = decide(&pending(), &lease("a"), 1, &RULES)
            .unwrap()
            .unwrap()
            .job;
        let by = |owner: &str| Event::Finish {
            owner: owner.into(),
            finish: sent(),
        };
        assert_eq!(decide(&held, &by("b"), 2, &RULES).unwrap(), None);
        let early = decide(
            &held,
            &Event::Receipt {
                receipt: Receipt::Delivered,
                at: 2,
            },
            2,
            &RULES,
        )
        .unwrap()
        .unwrap()
        .job;
        assert_eq!(early.status, JobStatus::Processing);
        let done = decide(&early, &by("a"), 3, &RULES).unwrap().unwrap();
        assert_eq!(
            (done.job.status, done.job.delivered_at, done.log),
            (JobStatus::Delivered, Some(2), true)
        );
        // The same receipt again writes nothing.
        let again = Event::Receipt {
            receipt: Receipt::Delivered,
            at: 9,
        };
        assert_eq!(decide(&done.job, &again, 9, &RULES).unwrap(), None);
    }

    #[test]
    fn a_released_attempt_is_not_counted_and_a_retry_starts_over() {
        let held = decide(&pending(), &lease("a"), 1, &RULES)
            .unwrap()
            .unwrap()
            .job;
        let release = Event::Finish {
            owner: "a".into(),
            finish: Finish::Release {
                error: error(),
                next_attempt_at: Some(50),
            },
        };
        let released = decide(&held, &release, 2, &RULES).unwrap().unwrap().job;
        assert_eq!(
            (released.status, released.attempts, due_at(&released)),
            (JobStatus::Pending, 0, 50)
        );
        let err = decide(&released, &Event::Retry, 3, &RULES).unwrap_err();
        assert!(err.to_string().contains("only failed jobs can be retried"));
        let failed = decide(&released, &Event::Malformed(error()), 3, &RULES)
            .unwrap()
            .unwrap()
            .job;
        let retried = decide(&failed, &Event::Retry, 4, &RULES)
            .unwrap()
            .unwrap()
            .job;
        assert_eq!(
            (retried.status, retried.attempts, retried.last_error),
            (JobStatus::Pending, 0, None)
        );
    }
}
