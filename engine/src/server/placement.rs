//! Which shard serves a new connection. The kernel spreads connections over the shards'
//! SO_REUSEPORT listeners by a hash of their addresses, so a few busy clients can land on
//! one shard while the other idles (at the maximum rate, both producers on one shard left
//! it at three times the other's CPU). A shard that accepts a connection while serving
//! more than the least busy shard hands it to that one; on a tie it keeps it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections each shard serves, counted from placement to the end of serving.
#[derive(Debug)]
pub struct ConnectionPlacement {
    open: Vec<AtomicUsize>,
}

impl ConnectionPlacement {
    pub fn new(shards: usize) -> ConnectionPlacement {
        ConnectionPlacement {
            open: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Places a connection accepted on shard `accepting`: the shard serving the fewest
    /// connections, or `accepting` when it serves no more than that one. The connection
    /// counts against the chosen shard until the returned slot is dropped.
    pub fn place(self: &Arc<Self>, accepting: usize) -> Placed {
        let accepting = accepting.min(self.open.len() - 1);
        let mine = self.open[accepting].load(Ordering::Relaxed);
        let least = (0..self.open.len())
            .min_by_key(|shard| self.open[*shard].load(Ordering::Relaxed))
            .unwrap_or(accepting);
        let shard = if self.open[least].load(Ordering::Relaxed) < mine {
            least
        } else {
            accepting
        };
        self.open[shard].fetch_add(1, Ordering::Relaxed);
        Placed {
            placement: self.clone(),
            shard,
        }
    }

    /// Connections shard `shard` serves now.
    pub fn serving(&self, shard: usize) -> usize {
        self.open
            .get(shard)
            .map_or(0, |open| open.load(Ordering::Relaxed))
    }

    pub fn shards(&self) -> usize {
        self.open.len()
    }
}

/// A placed connection's slot on its shard; dropping it (when the connection ends, or if it
/// never reaches the shard) frees the slot.
pub struct Placed {
    placement: Arc<ConnectionPlacement>,
    pub shard: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.placement.open[self.shard].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_busy_shard_and_stay_on_a_tie() {
        let placement = Arc::new(ConnectionPlacement::new(2));
        // Four connections, all accepted on shard 1: they end up two and two.
        let first = placement.place(1);
        assert_eq!(
            first.shard, 1,
            "a tie keeps the connection where it was accepted"
        );
        let second = placement.place(1);
        assert_eq!(second.shard, 0);
        let third = placement.place(1);
        assert_eq!(third.shard, 1);
        let fourth = placement.place(1);
        assert_eq!(fourth.shard, 0);
        assert_eq!((placement.serving(0), placement.serving(1)), (2, 2));
        // A connection ending frees its slot; the next one fills it.
        drop(second);
        assert_eq!(placement.serving(0), 1);
        assert_eq!(placement.place(1).shard, 0);
        drop((first, third, fourth));
        assert_eq!(placement.serving(0) + placement.serving(1), 0);
    }
}
