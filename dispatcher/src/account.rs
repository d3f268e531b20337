//! The accounts this dispatcher sends for (each a WhatsApp number behind its own
//! gateway) and which of them a job goes to: the one it names, or the default one
//! (the first configured) when it names none.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::job::JobError;

/// The accounts, the default one first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts(Arc<[String]>);

impl Accounts {
    /// `names` must not be empty and must not repeat a name (the configuration
    /// checks both).
    pub fn new(names: Vec<String>) -> Self {
        assert!(
            !names.is_empty(),
            "a dispatcher sends for at least one account"
        );
        Self(names.into())
    }

    /// One account, the default one, named [`abtrack_proto::account::DEFAULT`].
    pub fn single() -> Self {
        Self::new(vec![abtrack_proto::account::DEFAULT.to_owned()])
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The account of jobs that name none.
    pub fn default_name(&self) -> &str {
        &self.0[0]
    }

    pub fn knows(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }

    /// Which account sends a job naming `account`; `None` when it is none of these.
    pub fn route<'a>(&'a self, account: Option<&'a str>) -> Option<&'a str> {
        match account {
            None => Some(self.default_name()),
            Some(name) => self.knows(name).then_some(name),
        }
    }

    /// Why a job naming `account`, which is none of these, cannot be sent.
    pub fn unknown(&self, account: &str) -> String {
        format!(
            "no account {account:?} is configured; the accounts are: {}",
            self.0.join(", ")
        )
    }

    /// The lane of the account named `name`, if it is one of these.
    pub fn lane(&self, name: &str) -> Option<Lane> {
        self.knows(name).then(|| Lane {
            account: name.to_owned(),
            accounts: self.clone(),
        })
    }

    /// The lane of each account, the default one first.
    pub fn lanes(&self) -> Vec<Lane> {
        self.0
            .iter()
            .map(|name| Lane {
                account: name.clone(),
                accounts: self.clone(),
            })
            .collect()
    }
}

/// The pending jobs one worker leases: those of its account. The default account's
/// lane also takes the jobs that name no account, and ends those that name an
/// account nobody sends for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub account: String,
    pub accounts: Accounts,
}

/// What a lane's lease does with one pending job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The job is this lane's: lease it.
    Take,
    /// Another lane's.
    Skip,
    /// No lane's: it ends failed with this error.
    Unknown(JobError),
}

impl Lane {
    pub fn is_default(&self) -> bool {
        self.account == self.accounts.default_name()
    }

    pub fn pick(&self, account: Option<&str>) -> Pick {
        match self.accounts.route(account) {
            Some(name) if name == self.account => Pick::Take,
            Some(_) => Pick::Skip,
            None if self.is_default() => Pick::Unknown(JobError::new(
                "unknown_account",
                self.accounts.unknown(account.unwrap_or_default()),
            )),
            None => Pick::Skip,
        }
    }

    /// Whether a job naming `account` is in this lane's job list: its own, and for the
    /// default lane those naming no account too.
    pub fn lists(&self, account: Option<&str>) -> bool {
        self.pick(account) == Pick::Take
    }

    /// The accounts whose jobs this lane leaves to their own lanes.
    pub fn others(&self) -> Vec<&str> {
        self.accounts
            .names()
            .iter()
            .map(String::as_str)
            .filter(|n| *n != self.account)
            .collect()
    }
}

/// Wakes the worker of an account when one of its jobs may have become due.
#[derive(Clone)]
pub struct Wake {
    accounts: Accounts,
    /// One per account, in the order of `accounts`.
    workers: Arc<[Notify]>,
}

impl Wake {
    pub fn new(accounts: &Accounts) -> Self {
        Self {
            accounts: accounts.clone(),
            workers: accounts.names().iter().map(|_| Notify::new()).collect(),
        }
    }

    /// The notice the worker of `account` sleeps on.
    pub fn of(&self, account: &str) -> &Notify {
        let i = self
            .accounts
            .names()
            .iter()
            .position(|n| n == account)
            .unwrap_or(0);
        &self.workers[i]
    }

    /// Wakes the worker that takes a job naming `account` (the default account's
    /// worker for a job naming none, or an account nobody sends for).
    pub fn job(&self, account: Option<&str>) {
        let name = self
            .accounts
            .route(account)
            .unwrap_or(self.accounts.default_name());
        self.of(name).notify_one();
    }

    /// Wakes every worker: jobs may have become due outside this dispatcher's writes.
    pub fn all(&self) {
        for worker in self.workers.iter() {
            worker.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts::new(vec!["sd-harapan".into(), "smp-2".into()])
    }

    #[test]
    fn each_job_has_one_lane_and_only_the_default_lane_ends_strangers() {
        let lanes = accounts().lanes();
        let (default, other) = (&lanes[0], &lanes[1]);
        assert!(default.is_default() && !other.is_default());
        for (account, on_default, on_other) in [
            (None, Pick::Take, Pick::Skip),
            (Some("sd-harapan"), Pick::Take, Pick::Skip),
            (Some("smp-2"), Pick::Skip, Pick::Take),
        ] {
            assert_eq!(default.pick(account), on_default, "{account:?}");
            assert_eq!(other.pick(account), on_other, "{account:?}");
        }
        assert_eq!(other.pick(Some("sma-9")), Pick::Skip);
        let Pick::Unknown(error) = default.pick(Some("sma-9")) else {
            panic!("an unknown account is the default lane's to end");
        };
        assert_eq!(error.code, "unknown_account");
        assert_eq!(
            error.message,
            "no account \"sma-9\" is configured; the accounts are: sd-harapan, smp-2"
        );
        assert_eq!(default.others(), ["smp-2"]);
        assert_eq!(other.others(), ["sd-harapan"]);
    }

    #[tokio::test]
    async fn a_due_job_wakes_the_worker_of_its_account() {
        let wake = Wake::new(&accounts());
        wake.job(Some("smp-2"));
        // The permit waits for the worker of smp-2 only.
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            wake.of("smp-2").notified(),
        )
        .await
        .unwrap();
        let default = wake.of("sd-harapan").notified();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), default)
                .await
                .is_err()
        );
        wake.job(Some("sma-9"));
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            wake.of("sd-harapan").notified(),
        )
        .await
        .unwrap();
    }
}
