//! A printer's use of the day (utilization, in `P/stats`): the time it spent printing,
//! paused, needing attention, idle and offline, today and yesterday (UTC days).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bridge::printer::stats::round;
use crate::connect::model::PrinterState;

/// Where a state's time goes in a day's use (`None`: not counted; the printer's state is
/// unknown).
pub fn bucket(state: &PrinterState) -> Option<Bucket> {
    Some(match state {
        PrinterState::Printing => Bucket::Printing,
        PrinterState::Paused => Bucket::Paused,
        PrinterState::Attention | PrinterState::Error => Bucket::Attention,
        PrinterState::Offline => Bucket::Offline,
        PrinterState::Unknown => return None,
        PrinterState::Idle
        | PrinterState::Ready
        | PrinterState::Busy
        | PrinterState::Finished
        | PrinterState::Stopped
        | PrinterState::Manipulating => Bucket::Idle,
        _ => return None,
    })
}

/// The parts of a printer's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Printing,
    Paused,
    Attention,
    Idle,
    Offline,
}

/// Seconds a day spent in each [`Bucket`] (fractions kept: a printer whose state changes
/// every second must not lose its time to rounding; the payload rounds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub date: Option<String>,
    pub printing_s: f64,
    pub paused_s: f64,
    pub attention_s: f64,
    pub idle_s: f64,
    pub offline_s: f64,
}

impl Day {
    fn slot(&mut self, bucket: Bucket) -> &mut f64 {
        match bucket {
            Bucket::Printing => &mut self.printing_s,
            Bucket::Paused => &mut self.paused_s,
            Bucket::Attention => &mut self.attention_s,
            Bucket::Idle => &mut self.idle_s,
            Bucket::Offline => &mut self.offline_s,
        }
    }

    /// The share of the day's counted time spent printing, in percent (one decimal); `None`
    /// with nothing counted.
    pub fn utilization(&self) -> Option<f64> {
        let counted =
            self.printing_s + self.paused_s + self.attention_s + self.idle_s + self.offline_s;
        (counted >= 0.5).then(|| round(self.printing_s * 100.0 / counted, 1))
    }

    /// Adds `other`'s time when it is the same day.
    pub(super) fn merge(&mut self, other: &Day) {
        if other.date.is_none() || other.date != self.date {
            return;
        }
        self.printing_s += other.printing_s;
        self.paused_s += other.paused_s;
        self.attention_s += other.attention_s;
        self.idle_s += other.idle_s;
        self.offline_s += other.offline_s;
    }

    fn payload(&self) -> Value {
        json!({
            "date": self.date,
            "printing_s": self.printing_s.round() as u64,
            "paused_s": self.paused_s.round() as u64,
            "attention_s": self.attention_s.round() as u64,
            "idle_s": self.idle_s.round() as u64,
            "offline_s": self.offline_s.round() as u64,
            "printing_hours": round(self.printing_s / 3600.0, 2),
            "utilization": self.utilization(),
        })
    }
}

/// Today and yesterday.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Days {
    pub today: Day,
    pub yesterday: Day,
}

const DAY: f64 = 86_400.0;

/// The UTC day of `wall` (Unix seconds) as a day number and `YYYY-MM-DD`.
pub fn day_of(wall: f64) -> (i64, String) {
    let day = (wall / DAY).floor() as i64;
    let date = crate::payloads::iso(day as f64 * DAY).unwrap_or_default();
    (day, date.get(..10).unwrap_or_default().to_string())
}

impl Days {
    /// Moves to the day of `wall`: today becomes yesterday (or is dropped, when more than a
    /// day passed).
    pub fn roll(&mut self, wall: f64) {
        if !wall.is_finite() || wall <= 0.0 {
            return;
        }
        let (_, date) = day_of(wall);
        if self.today.date.as_deref() == Some(&date) {
            return;
        }
        let (_, yesterday_date) = day_of(wall - DAY);
        self.yesterday = if self.today.date.as_deref() == Some(&yesterday_date) {
            std::mem::take(&mut self.today)
        } else {
            Day {
                date: Some(yesterday_date),
                ..Day::default()
            }
        };
        self.today = Day {
            date: Some(date),
            ..Day::default()
        };
    }

    /// Counts `from..to` (Unix seconds) in `bucket`, split at midnight; what falls before
    /// yesterday is dropped.
    pub fn add(&mut self, bucket: Bucket, from: f64, to: f64) {
        if !(from.is_finite() && to.is_finite()) || to <= from || from <= 0.0 {
            return;
        }
        let midnight = (to / DAY).floor() * DAY;
        self.roll(to);
        if from < midnight {
            let start = from.max(midnight - DAY);
            *self.yesterday.slot(bucket) += midnight - start;
        }
        *self.today.slot(bucket) += to - from.max(midnight);
    }

    pub(super) fn payload(&self) -> (Value, Value) {
        (self.today.payload(), self.yesterday.payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T00:00:00Z.
    const MIDNIGHT: f64 = 1_800_000_000.0 - 8.0 * 3600.0;

    #[test]
    fn a_days_time_is_split_at_midnight_and_rolls_into_yesterday() {
        let mut d = Days::default();
        d.add(Bucket::Printing, MIDNIGHT - 600.0, MIDNIGHT + 300.0);
        d.add(Bucket::Idle, MIDNIGHT + 300.0, MIDNIGHT + 1200.0);
        assert_eq!(d.yesterday.date.as_deref(), Some("2027-01-14"));
        assert_eq!(d.today.date.as_deref(), Some("2027-01-15"));
        assert_eq!((d.yesterday.printing_s, d.yesterday.idle_s), (600.0, 0.0));
        assert_eq!((d.today.printing_s, d.today.idle_s), (300.0, 900.0));
        assert_eq!(d.today.utilization(), Some(25.0));
        assert_eq!(d.yesterday.utilization(), Some(100.0));
        // The next day: today becomes yesterday.
        d.roll(MIDNIGHT + 86_400.0 + 60.0);
        assert_eq!(d.yesterday.date.as_deref(), Some("2027-01-15"));
        assert_eq!(d.yesterday.idle_s, 900.0);
        assert_eq!(d.today.printing_s, 0.0);
        assert_eq!(d.today.utilization(), None);
        // Two days on: yesterday is an empty day, not an old one.
        d.roll(MIDNIGHT + 3.0 * 86_400.0);
        assert_eq!(d.yesterday.date.as_deref(), Some("2027-01-17"));
        assert_eq!(
            d.yesterday,
            Day {
                date: Some("2027-01-17".into()),
                ..Day::default()
            }
        );
        // Nonsense is ignored.
        let before = d.clone();
        d.add(Bucket::Printing, f64::NAN, MIDNIGHT);
        d.add(Bucket::Printing, MIDNIGHT + 10.0, MIDNIGHT);
        d.roll(-1.0);
        assert_eq!(d, before);
    }
}
