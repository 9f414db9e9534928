//! Capped exponential backoff with jitter, for everything that retries: reopening a
//! camera and reconnecting to the broker.

use std::time::Duration;

/// Capped exponential backoff with jitter (each delay is 50-100% of the nominal one).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        nominal.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let nominal = [100u64, 200, 400, 800, 800];
        for n in nominal {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= n / 2 && d <= n, "{d} not within 50-100% of {n}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
