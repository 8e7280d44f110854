//! Shards (`connect.shard = "k/n"`): several gateways share one account's printers, each
//! bridging those whose uuid hashes to it. Rendezvous (highest random weight) hashing: each
//! printer goes to the shard with the highest score for it, so going from n to n + 1 shards
//! moves only the printers the new shard wins, about 1/(n + 1) of them, and no printer moves
//! between the shards that stay.

use std::fmt;

use serde::Deserialize;

/// The most shards a setup may have.
pub const MAX_SHARDS: u32 = 1000;

/// Shard `k` of `n` (1 ≤ k ≤ n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl TryFrom<String> for Shard {
    type Error = String;

    fn try_from(text: String) -> Result<Shard, String> {
        Shard::parse(&text)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// `"k/n"`, e.g. `"2/3"`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "{text:?} is not a shard: write \"k/n\", this instance's number k from 1 to the \
                 number of shards n (at most {MAX_SHARDS}), e.g. \"2/3\""
            )
        };
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n || n > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    /// Whether this shard bridges the printer `uuid`.
    pub fn owns(&self, uuid: &str) -> bool {
        owner(uuid, self.n) == self.k
    }
}

/// The shard (1..=n) that bridges printer `uuid` when there are `n`.
pub fn owner(uuid: &str, n: u32) -> u32 {
    (1..=n.max(1))
        .max_by_key(|&j| (score(uuid, j), std::cmp::Reverse(j)))
        .unwrap_or(1)
}

/// Printer `uuid`'s score for shard `j`: FNV-1a over the uuid's bytes and `j`, then the
/// SplitMix64 finalizer. Fixed here (not the standard library's hasher, which may change
/// between Rust releases): every instance and every version must agree.
fn score(uuid: &str, j: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uuid.bytes().chain(j.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("c0ffee00-0000-4000-8000-{i:012x}"))
            .collect()
    }

    #[test]
    fn shards_parse_and_bad_ones_are_explained() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { k: 2, n: 3 }));
        assert_eq!(Shard::parse(" 1 / 1 "), Ok(Shard { k: 1, n: 1 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "", "1/1001", "-1/3"] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("\"k/n\""), "{bad}: {e}");
        }
    }

    #[test]
    fn every_printer_has_exactly_one_shard_and_they_share_evenly() {
        let all = uuids(3000);
        let mut counts = [0usize; 3];
        for u in &all {
            let owners: Vec<u32> = (1..=3).filter(|&k| Shard { k, n: 3 }.owns(u)).collect();
            assert_eq!(owners.len(), 1, "{u}: {owners:?}");
            counts[owners[0] as usize - 1] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_fourth_shard_takes_about_a_quarter_and_nothing_moves_between_the_others() {
        let all = uuids(3000);
        let mut moved = 0;
        for u in &all {
            let (before, after) = (owner(u, 3), owner(u, 4));
            if before != after {
                assert_eq!(after, 4, "{u} moved from {before} to {after}");
                moved += 1;
            }
        }
        assert!((600..=900).contains(&moved), "{moved} of 3000 moved");
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Instances of different versions must agree: these must never change. (Worked out
        // apart, by a Python transcription of `score`.)
        assert_eq!(owner("7d9a1f3e-0000-4000-8000-000000000001", 3), 3);
        assert_eq!(owner("7d9a1f3e-0000-4000-8000-000000000002", 3), 3);
        assert_eq!(owner("7d9a1f3e-0000-4000-8000-000000000003", 5), 2);
    }
}
