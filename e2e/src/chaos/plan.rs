//! The seeded part of a chaos run: a small SplitMix64 generator, and the schedule it
//! draws (when each job is written, when each service is killed and how long it stays
//! down). The same seed gives the same schedule; the processes' own timing still varies.

use std::time::Duration;

/// SplitMix64 (Steele, Lea and Flood): tiny, fast and good enough to draw a schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A duration in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi - lo).mul_f64(self.unit())
    }

    /// A whole number in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A seed for a run: `CHAOS_SEED` when set, otherwise drawn from the clock.
pub fn seed_from_env() -> Result<u64, String> {
    match std::env::var("CHAOS_SEED") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map_err(|_| format!("CHAOS_SEED: expected a whole number, got {text:?}")),
        _ => Ok(fresh_seed()),
    }
}

pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Mixed once so seeds of runs started close together look unrelated.
    Rng::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
}

/// What the run does to the outside world at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL.
    Kill(&'static str),
    /// The dispatcher starts again under its previous `DISPATCHER_ID` (it takes back
    /// at once the jobs it held) or under a new one (its old leases must expire).
    Start {
        service: &'static str,
        same_id: bool,
    },
    /// The in-process emulator stops serving (every connection cut), keeping its data.
    StopEmulator,
    StartEmulator,
}

/// One planned job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    pub at: Duration,
    pub id: String,
    pub to: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Sorted by time.
    pub actions: Vec<(Duration, Action)>,
    /// Sorted by time.
    pub jobs: Vec<PlannedJob>,
}

impl Schedule {
    pub fn count(&self, wanted: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|(_, a)| wanted(a)).count()
    }

    pub fn kills(&self, service: &str) -> usize {
        self.count(|a| matches!(a, Action::Kill(s) if *s == service))
    }
}

/// Dispatcher kills: 5 in a run of 150 s or more, fewer in shorter ones, at least 2.
pub fn dispatcher_kills(duration: Duration) -> usize {
    (duration.as_secs() / 30).clamp(2, 5) as usize
}

/// Logger kills: 3 in a run of 3 minutes or more, at least 1.
pub fn logger_kills(duration: Duration) -> usize {
    (duration.as_secs() / 60).clamp(1, 3) as usize
}

const GATEWAY_UP: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(6));
const DOWN: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(2500));

