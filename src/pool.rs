//! Buffers handed back upstream for reuse, so the steady state allocates no frame-sized
//! memory: decoded images go back from preprocessing to capture, input tensors from
//! inference to preprocessing, top-k lists from the publisher to inference.
//!
//! A pool is a bounded channel used as a free list: giving never blocks (a full pool drops
//! the buffer), taking never waits (an empty pool means "allocate one").

use crossbeam_channel::{bounded, Receiver, Sender};

pub struct Pool<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("free", &self.rx.len())
            .finish()
    }
}

impl<T> Pool<T> {
    /// A pool keeping at most `capacity` free buffers.
    pub fn new(capacity: usize) -> Pool<T> {
        let (tx, rx) = bounded(capacity.max(1));
        Pool { tx, rx }
    }

    /// A free buffer, if one was given back.
    pub fn take(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Gives a buffer back (dropped if the pool is full).
    pub fn give(&self, buffer: T) {
        let _ = self.tx.try_send(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_their_capacity_and_a_full_pool_drops() {
        let pool: Pool<Vec<f32>> = Pool::new(1);
        assert!(pool.take().is_none());
        pool.give(Vec::with_capacity(1000));
        pool.give(Vec::with_capacity(5));
        let v = pool.take().expect("one kept");
        assert_eq!(v.capacity(), 1000);
        assert!(pool.take().is_none(), "the second was dropped");
    }
}
