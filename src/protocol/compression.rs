//! Kafka's record compression codecs, framed as Kafka's own broker writes them, so every client
//! reads what Strata recompresses:
//!
//! - **gzip** (1): a gzip stream (RFC 1952); several concatenated members are read as one.
//! - **snappy** (2): snappy-java's framing (a 16-byte `\x82SNAPPY\0` header, then blocks of at
//!   most 32 KiB, each a 4-byte big-endian length and a raw snappy block). Raw snappy without
//!   the header is read too, as Kafka's reader does.
//! - **lz4** (3): an LZ4 frame with independent 64 KiB blocks and no checksums, as Kafka's
//!   `Lz4BlockOutputStream` writes.
//! - **zstd** (4): a zstd frame.
//!
//! What is compressed is the records part of a batch (everything after the 61-byte header),
//! never the header. Decompression is bounded: a batch that inflates past the caller's limit is
//! refused rather than filling memory.

use std::io::{Read, Write};

/// A record batch's compression codec (the low three bits of its attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a batch's attributes; ids 5-7 are not codecs.
    pub fn from_attributes(attributes: i16) -> Result<Codec, CompressionError> {
        match attributes & 0x07 {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            id => Err(CompressionError::UnknownCodec { id }),
        }
    }

    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// The name Kafka's configs use (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    #[error("unknown compression codec id {id}")]
    UnknownCodec { id: i16 },
    #[error("cannot decompress {codec} records: {reason}")]
    Corrupt { codec: Codec, reason: String },
    #[error("{codec} records decompress to more than {limit_bytes} bytes")]
    TooLarge { codec: Codec, limit_bytes: usize },
    #[error("cannot compress records with {codec}: {reason}")]
    Compress { codec: Codec, reason: String },
}

const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// The magic, then version 1 and minimum compatible version 1 (big-endian i32s).
const SNAPPY_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's default block size, which Kafka's `SnappyOutputStream` keeps.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;

fn corrupt(codec: Codec, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

/// Reads all of `r` into a vector, failing once it passes `limit` bytes.
fn read_bounded(codec: Codec, r: impl Read, limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge {
            codec,
            limit_bytes: limit,
        });
    }
    Ok(out)
}

/// The uncompressed records of `data`, compressed with `codec`; at most `limit` bytes.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit),
        Codec::Snappy => snappy_decompress(data, limit),
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit)
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit)
        }
    }
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Codec::Snappy;
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |out: &mut Vec<u8>, raw: &[u8]| -> Result<(), CompressionError> {
        let len = snap::raw::decompress_len(raw).map_err(|e| corrupt(codec, e))?;
        if out.len() + len > limit {
            return Err(CompressionError::TooLarge {
                codec,
                limit_bytes: limit,
            });
        }
        let at = out.len();
        out.resize(at + len, 0);
        decoder
            .decompress(raw, &mut out[at..])
            .map_err(|e| corrupt(codec, e))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(SNAPPY_MAGIC) {
        block(&mut out, data)?;
        return Ok(out);
    }
    let mut rest = data
        .get(SNAPPY_HEADER.len()..)
        .ok_or_else(|| corrupt(codec, "truncated header"))?;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt(codec, "truncated block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let raw = tail
            .get(..len)
            .ok_or_else(|| corrupt(codec, "truncated block"))?;
        block(&mut out, raw)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// `data` compressed with `codec` at `level` (gzip: 1-9, -1 for zlib's default 6; lz4: 1 is
/// the fast compressor, 2-17 high compression, which the lz4 library caps at 12; zstd:
/// -131072-22; snappy has no level). Levels are validated where configs are; here an out of
/// range level is left to the library, which clamps.
pub fn compress(codec: Codec, level: i32, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let failed = |e: std::io::Error| CompressionError::Compress {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => {
            let level = if level < 0 {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(level.clamp(0, 9) as u32)
            };
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(SNAPPY_HEADER.len() + data.len() / 2);
            out.extend_from_slice(SNAPPY_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_BLOCK_BYTES) {
                let raw = encoder
                    .compress_vec(chunk)
                    .map_err(|e| CompressionError::Compress {
                        codec,
                        reason: e.to_string(),
                    })?;
                out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
                out.extend_from_slice(&raw);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            // Kafka's level 1 is lz4's fast compressor (frame level 0); higher levels are
            // lz4's high-compression levels.
            let frame_level = if level <= 1 { 0 } else { level as u32 };
            let mut e = lz4::EncoderBuilder::new()
                .level(frame_level)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(failed)?;
            e.write_all(data).map_err(failed)?;
            let (out, result) = e.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        Codec::Zstd => zstd::bulk::compress(data, level).map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn codec_ids_round_trip() {
        for c in ALL {
            assert_eq!(Codec::from_attributes(c.id() | 0x08), Ok(c));
        }
        assert!(Codec::from_attributes(5).is_err());
    }

    #[test]
    fn bombs_are_bounded() {
        let zeros = vec![0u8; 1 << 20];
        for c in ALL.into_iter().skip(1) {
            let packed = compress(c, 3, &zeros).expect("compress");
            assert!(matches!(
                decompress(c, &packed, 1000),
                Err(CompressionError::TooLarge { .. })
            ));
            assert_eq!(decompress(c, &packed, 1 << 20).expect("fits"), zeros);
        }
    }

    #[test]
    fn raw_snappy_is_read() {
        let data = b"raw snappy without the snappy-java header".repeat(10);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compress");
        assert_eq!(decompress(Codec::Snappy, &raw, 1 << 20).expect("raw"), data);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in ALL.into_iter().skip(1) {
            assert!(decompress(c, b"\x82SNAPPY\x00 not really anything", 1 << 20).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..100_000), level in 1i32..9) {
            for c in ALL {
                let packed = compress(c, level, &data).expect("compress");
                prop_assert_eq!(&decompress(c, &packed, data.len()).expect("decompress"), &data);
            }
        }
    }
}
