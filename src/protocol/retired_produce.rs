//! Produce v0–v2: advertised, refused with an answer.
//!
//! Kafka 4.x removed these versions (they carry message formats v0 and v1), yet its ApiVersions
//! still advertises Produce from v0 (KAFKA-18659): some librdkafka releases derive their
//! message-format and compression features from whether the broker's Produce range includes
//! v0–v2, and without it silently stop compressing. Strata answers as Kafka 4.1 does, so every
//! client sees the ranges it would see there.
//!
//! A request at one of these versions is decoded here (the protocol crate does not know them)
//! only far enough to name its partitions, and every partition is answered UNSUPPORTED_VERSION.
//! Nothing is appended.
//!
//! Request body (all versions): `acks: i16, timeout_ms: i32, [topic: string,
//! [partition: i32, records: bytes]]`. Response body: `[topic: string, [partition: i32,
//! error_code: i16, base_offset: i64, log_append_time_ms: i64 (v2)]], throttle_time_ms: i32
//! (v1+)`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The newest retired Produce version.
pub const MAX_RETIRED_VERSION: i16 = 2;

/// What a retired Produce request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredProduce {
    pub acks: i16,
    /// Topic names with their partition indexes, in request order.
    pub topics: Vec<(String, Vec<i32>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetiredProduceError {
    #[error("the body ends early (at {0})")]
    Truncated(&'static str),
    #[error("a topic name is not UTF-8")]
    TopicNotUtf8,
    #[error("a negative count or length")]
    Negative,
}

/// Decodes the body of a retired Produce request (the header already read).
pub fn decode(body: &mut Bytes) -> Result<RetiredProduce, RetiredProduceError> {
    use RetiredProduceError::*;
    let acks = get_i16(body, "acks")?;
    let _timeout_ms = get_i32(body, "timeout_ms")?;
    let topic_count = count(body, "topics")?;
    // Every entry takes at least a few bytes, so a count above what is left is a lie; bounding
    // the capacity by the bytes left keeps a forged count from reserving memory.
    let mut topics = Vec::with_capacity(topic_count.min(body.remaining()));
    for _ in 0..topic_count {
        let len = get_i16(body, "topic name")?;
        if len < 0 {
            return Err(Negative);
        }
        let name = take(body, len as usize, "topic name")?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| TopicNotUtf8)?;
        let partition_count = count(body, "partitions")?;
        let mut partitions = Vec::with_capacity(partition_count.min(body.remaining()));
        for _ in 0..partition_count {
            partitions.push(get_i32(body, "partition")?);
            let records = get_i32(body, "records")?;
            if records > 0 {
                take(body, records as usize, "records")?;
            }
        }
        topics.push((name, partitions));
    }
    Ok(RetiredProduce { acks, topics })
}

/// The response body that refuses every partition of `request` with `error_code`.
pub fn refusal(version: i16, request: &RetiredProduce, error_code: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(request.topics.len() as i32);
    for (name, partitions) in &request.topics {
        buf.put_i16(name.len() as i16);
        buf.put_slice(name.as_bytes());
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(*p);
            buf.put_i16(error_code);
            buf.put_i64(-1);
            if version >= 2 {
                buf.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        buf.put_i32(0);
    }
    buf.freeze()
}

fn get_i16(b: &mut Bytes, at: &'static str) -> Result<i16, RetiredProduceError> {
    b.try_get_i16()
        .map_err(|_| RetiredProduceError::Truncated(at))
}

fn get_i32(b: &mut Bytes, at: &'static str) -> Result<i32, RetiredProduceError> {
    b.try_get_i32()
        .map_err(|_| RetiredProduceError::Truncated(at))
}

fn count(b: &mut Bytes, at: &'static str) -> Result<usize, RetiredProduceError> {
    match get_i32(b, at)? {
        n if n < 0 => Err(RetiredProduceError::Negative),
        n => Ok(n as usize),
    }
}

fn take(b: &mut Bytes, len: usize, at: &'static str) -> Result<Bytes, RetiredProduceError> {
    if b.remaining() < len {
        return Err(RetiredProduceError::Truncated(at));
    }
    Ok(b.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(acks: i16, topics: &[(&str, &[i32])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1500);
        b.put_i32(topics.len() as i32);
        for (name, partitions) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(partitions.len() as i32);
            for p in *partitions {
                b.put_i32(*p);
                b.put_i32(3);
                b.put_slice(b"abc");
            }
        }
        b.freeze()
    }

    #[test]
    fn names_every_partition_and_refuses_each() {
        let mut body = request(-1, &[("a", &[0, 2]), ("bb", &[1])]);
        let decoded = decode(&mut body).expect("decodes");
        assert_eq!(body.remaining(), 0);
        assert_eq!(
            decoded,
            RetiredProduce {
                acks: -1,
                topics: vec![("a".into(), vec![0, 2]), ("bb".into(), vec![1])]
            }
        );
        let mut v2 = refusal(2, &decoded, 35);
        assert_eq!(v2.get_i32(), 2);
        assert_eq!((v2.get_i16(), &v2.split_to(1)[..]), (1, &b"a"[..]));
        assert_eq!(v2.get_i32(), 2);
        assert_eq!(
            (v2.get_i32(), v2.get_i16(), v2.get_i64(), v2.get_i64()),
            (0, 35, -1, -1)
        );
        assert_eq!(
            (v2.get_i32(), v2.get_i16(), v2.get_i64(), v2.get_i64()),
            (2, 35, -1, -1)
        );
        assert_eq!((v2.get_i16(), &v2.split_to(2)[..]), (2, &b"bb"[..]));
        assert_eq!(v2.get_i32(), 1);
        assert_eq!(
            (v2.get_i32(), v2.get_i16(), v2.get_i64(), v2.get_i64()),
            (1, 35, -1, -1)
        );
        assert_eq!(v2.get_i32(), 0, "throttle time");
        assert_eq!(v2.remaining(), 0);
        // v0 has neither the append time nor the throttle time.
        assert_eq!(
            refusal(0, &decoded, 35).len(),
            4 + (2 + 1 + 4 + 2 * 14) + (2 + 2 + 4 + 14)
        );
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let full = request(1, &[("topic", &[0])]);
        for cut in 0..full.len() {
            assert!(decode(&mut full.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&mut Bytes::from(bytes));
        }
    }
}
