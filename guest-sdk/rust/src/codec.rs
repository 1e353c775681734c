//! [`Codec`]: how typed state values, map keys and list elements become the bytes the
//! host stores.

use crate::Error;

/// Turns a value into bytes and back, for keyed state ([`ValueState`](crate::ValueState),
/// [`MapState`](crate::MapState), [`ListState`](crate::ListState)). No serde: the common
/// types are implemented here, and a record is a few lines with
/// [`packed::Writer`](crate::packed::Writer) / [`packed::Reader`](crate::packed::Reader).
///
/// Integers and floats encode so that byte order is numeric order (big-endian, sign bit
/// flipped), so a [`MapState`](crate::MapState) keyed by `i64` lists its entries in
/// numeric order. Strings are their UTF-8 bytes (byte order is code-point order).
/// Tuples frame every element but the last with a 4-byte length.
///
/// ```
/// use sluice_guest::{Codec, Error, packed};
///
/// struct Stats { count: i64, mean: f64 }
///
/// impl Codec for Stats {
///     fn encode(&self, out: &mut Vec<u8>) {
///         packed::Writer::new(out).i64(self.count).f64(self.mean);
///     }
///     fn decode(bytes: &[u8]) -> Result<Self, Error> {
///         let mut r = packed::Reader::new(bytes);
///         Ok(Stats { count: r.i64()?, mean: r.f64()? })
///     }
/// }
/// ```
pub trait Codec: Sized {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a value from exactly `bytes`; an error if they are not one.
    fn decode(bytes: &[u8]) -> Result<Self, Error>;

    /// The value's bytes in a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

fn bad_len(ty: &str, want: usize, got: usize) -> Error {
    Error::internal(format!(
        "stored state does not decode as {ty}: {got} bytes, expected {want}"
    ))
}

fn fixed<const N: usize>(ty: &str, bytes: &[u8]) -> Result<[u8; N], Error> {
    bytes.try_into().map_err(|_| bad_len(ty, N, bytes.len()))
}

impl Codec for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

impl Codec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::internal(format!("stored state is not UTF-8: {e}")))
    }
}

impl Codec for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(bad_len("()", 0, bytes.len()))
        }
    }
}

impl Codec for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Error::internal(format!(
                "stored state does not decode as bool: {bytes:?}"
            ))),
        }
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, Error> {
                Ok(<$t>::from_be_bytes(fixed(stringify!($t), bytes)?))
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, Error> {
                let u = <$u>::from_be_bytes(fixed(stringify!($t), bytes)?);
                Ok((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64);

impl Codec for f64 {
    fn encode(&self, out: &mut Vec<u8>) {
        let bits = self.to_bits();
        // Negative numbers: all bits flipped; positive: the sign bit set. Byte order is
        // then numeric order (with -0 < +0 and NaNs at the ends).
        let ordered = if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        };
        out.extend_from_slice(&ordered.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let o = u64::from_be_bytes(fixed("f64", bytes)?);
        let bits = if o >> 63 == 1 { o & !(1 << 63) } else { !o };
        Ok(f64::from_bits(bits))
    }
}

/// Appends `v` framed with its 4-byte little-endian length.
fn framed<T: Codec>(v: &T, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    v.encode(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Splits a framed element off the front of `bytes`.
fn unframe<T: Codec>(bytes: &[u8]) -> Result<(T, &[u8]), Error> {
    let short = || Error::internal("stored state does not decode: a tuple element is cut short");
    let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(short)?.try_into().expect("4"));
    let body = bytes.get(4..4 + len as usize).ok_or_else(short)?;
    Ok((T::decode(body)?, &bytes[4 + len as usize..]))
}

impl<A: Codec, B: Codec> Codec for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        framed(&self.0, out);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (a, rest) = unframe(bytes)?;
        Ok((a, B::decode(rest)?))
    }
}

impl<A: Codec, B: Codec, C: Codec> Codec for (A, B, C) {
    fn encode(&self, out: &mut Vec<u8>) {
        framed(&self.0, out);
        framed(&self.1, out);
        self.2.encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (a, rest) = unframe(bytes)?;
        let (b, rest) = unframe(rest)?;
        Ok((a, b, C::decode(rest)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Codec + PartialEq + std::fmt::Debug>(v: T) {
        assert_eq!(T::decode(&v.to_bytes()).unwrap(), v);
    }

    #[test]
    fn values_round_trip() {
        round_trip(vec![1u8, 2, 3]);
        round_trip("käse".to_string());
        round_trip(());
        round_trip(true);
        round_trip(false);
        for v in [i64::MIN, -5, 0, 7, i64::MAX] {
            round_trip(v);
        }
        for v in [i32::MIN, -1, 0, i32::MAX] {
            round_trip(v);
        }
        for v in [0u64, 1, u64::MAX] {
            round_trip(v);
        }
        for v in [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.25,
            f64::INFINITY,
        ] {
            let back = f64::decode(&v.to_bytes()).unwrap();
            assert_eq!(back.to_bits(), v.to_bits());
        }
        round_trip((7i64, "x".to_string()));
        round_trip(("a".to_string(), vec![9u8], 2.5f64));
    }

    #[test]
    fn numbers_sort_as_bytes() {
        let ints = [i64::MIN, -300, -1, 0, 1, 255, 256, i64::MAX];
        for w in ints.windows(2) {
            assert!(w[0].to_bytes() < w[1].to_bytes(), "{w:?}");
        }
        let floats = [f64::NEG_INFINITY, -1e9, -1.5, -0.0, 0.0, 1e-9, 2.0, 1e300];
        for w in floats.windows(2) {
            assert!(w[0].to_bytes() < w[1].to_bytes(), "{w:?}");
        }
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(i64::decode(&[1, 2, 3]).is_err());
        assert!(bool::decode(&[2]).is_err());
        assert!(String::decode(&[0xff]).is_err());
        assert!(<(i64, i64)>::decode(&[9, 0, 0, 0, 1]).is_err());
        assert!(<()>::decode(&[1]).is_err());
    }
}
