//! The one binary encoding of everything tangaroa sends, stores, signs or hashes:
//! [postcard](https://docs.rs/postcard) 1 over serde (LEB128 varint integers, a varint
//! variant index per enum, a varint length per sequence; a documented, stable format).
//!
//! It replaced bincode 1.3, unmaintained since 2025 (RUSTSEC-2025-0141; bincode 2 is under
//! the same advisory). Both formats are versioned, so a node of another build refuses
//! rather than misreads: frames carry [`WIRE_VERSION`] as their first body byte
//! (`transport::frame`), and a data directory records [`DISK_VERSION`] in its `format`
//! file (`storage`). bincode was, implicitly, version 1 of both.
//!
//! Signatures and the hash chain cover this encoding too (`crypto::Domain`,
//! `protocol::log::payload_bytes`), so the signing domain names the wire version.

use crate::cost::{timed, Work};
use serde::{Deserialize, Serialize};

/// The version of the frame format, the first byte of every frame body. Version 3: status
/// reports carry the log base, snapshot index and disk use. Version 4: Checkpoint and
/// Snapshot messages (state transfer).
pub const WIRE_VERSION: u8 = 4;

/// The version of the data directory's record format, in its `format` file. Version 3:
/// the log in segment files starting with a segment start, and a snapshot file.
pub const DISK_VERSION: u32 = 3;

/// Encodes `v`. Every type tangaroa encodes has a known length for each sequence, so
/// encoding into memory cannot fail.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    timed(Work::Codec, || {
        postcard::to_stdvec(v).expect("in-memory postcard encoding cannot fail")
    })
}

/// Appends the encoding of `v` to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(v: &T, buf: Vec<u8>) -> Vec<u8> {
    timed(Work::Codec, || {
        postcard::to_extend(v, buf).expect("in-memory postcard encoding cannot fail")
    })
}

/// The length of `v`'s encoding, without allocating it.
pub fn encoded_size<T: Serialize + ?Sized>(v: &T) -> usize {
    timed(Work::Codec, || {
        postcard::serialize_with_flavor::<T, _, usize>(v, postcard::ser_flavors::Size::default())
            .expect("in-memory postcard encoding cannot fail")
    })
}

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("{0} bytes after the value")]
    Trailing(usize),
}

/// Decodes exactly one value: trailing bytes are an error, as are truncation and
/// garbage. A sequence's claimed length is never trusted for an allocation beyond what
/// serde's cautious size hint allows (1 MiB); it fails when the bytes run out.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    let (v, rest) = timed(Work::Codec, || postcard::take_from_bytes(bytes))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(v)
}

/// The most signatures one certificate or proof can carry: one per node, and a
/// configuration has at most 1024 nodes (`config`).
pub const MAX_SIGNERS: usize = 1024;

/// Deserializes the votes of an election proof or the Acks of a prepared certificate:
/// at most [`MAX_SIGNERS`] elements, refused as soon as the claimed length or the
/// elements decoded pass it. postcard encodes an unsigned vote or Ack in about five
/// bytes, so an unbounded list of them in a 16 MiB frame would decode to hundreds of MiB
/// (each element is a few hundred bytes in memory); `frame::admit` bounds entries the
/// same way, by count.
pub fn at_most_signers<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_SIGNERS} signed elements")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            use serde::de::Error;
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_SIGNERS {
                return Err(A::Error::invalid_length(hint, &self));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(x) = seq.next_element()? {
                if out.len() == MAX_SIGNERS {
                    return Err(A::Error::invalid_length(MAX_SIGNERS + 1, &self));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded(std::marker::PhantomData))
}

/// Reads the varint-encoded integers and fixed-size fields at the front of an encoding,
/// without decoding it (frame admission looks at tags and counts before decoding).
pub(crate) struct Peek<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Peek<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Peek<'a> {
        Peek { bytes, at: 0 }
    }

    /// The next LEB128 varint (at most 10 bytes), or `None` if the bytes end first.
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// Skips `n` bytes; `None` if fewer are left.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    /// Bytes not read yet.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Skips `n` varints.
    pub(crate) fn skip_varints(&mut self, n: usize) -> Option<()> {
        for _ in 0..n {
            self.varint()?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_what_postcard_writes() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut bytes = encode(&(v, 7u32));
            assert_eq!(Peek::new(&bytes).varint(), Some(v));
            let mut p = Peek::new(&bytes);
            p.skip_varints(1).unwrap();
            assert_eq!(p.varint(), Some(7));
            bytes.truncate(bytes.len() - 2);
            let mut p = Peek::new(&bytes);
            p.varint();
            assert_eq!(p.varint(), None);
        }
        assert_eq!(Peek::new(&[0xff; 11]).varint(), None);
        assert!(Peek::new(&[1, 2]).skip(3).is_none());
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Signers {
        #[serde(deserialize_with = "at_most_signers")]
        acks: Vec<(u8, Option<u8>)>,
    }

    /// A list of signed elements longer than any cluster's is refused whether its length
    /// claims too much or its elements run on; up to the bound it decodes.
    #[test]
    fn signer_lists_are_bounded() {
        let ok = Signers {
            acks: vec![(1, None); MAX_SIGNERS],
        };
        assert_eq!(
            decode::<Signers>(&encode(&ok)).unwrap().acks.len(),
            MAX_SIGNERS
        );
        let over = Signers {
            acks: vec![(1, None); MAX_SIGNERS + 1],
        };
        let e = decode::<Signers>(&encode(&over)).unwrap_err().to_string();
        assert!(!e.is_empty());
        // 3 million elements claimed in a 16 MiB body: refused from the length alone.
        let mut flood = vec![0xc0, 0x8d, 0xb7, 0x01]; // varint 3_000_000
        flood.resize(16 << 20, 1);
        assert!(decode::<Signers>(&flood).is_err());
    }

    #[test]
    fn decode_refuses_trailing_bytes_and_truncation() {
        let mut bytes = encode(&(5u64, String::from("abc")));
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap().1, "abc");
        bytes.push(0);
        assert!(decode::<(u64, String)>(&bytes).is_err());
        bytes.truncate(bytes.len() - 2);
        assert!(decode::<(u64, String)>(&bytes).is_err());
    }
}