/// Draws the whole run: `jobs` jobs written at random moments of the first 90% of
/// `duration`; the gateway up for 2–6 s between kills; the dispatcher and the logger
/// killed a few times each, once in each equal slice of the middle 80% of the run;
/// the emulator restarted once, when `emulator` is true. Every service is up again
/// before `duration` ends.
pub fn draw(seed: u64, jobs: usize, duration: Duration, emulator: bool) -> Schedule {
    let mut rng = Rng::new(seed);
    let mut actions = Vec::new();

    let mut t = Duration::ZERO;
    loop {
        let kill = t + rng.between(GATEWAY_UP.0, GATEWAY_UP.1);
        let down = rng.between(DOWN.0, Duration::from_millis(1500));
        if kill + down >= duration {
            break;
        }
        actions.push((kill, Action::Kill("wa-gateway")));
        actions.push((
            kill + down,
            Action::Start {
                service: "wa-gateway",
                same_id: true,
            },
        ));
        t = kill + down;
    }

    let window = |rng: &mut Rng, i: usize, n: usize| {
        let slice = duration.mul_f64(0.8 / n as f64);
        // The middle of each slice, so restarts of one service never overlap.
        duration.mul_f64(0.1) + slice * i as u32 + slice.mul_f64(0.2 + 0.4 * rng.unit())
    };
    let n = dispatcher_kills(duration);
    for i in 0..n {
        let kill = window(&mut rng, i, n);
        let down = rng.between(DOWN.0, DOWN.1);
        let same_id = rng.chance(0.5);
        actions.push((kill, Action::Kill("dispatcher")));
        actions.push((
            kill + down,
            Action::Start {
                service: "dispatcher",
                same_id,
            },
        ));
    }
    let n = logger_kills(duration);
    for i in 0..n {
        let kill = window(&mut rng, i, n);
        let down = rng.between(DOWN.0, DOWN.1);
        actions.push((kill, Action::Kill("sheets-logger")));
        actions.push((
            kill + down,
            Action::Start {
                service: "sheets-logger",
                same_id: true,
            },
        ));
    }
    if emulator {
        let stop = duration.mul_f64(0.3 + 0.4 * rng.unit());
        let down = rng.between(Duration::from_millis(500), Duration::from_millis(2000));
        actions.push((stop, Action::StopEmulator));
        actions.push((stop + down, Action::StartEmulator));
    }
    actions.sort_by_key(|(at, _)| *at);

    let mut times: Vec<Duration> = (0..jobs)
        .map(|_| duration.mul_f64(0.9 * rng.unit()))
        .collect();
    times.sort();
    let jobs = times
        .into_iter()
        .enumerate()
        .map(|(n, at)| PlannedJob {
            at,
            id: format!("chaos-{seed:x}-{n:05}"),
            // An Indonesian mobile number: 08, a second digit of the mobile ranges
            // (not 0 or 4), nine more.
            to: format!(
                "08{}{:09}",
                [1, 2, 3, 5, 6, 7, 8, 9][rng.below(8) as usize],
                rng.below(1_000_000_000)
            ),
            message: format!("Pesan uji {n}: ananda tiba pukul 07:{:02}", rng.below(60)),
        })
        .collect();
    Schedule { actions, jobs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // The first outputs for seed 1234567 of the reference implementation.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule() {
        let a = draw(42, 50, Duration::from_secs(40), true);
        let b = draw(42, 50, Duration::from_secs(40), true);
        let c = draw(43, 50, Duration::from_secs(40), true);
        assert_eq!(a.actions, b.actions);
        assert_eq!(a.jobs, b.jobs);
        assert_ne!(a.actions, c.actions);
    }

    #[test]
    fn every_kill_is_followed_by_a_start_inside_the_run() {
        for seed in 0..200 {
            let duration = Duration::from_secs(40 + seed % 600);
            let s = draw(seed, 150, duration, seed % 2 == 0);
            assert_eq!(s.kills("dispatcher"), dispatcher_kills(duration));
            assert_eq!(s.kills("sheets-logger"), logger_kills(duration));
            assert!(s.kills("wa-gateway") >= (duration.as_secs() / 8) as usize);
            assert_eq!(
                s.count(|a| *a == Action::StopEmulator),
                usize::from(seed % 2 == 0)
            );
            for service in ["wa-gateway", "dispatcher", "sheets-logger"] {
                let mut up = true;
                for (at, action) in &s.actions {
                    assert!(*at < duration, "seed {seed}: {action:?} at {at:?}");
                    match action {
                        Action::Kill(s) if *s == service => {
                            assert!(up, "seed {seed}: {service} killed while down");
                            up = false;
                        }
                        Action::Start { service: s, .. } if *s == service => {
                            assert!(!up, "seed {seed}: {service} started while up");
                            up = true;
                        }
                        _ => {}
                    }
                }
                assert!(up, "seed {seed}: {service} is up at the end");
            }
            assert_eq!(s.jobs.len(), 150);
            assert!(s.jobs.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(s.jobs.iter().all(|j| j.at < duration.mul_f64(0.9)));
        }
    }

    #[test]
    fn kill_counts_scale_with_the_length_of_the_run() {
        assert_eq!(dispatcher_kills(Duration::from_secs(40)), 2);
        assert_eq!(dispatcher_kills(Duration::from_secs(600)), 5);
        assert_eq!(logger_kills(Duration::from_secs(40)), 1);
        assert_eq!(logger_kills(Duration::from_secs(600)), 3);
    }
}
