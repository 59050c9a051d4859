//! Pacing of answers that find no token. Such an answer costs a database read at most (an
//! unknown id) or nothing (an id known to be absent, a wrong secret for a cached token), but
//! a caller who gets it at once can ask again at once: a few hundred callers sending random
//! well-formed tokens as fast as they are answered would keep a core busy and slow every
//! legitimate first validation and `Generate`. So beyond [`FREE_PER_WINDOW`] such answers in
//! a [`WINDOW`] (a rate no deployment sees from mistakes), each further one waits
//! [`DELAY`] to twice that (spread, so that the waiting callers do not come back together)
//! before it is given: a caller that waits for its answers is slowed to a few per second,
//! and the server's work for it with it. Answers that find a token are never paced,
//! and neither is anything a token holder asks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which "no token" answers are counted.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);
/// "No token" answers per window given at once: 1 000 a second.
pub(crate) const FREE_PER_WINDOW: u32 = 100;
/// How long each further one waits, at least (at most twice as long).
pub(crate) const DELAY: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(crate) struct Pacer {
    /// The current window's start and its "no token" answers so far.
    window: Mutex<(Instant, u32)>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Pacer {
    /// Counts one "no token" answer given at `now`; returns how long it must wait.
    pub(crate) fn no_token(&self, now: Instant) -> Option<Duration> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        w.1 = w.1.saturating_add(1);
        let over = w.1 > FREE_PER_WINDOW;
        drop(w);
        over.then(|| {
            use rand::RngExt;
            DELAY + DELAY.mul_f64(rand::rng().random_range(0.0..1.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answers_of_a_window_are_free_and_the_rest_wait() {
        let p = Pacer::default();
        let t0 = Instant::now();
        for _ in 0..FREE_PER_WINDOW {
            assert_eq!(p.no_token(t0), None);
        }
        for _ in 0..1000 {
            let wait = p.no_token(t0 + WINDOW / 2).unwrap();
            assert!((DELAY..DELAY * 2).contains(&wait), "{wait:?}");
        }
        // A new window starts free again.
        assert_eq!(p.no_token(t0 + WINDOW), None);
    }

    #[test]
    fn a_clock_that_steps_back_does_not_reset_or_panic() {
        let p = Pacer::default();
        let t0 = Instant::now() + Duration::from_secs(1);
        for _ in 0..=FREE_PER_WINDOW {
            p.no_token(t0);
        }
        assert!(p.no_token(t0 - Duration::from_millis(500)).is_some());
    }
}
