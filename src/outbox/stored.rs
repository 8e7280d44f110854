//! A retained payload as the outbox keeps it between (re)connections. Discovery is most of
//! what a farm's gateway holds (about 25 KB a printer, written once and sent again only after
//! a reconnect or a Home Assistant restart), and its JSON repeats itself: it is kept deflated,
//! about a sixth of its size. Everything else, small and changing often, is kept as it is,
//! in bytes that the publish shares (no copy a publish).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec_with_limit;

/// Payloads at least this long are kept deflated when they are discovery.
const DEFLATE_FROM: usize = 1024;
/// miniz's fastest level: a printer's discovery in a fraction of a millisecond, within a
/// tenth of the best level's size.
const LEVEL: u8 = 1;

#[derive(Debug)]
pub(super) enum Stored {
    Plain(Bytes),
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
        // At its length: a `Vec`'s spare capacity would stay allocated as long as the value.
        Stored::Plain(Bytes::from(payload.into_boxed_slice()))
    }

    /// The payload as it was given.
    pub(super) fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Stored::Plain(bytes) => Cow::Borrowed(bytes.as_ref()),
            Stored::Deflated { bytes, len } => match decompress_to_vec_with_limit(bytes, *len) {
                Ok(plain) => Cow::Owned(plain),
                // Only this module writes these bytes; a failure is a bug, not bad input.
                Err(e) => unreachable!("a payload deflated here does not inflate: {e:?}"),
            },
        }
    }

    /// The payload as it was given, to hand over: plain bytes are shared, not copied.
    pub(super) fn shared(&self) -> Bytes {
        match self {
            Stored::Plain(bytes) => bytes.clone(),
            Stored::Deflated { .. } => Bytes::from(self.bytes().into_owned()),
        }
    }

    pub(super) fn is(&self, payload: &[u8]) -> bool {
        match self {
            Stored::Plain(bytes) => *bytes == *payload,
            Stored::Deflated { len, .. } => *len == payload.len() && *self.bytes() == *payload,
        }
    }

    /// Bytes held (for the bench's and tests' accounting).
    pub(super) fn held(&self) -> usize {
        match self {
            Stored::Plain(bytes) => bytes.len(),
            Stored::Deflated { bytes, .. } => bytes.len(),
        }
    }
}

/// A picture the outbox keeps, to hand over as it is (not a copy).
pub(super) fn picture(image: &Arc<Vec<u8>>) -> Bytes {
    struct Picture(Arc<Vec<u8>>);
    impl AsRef<[u8]> for Picture {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    Bytes::from_owner(Picture(image.clone()))
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
        assert_eq!(stored.shared(), discovery);
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
        assert_eq!(plain.shared(), long);
    }
}
