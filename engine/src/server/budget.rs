//! The broker-wide budget of request bytes held (`queued.max.request.bytes`), shared by
//! every shard.
//!
//! A frame whose size is known before its body is read takes its share first, waiting
//! while the budget is spent (the connection stops reading meanwhile); a frame that arrived
//! whole in one read is already in memory and is only charged, never made to wait, so
//! small requests are not stuck behind a large one waiting for room. One frame larger than
//! the whole budget is let in when nothing else is held. Waiters are woken only when some
//! wait, so the data path pays one atomic add and one subtract per frame.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ByteBudget {
    max: usize,
    used: AtomicUsize,
    waiting: AtomicUsize,
    freed: Notify,
}

/// Bytes held against the budget; given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget {
            max: max.max(1),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` (at most the whole budget), waiting until they fit.
    pub async fn take(self: &Arc<Self>, bytes: usize) -> Share {
        let bytes = bytes.min(self.max);
        if self.try_take(bytes) {
            return self.share(bytes);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if self.try_take(bytes) {
                break;
            }
            freed.await;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.share(bytes)
    }

    /// Charges bytes already in memory, without waiting.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Share {
        self.used.fetch_add(bytes, Ordering::SeqCst);
        self.share(bytes)
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used != 0 && used + bytes > self.max {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn share(self: &Arc<Self>, bytes: usize) -> Share {
        Share {
            budget: self.clone(),
            bytes,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.used.fetch_sub(self.bytes, Ordering::SeqCst);
        if budget.waiting.load(Ordering::SeqCst) > 0 {
            budget.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takers_wait_for_room_while_charges_never_wait() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let budget = Arc::new(ByteBudget::new(100));
                let first = budget.take(60).await;
                let charged = budget.charge(50);
                assert_eq!(budget.used(), 110);
                let waiting = {
                    let budget = budget.clone();
                    tokio::spawn(async move { budget.take(60).await })
                };
                tokio::task::yield_now().await;
                assert!(!waiting.is_finished());
                drop(first);
                drop(charged);
                let second = waiting.await.unwrap();
                assert_eq!(budget.used(), 60);
                drop(second);
                // Larger than the whole budget: admitted alone.
                let huge = budget.take(1_000).await;
                assert_eq!(budget.used(), 100);
                drop(huge);
                assert_eq!(budget.used(), 0);
            });
    }
}
