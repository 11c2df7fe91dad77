//! Wall-clock time for segment rolls and retention, injectable for tests.

use std::cell::Cell;
use std::rc::Rc;

/// Milliseconds since the Unix epoch, from the system or from a test.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Rc<Cell<i64>>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock::System
    }

    /// A clock that moves only when told to.
    pub fn manual(now_ms: i64) -> Clock {
        Clock::Manual(Rc::new(Cell::new(now_ms)))
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as i64)
                .unwrap_or(0),
            Clock::Manual(now) => now.get(),
        }
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance_ms(&self, delta_ms: i64) {
        if let Clock::Manual(now) = self {
            now.set(now.get() + delta_ms);
        }
    }
}
