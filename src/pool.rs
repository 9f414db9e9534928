//! Buffers handed back upstream for reuse, so the steady state allocates no frame-sized
//! memory: decoded images go back from preprocessing to capture, input tensors from
//! inference to preprocessing, top-k lists from the publisher to inference.
//!
//! A pool is a bounded free list: giving never blocks (a full pool lets go of its oldest
//! buffer), taking never waits (an empty pool means "allocate one"). One pool can serve
//! buffers of different shapes (images of cameras of different sizes): [`Pool::take_where`]
//! picks one of the wanted shape, and a shape nobody takes any more ages out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct Pool<T> {
    /// Free buffers, oldest first, with when each was given back.
    free: Arc<Mutex<VecDeque<(Instant, T)>>>,
    capacity: usize,
    /// Buffers left unused longer than this are let go.
    max_idle: Option<Duration>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            free: self.free.clone(),
            capacity: self.capacity,
            max_idle: self.max_idle,
        }
    }
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("free", &self.lock().len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T> Pool<T> {
    /// A pool keeping at most `capacity` free buffers.
    pub fn new(capacity: usize) -> Pool<T> {
        let capacity = capacity.max(1);
        Pool {
            free: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
            max_idle: None,
        }
    }

    /// A pool keeping at most `capacity` free buffers, each for at most `max_idle`: what it
    /// keeps follows how many buffers were in use at once lately, not at the busiest
    /// moment ever (buffers are taken newest first, so the spare ones are the old ones).
    pub fn with_max_idle(capacity: usize, max_idle: Duration) -> Pool<T> {
        Pool {
            max_idle: Some(max_idle),
            ..Pool::new(capacity)
        }
    }

    /// The list, whether or not a holder panicked (a buffer list has no invariant a panic
    /// could break).
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, T)>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the buffers idle for longer than `max_idle` off `free`, to be freed by the
    /// caller outside the lock.
    fn expired(&self, free: &mut VecDeque<(Instant, T)>, now: Instant) -> Vec<T> {
        let Some(max_idle) = self.max_idle else {
            return Vec::new();
        };
        let keep = free
            .iter()
            .position(|(given, _)| now.duration_since(*given) <= max_idle)
            .unwrap_or(free.len());
        free.drain(..keep).map(|(_, b)| b).collect()
    }

    /// The buffer given back last, if any.
    pub fn take(&self) -> Option<T> {
        self.take_where(|_| true)
    }

    /// The most recently given buffer for which `wanted` holds, if any.
    pub fn take_where(&self, wanted: impl Fn(&T) -> bool) -> Option<T> {
        self.take_at(wanted, Instant::now())
    }

    fn take_at(&self, wanted: impl Fn(&T) -> bool, now: Instant) -> Option<T> {
        let (taken, expired) = {
            let mut free = self.lock();
            let expired = self.expired(&mut free, now);
            let at = free.iter().rposition(|(_, b)| wanted(b));
            (at.and_then(|at| free.remove(at)).map(|(_, b)| b), expired)
        };
        drop(expired);
        taken
    }

    /// Gives a buffer back; a full pool lets go of its oldest one for it.
    pub fn give(&self, buffer: T) {
        self.give_at(buffer, Instant::now());
    }

    fn give_at(&self, buffer: T, now: Instant) {
        let (evicted, expired) = {
            let mut free = self.lock();
            let expired = self.expired(&mut free, now);
            let evicted = (free.len() >= self.capacity).then(|| free.pop_front());
            free.push_back((now, buffer));
            (evicted, expired)
        };
        // Freed outside the lock.
        drop((evicted, expired));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_their_capacity_newest_first() {
        let pool: Pool<Vec<f32>> = Pool::new(2);
        assert!(pool.take().is_none());
        pool.give(Vec::with_capacity(1000));
        pool.give(Vec::with_capacity(5));
        assert_eq!(pool.take().map(|v| v.capacity()), Some(5));
        assert_eq!(pool.take().map(|v| v.capacity()), Some(1000));
        assert!(pool.take().is_none());
    }

    #[test]
    fn a_full_pool_lets_go_of_the_oldest() {
        let pool: Pool<u32> = Pool::new(2);
        for b in [1, 2, 3] {
            pool.give(b);
        }
        assert_eq!(pool.take(), Some(3));
        assert_eq!(pool.take(), Some(2));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn buffers_idle_too_long_are_let_go() {
        let pool: Pool<u32> = Pool::with_max_idle(8, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        pool.give_at(1, at(0));
        pool.give_at(2, at(1));
        // One buffer cycles every second; the other is never needed.
        for s in 2..30 {
            let b = pool.take_at(|_| true, at(s)).expect("one is free");
            pool.give_at(b, at(s));
        }
        assert_eq!(pool.take_at(|_| true, at(30)), Some(2));
        assert_eq!(pool.take_at(|_| true, at(30)), None, "1 was let go");
        // Without a limit, nothing ages out.
        let plain: Pool<u32> = Pool::new(8);
        plain.give_at(1, at(0));
        assert_eq!(plain.take_at(|_| true, at(1000)), Some(1));
    }

    #[test]
    fn take_where_picks_the_wanted_shape_and_leaves_the_others() {
        let pool: Pool<Vec<u8>> = Pool::new(4);
        pool.give(vec![0; 10]);
        pool.give(vec![0; 20]);
        pool.give(vec![1; 10]);
        assert_eq!(pool.take_where(|v| v.len() == 10), Some(vec![1; 10]));
        assert_eq!(pool.take_where(|v| v.len() == 30), None);
        assert_eq!(pool.take_where(|v| v.len() == 10), Some(vec![0; 10]));
        assert_eq!(pool.take(), Some(vec![0; 20]));
    }
}
