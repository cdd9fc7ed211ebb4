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

use serde::{Deserialize, Serialize};

/// The version of the frame format, the first byte of every frame body.
pub const WIRE_VERSION: u8 = 2;

/// The version of the data directory's record format, in its `format` file.
pub const DISK_VERSION: u32 = 2;

/// Encodes `v`. Every type tangaroa encodes has a known length for each sequence, so
/// encoding into memory cannot fail.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("in-memory postcard encoding cannot fail")
}

/// Appends the encoding of `v` to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(v: &T, buf: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(v, buf).expect("in-memory postcard encoding cannot fail")
}

/// The length of `v`'s encoding, without allocating it.
pub fn encoded_size<T: Serialize + ?Sized>(v: &T) -> usize {
    postcard::serialize_with_flavor::<T, _, usize>(v, postcard::ser_flavors::Size::default())
        .expect("in-memory postcard encoding cannot fail")
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
    let (v, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(v)
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
