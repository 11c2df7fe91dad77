//! The open files limit: raised at start-up, and kept from running out. A topic whose
//! partitions would leave fewer than a spare margin of descriptors is refused before it is
//! created, so the connections, the start-up of a restart under the same limit and the
//! rolls of the partitions already there keep the descriptors they need.

/// Open files each partition keeps: its active segment's log (a writer and a reader), offset
/// index and time index. Each closed segment keeps three more, and a segment prepared ahead
/// of a roll four.
pub const FILES_PER_PARTITION: u64 = 4;
/// Open files kept for listeners, connections, rings, the offsets logs and the rest.
const FILES_RESERVED: u64 = 256;

/// The process's limits on open files (soft and hard), or None when they cannot be read.
fn limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Raises the soft limit on open files to the hard limit, as most brokers need, and says
/// how many partitions fit.
pub fn raise_limit() {
    let Some(mut limit) = limits() else {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open files limit");
        return;
    };
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct passed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
            limit.rlim_cur = before;
        }
    }
    let fit = limit.rlim_cur.saturating_sub(FILES_RESERVED) / FILES_PER_PARTITION;
    tracing::info!(
        open_files = limit.rlim_cur,
        raised_from = before,
        partitions = fit,
        "open files limit: about {fit} partitions of one segment fit (each closed segment keeps 3 files more)"
    );
}

/// Descriptors kept spare under `limit`: an eighth of it, at least 16 and at most
/// [`FILES_RESERVED`].
fn spare(limit: u64) -> u64 {
    (limit / 8).clamp(16, FILES_RESERVED)
}

/// Whether `partitions` more partitions fit under the open files limit with the spare
/// margin left; the refusal names the counts. Counts the process's descriptors in
/// /proc/self/fd (topic creation is rare; this is not on the data path). When either count
/// cannot be read the partitions are let through, and opening them reports what happens.
pub fn room_for(partitions: usize) -> Result<(), String> {
    let (Some(limit), Ok(open)) = (limits(), std::fs::read_dir("/proc/self/fd")) else {
        return Ok(());
    };
    check(open.count() as u64, limit.rlim_cur, partitions as u64)
}

fn check(open: u64, limit: u64, partitions: u64) -> Result<(), String> {
    let spare = spare(limit);
    let needed = partitions.saturating_mul(FILES_PER_PARTITION);
    if open.saturating_add(needed).saturating_add(spare) <= limit {
        return Ok(());
    }
    Err(format!(
        "not enough open files for {partitions} more partitions: {open} of the limit of {limit} \
         are open, a partition keeps about {FILES_PER_PARTITION} and {spare} are kept spare for \
         connections and restarts; raise the broker's open files limit (ulimit -n)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_fit_while_the_spare_margin_stays_free() {
        assert_eq!(spare(160), 20);
        assert_eq!(spare(64), 16);
        assert_eq!(spare(1 << 20), FILES_RESERVED);
        // 100 open + 8 partitions x 4 + 20 spare = 152 <= 160.
        assert!(check(100, 160, 8).is_ok());
        assert!(check(108, 160, 8).is_ok());
        let refused = check(109, 160, 8).unwrap_err();
        assert!(refused.contains("109 of the limit of 160"), "{refused}");
        assert!(refused.contains("8 more partitions"), "{refused}");
        assert!(check(0, 160, u64::MAX).is_err());
    }

    #[test]
    fn this_process_has_room_for_one_partition() {
        assert!(room_for(1).is_ok());
    }
}
