//! Process-wide storage statistics, for the broker's metrics.

use std::sync::LazyLock;

use crate::metrics::Histogram;

/// Latency of every fdatasync the flushers issue.
pub static FSYNC_LATENCY: LazyLock<Histogram> = LazyLock::new(Histogram::default);
