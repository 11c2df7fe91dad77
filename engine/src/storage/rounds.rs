//! `DurabilityRounds`: group commit across the partition logs of one thread (a shard).
//!
//! A log's flusher enters a round before it writes and fdatasyncs what it has pending, and
//! leaves it when its own sync is done (its waiters are answered then, not at the end of the
//! round). A round starts when the previous one has ended; every flusher that arrived
//! meanwhile, and every one woken in the same scheduler tick as the first, goes in the same
//! round, so their writes and syncs reach the kernel together. Data that arrives while a
//! round runs rides the next one.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    /// Rounds started so far; the current round's number.
    started: u64,
    /// Members of the current round still writing or syncing.
    running: usize,
    /// Members waiting for the next round.
    gathered: usize,
    /// A first member is letting the others of its tick gather.
    gathering: bool,
}

#[derive(Default)]
pub struct DurabilityRounds {
    state: RefCell<State>,
    started: Notify,
}

/// A place in a round; leaving it (drop) may start the next round.
pub struct RoundMember {
    rounds: Rc<DurabilityRounds>,
    /// The round this member goes in.
    round: u64,
    /// Still the one letting its tick gather (only while `enter` runs).
    starter: bool,
}

thread_local! {
    static THIS_THREAD: Option<Rc<DurabilityRounds>> =
        std::env::var_os("RINGLOG_ROUNDS").map(|_| DurabilityRounds::new());
}

/// The rounds of the logs opened on this thread (an experiment: RINGLOG_ROUNDS set).
pub fn for_this_thread() -> Option<Rc<DurabilityRounds>> {
    THIS_THREAD.with(Clone::clone)
}

impl DurabilityRounds {
    pub fn new() -> Rc<DurabilityRounds> {
        Rc::new(DurabilityRounds::default())
    }

    /// Waits for the next round to start and takes a place in it.
    pub async fn enter(self: &Rc<Self>) -> RoundMember {
        let (mine, starter) = {
            let mut state = self.state.borrow_mut();
            state.gathered += 1;
            let starter = state.running == 0 && !state.gathering;
            if starter {
                state.gathering = true;
            }
            (state.started + 1, starter)
        };
        // From here on this member is counted: if this future is dropped before it returns,
        // the guard takes it out again (or leaves the round it was started in).
        let mut member = RoundMember {
            rounds: self.clone(),
            round: mine,
            starter,
        };
        if starter {
            // Flushers woken in the same tick (one request appended to several partitions)
            // join before the round starts.
            tokio::task::yield_now().await;
            let mut state = self.state.borrow_mut();
            state.gathering = false;
            member.starter = false;
            if state.running == 0 && state.started < mine {
                self.start(&mut state);
            }
        }
        loop {
            let started = self.started.notified();
            if self.state.borrow().started >= mine {
                return member;
            }
            started.await;
        }
    }

    fn start(&self, state: &mut State) {
        state.started += 1;
        state.running = std::mem::take(&mut state.gathered);
        self.started.notify_waiters();
    }
}

impl Drop for RoundMember {
    fn drop(&mut self) {
        let mut state = self.rounds.state.borrow_mut();
        if self.starter {
            state.gathering = false;
        }
        if state.started >= self.round {
            state.running -= 1;
        } else {
            // Dropped while waiting: it never went in.
            state.gathered -= 1;
        }
        if state.running == 0 && state.gathered > 0 && !state.gathering {
            self.rounds.start(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_of_one_tick_share_a_round_and_later_ones_wait_for_it() {
        crate::io::block_on(crate::io::Backend::Portable, async {
            let rounds = DurabilityRounds::new();
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for member in 0..3 {
                let rounds = rounds.clone();
                let log = log.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let place = rounds.enter().await;
                    let round = rounds.state.borrow().started;
                    log.borrow_mut().push((member, round));
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    drop(place);
                    // A second round for member 0, entered while the others may still run.
                    if member == 0 {
                        let _place = rounds.enter().await;
                        let round = rounds.state.borrow().started;
                        log.borrow_mut().push((member, round));
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let log = log.borrow();
            assert_eq!(
                &log[..3],
                &[(0, 1), (1, 1), (2, 1)],
                "one round for one tick"
            );
            assert_eq!(log[3], (0, 2), "the next round after the first ended");
            let state = rounds.state.borrow();
            assert_eq!((state.running, state.gathered), (0, 0));
        })
        .unwrap();
    }
}
