//! How fast the fleet's feeds are caught up with on the `connect.feed_interval` schedule:
//! spread evenly, so a farm started at once does not read every feed at once.

use std::time::Duration;

/// Scheduled feed reads one poll may make: `printers` × `tick` / `every`, rounded up, so the
/// fleet's reads are spread evenly over the interval (50 printers, a 30 s poll and 10 minutes:
/// 3 a poll).
pub fn feed_quota(printers: usize, tick: Duration, every: Duration) -> usize {
    if every.is_zero() || printers == 0 {
        return 0;
    }
    (printers as f64 * tick.as_secs_f64() / every.as_secs_f64()).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_spreads_a_fleet_over_the_interval() {
        let s = Duration::from_secs;
        assert_eq!(feed_quota(50, s(30), s(600)), 3, "2.5 rounded up");
        assert_eq!(feed_quota(1, s(30), s(600)), 1);
        assert_eq!(feed_quota(500, s(30), s(600)), 25);
        assert_eq!(feed_quota(50, s(5), s(600)), 1);
        assert_eq!(feed_quota(0, s(30), s(600)), 0);
        assert_eq!(feed_quota(50, s(30), Duration::ZERO), 0, "off");
    }
}
