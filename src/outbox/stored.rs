//! A retained payload as the outbox keeps it between (re)connections. Discovery is most of
//! what a farm's gateway holds (about 25 KB a printer, written once and sent again only after
//! a reconnect or a Home Assistant restart), and its JSON repeats itself: it is kept deflated,
//! about a sixth of its size. Everything else, small and changing often, is kept as it is.

use std::borrow::Cow;

use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec_with_limit;

/// Payloads at least this long are kept deflated when they are discovery.
const DEFLATE_FROM: usize = 1024;
/// miniz's fastest level: a printer's discovery in a fraction of a millisecond, within a
/// tenth of the best level's size.
const LEVEL: u8 = 1;

#[derive(Debug)]
pub(super) enum Stored {
    Plain(Box<[u8]>),
    Deflated { bytes: Box<[u8]>, len: usize },
}

impl Stored {
    /// `payload` as kept: deflated when `compress` and it is long enough to gain from it.
    pub(super) fn new(payload: Vec<u8>, compress: bool) -> Stored {
        if compress && payload.len() >= DEFLATE_FROM {
            let bytes = compress_to_vec(&payload, LEVEL);
            if bytes.len() < payload.len() {
                return Stored::Deflated {
                    bytes: bytes.into_boxed_slice(),
                    len: payload.len(),
                };
            }
        }
        Stored::Plain(payload.into_boxed_slice())
    }

    /// The payload as it was given.
    pub(super) fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Stored::Plain(bytes) => Cow::Borrowed(bytes),
            Stored::Deflated { bytes, len } => match decompress_to_vec_with_limit(bytes, *len) {
                Ok(plain) => Cow::Owned(plain),
                // Only this module writes these bytes; a failure is a bug, not bad input.
                Err(e) => unreachable!("a payload deflated here does not inflate: {e:?}"),
            },
        }
    }

    pub(super) fn is(&self, payload: &[u8]) -> bool {
        match self {
            Stored::Plain(bytes) => **bytes == *payload,
            Stored::Deflated { len, .. } => *len == payload.len() && *self.bytes() == *payload,
        }
    }

    /// Bytes held (for the bench's and tests' accounting).
    pub(super) fn held(&self) -> usize {
        match self {
            Stored::Plain(bytes) | Stored::Deflated { bytes, .. } => bytes.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_comes_back_as_it_went_in_and_smaller() {
        let discovery: Vec<u8> = (0..400)
            .flat_map(|i| {
                format!("{{\"uniq_id\":\"printer_{i}\",\"stat_t\":\"~/state\"}},").into_bytes()
            })
            .collect();
        let stored = Stored::new(discovery.clone(), true);
        assert!(matches!(stored, Stored::Deflated { .. }));
        assert!(stored.held() * 4 < discovery.len(), "{}", stored.held());
        assert_eq!(*stored.bytes(), *discovery);
        assert!(stored.is(&discovery));
        let mut changed = discovery.clone();
        changed[500] = b'x';
        assert!(!stored.is(&changed));
        assert!(!stored.is(&discovery[1..]));
    }

    #[test]
    fn small_or_data_payloads_stay_plain() {
        let long = vec![b'a'; 4096];
        assert!(matches!(Stored::new(long.clone(), false), Stored::Plain(_)));
        assert!(matches!(
            Stored::new(b"online".to_vec(), true),
            Stored::Plain(_)
        ));
        let plain = Stored::new(long.clone(), false);
        assert!(plain.is(&long) && !plain.is(b"a"));
        assert_eq!(*plain.bytes(), *long);
    }
}
