//! Home Assistant's birth messages (`online` on its status topic), coalesced: each one asks
//! for every retained value and picture again, so a client repeating it must not make the
//! gateway flood the broker. The first birth is answered at once; any more within
//! [`BIRTH_WINDOW`] of the last answer get one answer together, at the window's end (a second
//! Home Assistant started meanwhile still gets the pictures).

use tokio::time::{Duration, Instant};

pub const BIRTH_WINDOW: Duration = Duration::from_secs(10);

/// What to do about a birth message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Republish now.
    Now,
    /// Republish at this instant (once, for every birth until then).
    At(Instant),
    /// Covered by an answer already due.
    Covered,
}

#[derive(Debug, Default)]
pub struct Births {
    answered: Option<Instant>,
    due: Option<Instant>,
}

impl Births {
    pub fn on_birth(&mut self, now: Instant) -> Answer {
        if self.due.is_some_and(|due| now < due) {
            return Answer::Covered;
        }
        match self.answered {
            Some(last) if now < last + BIRTH_WINDOW => {
                let at = last + BIRTH_WINDOW;
                self.due = Some(at);
                self.answered = Some(at);
                Answer::At(at)
            }
            _ => {
                self.due = None;
                self.answered = Some(now);
                Answer::Now
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_births_are_answered_once_now_and_once_at_the_windows_end() {
        let start = Instant::now();
        let mut births = Births::default();
        assert_eq!(births.on_birth(start), Answer::Now);
        let end = start + BIRTH_WINDOW;
        assert_eq!(
            births.on_birth(start + Duration::from_millis(10)),
            Answer::At(end)
        );
        for ms in [20, 500, 9_999] {
            assert_eq!(
                births.on_birth(start + Duration::from_millis(ms)),
                Answer::Covered
            );
        }
        // Right after the coalesced answer: the next window.
        assert_eq!(
            births.on_birth(end + Duration::from_secs(1)),
            Answer::At(end + BIRTH_WINDOW)
        );
        // A birth long after: at once.
        let later = end + BIRTH_WINDOW * 3;
        assert_eq!(births.on_birth(later), Answer::Now);
    }
}
