//! `state.dir/spoolman.json`: the uses of filament not reported yet, and the jobs already
//! reported. Each decision here is pure; the worker carries them out and saves the ledger
//! before anything it records can matter.
//!
//! Spoolman's `use` is not idempotent: asked twice, it counts twice. So before a use is first
//! sent, the spool's used weight is read and saved with it (its `baseline`). A report whose
//! answer never came (a timeout, a restart) is checked against it before it is sent again:
//! if the used weight grew by the use, it went through. Someone else using the same spool in
//! between can only make a report look done (counted once too few), never count one twice.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Jobs reported (or given up) remembered, newest last: a job announced again after a crash
/// is not reported twice.
const DONE_KEPT: usize = 1000;

/// One job's filament, to be added to a spool's used weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Use {
    /// The printer's uuid, and the job (together they name the use).
    pub printer: String,
    pub job: u64,
    pub spool: u64,
    pub grams: f64,
    /// The spool's used weight before this use was first sent (see the module's note).
    #[serde(default)]
    pub baseline: Option<f64>,
}

impl Use {
    fn key(&self) -> (String, u64) {
        (self.printer.clone(), self.job)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    /// In the order the jobs ended; the first is the one being reported.
    pub pending: VecDeque<Use>,
    /// `(printer uuid, job id)` of the uses reported or given up.
    pub done: VecDeque<(String, u64)>,
}

/// What to do about the first use, given what Spoolman says the spool has used now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Send it (its baseline is now known and must be saved first).
    Send,
    /// It went through before (its answer was lost): nothing to send.
    AlreadyCounted,
    /// Spoolman shows no used weight for the spool: whether a report went through cannot be
    /// told, so none is sent.
    Unknowable,
}

impl Ledger {
    /// Takes `u` unless its job is already pending or done.
    pub fn add(&mut self, u: Use) -> bool {
        let key = u.key();
        if self.done.contains(&key) || self.pending.iter().any(|p| p.key() == key) {
            return false;
        }
        self.pending.push_back(u);
        true
    }

    pub fn first(&self) -> Option<&Use> {
        self.pending.front()
    }

    /// The first use, with the spool's used weight read now (`None`: Spoolman shows none).
    pub fn step(&mut self, used_now: Option<f64>) -> Option<Step> {
        let first = self.pending.front_mut()?;
        let Some(used) = used_now else {
            return Some(Step::Unknowable);
        };
        Some(match first.baseline {
            None => {
                first.baseline = Some(used);
                Step::Send
            }
            // Spoolman adds the same two numbers; a thousandth of a gram covers rounding.
            Some(before) if used + 0.001 >= before + first.grams => Step::AlreadyCounted,
            Some(_) => Step::Send,
        })
    }

    /// The first use is reported, or given up: it is never sent again.
    pub fn finish_first(&mut self) -> Option<Use> {
        let done = self.pending.pop_front()?;
        self.done.push_back(done.key());
        while self.done.len() > DONE_KEPT {
            self.done.pop_front();
        }
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_use(job: u64, grams: f64) -> Use {
        Use {
            printer: "u1".into(),
            job,
            spool: 3,
            grams,
            baseline: None,
        }
    }

    #[test]
    fn a_job_is_taken_once_pending_or_done() {
        let mut ledger = Ledger::default();
        assert!(ledger.add(a_use(7, 12.5)));
        assert!(!ledger.add(a_use(7, 12.5)), "pending");
        assert_eq!(ledger.step(Some(100.0)), Some(Step::Send));
        ledger.finish_first();
        assert!(!ledger.add(a_use(7, 12.5)), "done");
        assert!(ledger.add(a_use(8, 1.0)));
    }

    #[test]
    fn a_report_whose_answer_was_lost_is_checked_before_it_is_sent_again() {
        let mut ledger = Ledger::default();
        ledger.add(a_use(7, 12.5));
        assert_eq!(ledger.step(Some(100.0)), Some(Step::Send));
        assert_eq!(ledger.first().unwrap().baseline, Some(100.0));
        // Spoolman did not count it: sent again, against the first baseline.
        assert_eq!(ledger.step(Some(100.0)), Some(Step::Send));
        assert_eq!(ledger.first().unwrap().baseline, Some(100.0));
        // It did (the answer was lost).
        assert_eq!(ledger.step(Some(112.5)), Some(Step::AlreadyCounted));
        assert_eq!(ledger.step(None), Some(Step::Unknowable));
    }

    #[test]
    fn the_jobs_done_are_remembered_up_to_a_bound() {
        let mut ledger = Ledger::default();
        for job in 0..(DONE_KEPT as u64 + 5) {
            ledger.add(a_use(job, 1.0));
            ledger.finish_first();
        }
        assert_eq!(ledger.done.len(), DONE_KEPT);
        assert!(
            ledger.add(a_use(0, 1.0)),
            "forgotten after {DONE_KEPT} more"
        );
        assert!(!ledger.add(a_use(DONE_KEPT as u64 + 4, 1.0)));
    }

    #[test]
    fn the_ledger_survives_a_round_trip_and_reads_an_older_file() {
        let mut ledger = Ledger::default();
        ledger.add(a_use(7, 12.5));
        ledger.step(Some(4.0));
        let json = serde_json::to_string(&ledger).unwrap();
        assert_eq!(serde_json::from_str::<Ledger>(&json).unwrap(), ledger);
        let bare: Ledger = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, Ledger::default());
    }
}
