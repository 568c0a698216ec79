//! Glue to the `kafka-protocol` crate: framing constants, string conversions, and the one place
//! where Strata's typed errors become Kafka error codes.

pub mod compression;
pub mod control;
pub mod fetch_session;
pub mod record_batch;
pub mod records;
pub mod retired_produce;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes, VersionRange};

use retired_produce::RetiredProduce;

/// The Kafka release whose API version ranges ApiVersions advertises (docs/protocol.md).
pub const KAFKA_RELEASE: &str = "4.1";

/// Strata's own admin API for mirror links, on the Kafka port (docs/protocol.md, "Strata's own
/// APIs"). Kafka has no public API for links; this key lies far above Kafka's range, is not
/// advertised in ApiVersions (which lists Kafka 4.1's APIs only), and is spoken only by the
/// `strata mirror` tool. Body and response body are one JSON document each.
pub const STRATA_MIRROR_LINKS_API_KEY: i16 = 32000;
/// The one version of [`STRATA_MIRROR_LINKS_API_KEY`].
pub const STRATA_MIRROR_LINKS_VERSION: i16 = 0;

/// Strata's own admin API for restores from the object store (docs/protocol.md, "Strata's
/// own APIs"): creates topics under given ids. Not advertised, like the mirror links key.
pub const STRATA_RESTORE_TOPICS_API_KEY: i16 = 32001;
/// The one version of [`STRATA_RESTORE_TOPICS_API_KEY`].
pub const STRATA_RESTORE_TOPICS_VERSION: i16 = 0;

/// The size prefix of every request and response frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// Why a request frame could not be decoded; the connection is closed with this logged.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("malformed Strata mirror links request header: {0}")]
    MalformedStrata(String),
    #[error("unsupported api {api_key:?}")]
    UnsupportedApi { api_key: ApiKey },
    #[error("unsupported version {version} of {api_key:?} (supported {min}..={max})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api_key:?} v{version} {part}: {message}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        part: &'static str,
        message: String,
    },
}

/// A decoded request frame.
#[derive(Debug)]
pub enum Decoded {
    Request {
        header: RequestHeader,
        request: RequestKind,
        trailing_bytes: usize,
    },
    /// ApiVersions at a version newer than this broker's: answered at v0 (KIP-511).
    UnsupportedApiVersions { correlation_id: i32 },
    /// Produce v0–v2: advertised and refused, see [`retired_produce`].
    RetiredProduce {
        header: RequestHeader,
        request: RetiredProduce,
    },
    /// Strata's mirror links admin API: request header v1, then a JSON body.
    MirrorLinks { header: RequestHeader, body: Bytes },
    /// Strata's restore admin API: request header v1, then a JSON body.
    RestoreTopics { header: RequestHeader, body: Bytes },
}

/// The versions of each API this broker serves; `None` for an API it does not serve. The
/// server passes the handlers' table, so this layer needs no knowledge of handlers.
pub type SupportedVersions = fn(ApiKey) -> Option<VersionRange>;

/// Decodes a request frame (without its size prefix): header, then body, at a version this
/// broker serves. Never panics, whatever the bytes.
pub fn decode_request(
    mut frame: Bytes,
    supported_versions: SupportedVersions,
) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if api_key_raw == STRATA_MIRROR_LINKS_API_KEY {
        if version != STRATA_MIRROR_LINKS_VERSION {
            return Err(DecodeError::UnknownApiKey(api_key_raw));
        }
        let header = RequestHeader::decode(&mut frame, 1)
            .map_err(|e| DecodeError::MalformedStrata(e.to_string()))?;
        return Ok(Decoded::MirrorLinks {
            header,
            body: frame,
        });
    }
    if api_key_raw == STRATA_RESTORE_TOPICS_API_KEY {
        if version != STRATA_RESTORE_TOPICS_VERSION {
            return Err(DecodeError::UnknownApiKey(api_key_raw));
        }
        let header = RequestHeader::decode(&mut frame, 1)
            .map_err(|e| DecodeError::MalformedStrata(e.to_string()))?;
        return Ok(Decoded::RestoreTopics {
            header,
            body: frame,
        });
    }
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| DecodeError::UnknownApiKey(api_key_raw))?;
    let range = supported_versions(api_key).ok_or(DecodeError::UnsupportedApi { api_key })?;
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let malformed = |part, e: anyhow::Error| DecodeError::Malformed {
        api_key,
        version,
        part,
        message: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed("header", e))?;
    if api_key == ApiKey::Produce && version <= retired_produce::MAX_RETIRED_VERSION {
        let request = retired_produce::decode(&mut frame)
            .map_err(|e| malformed("body", anyhow::Error::new(e)))?;
        return Ok(Decoded::RetiredProduce { header, request });
    }
    let request =
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| malformed("body", e))?;
    Ok(Decoded::Request {
        header,
        request,
        trailing_bytes: frame.remaining(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Encodable;
    use proptest::prelude::*;

    /// A table like the handlers' one: Metadata 0-13, ApiVersions 0-4, Produce 0-13.
    fn served(key: ApiKey) -> Option<VersionRange> {
        match key {
            ApiKey::Metadata => Some(VersionRange { min: 0, max: 13 }),
            ApiKey::ApiVersions => Some(VersionRange { min: 0, max: 4 }),
            ApiKey::Produce => Some(VersionRange { min: 0, max: 13 }),
            _ => None,
        }
    }

    fn frame_for(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(str_bytes("t")));
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn decodes_a_request_and_refuses_what_is_not_served() {
        let frame = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default());
        match decode_request(frame.clone(), served) {
            Ok(Decoded::Request {
                header,
                request: RequestKind::Metadata(_),
                trailing_bytes: 0,
            }) => {
                assert_eq!(header.correlation_id, 7)
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut bumped = BytesMut::from(&frame[..]);
        bumped[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(bumped.freeze(), served),
            Err(DecodeError::UnsupportedVersion { version: 99, .. })
        ));
        let mut api_versions = BytesMut::new();
        api_versions.put_i16(ApiKey::ApiVersions as i16);
        api_versions.put_i16(99);
        api_versions.put_i32(42);
        assert!(matches!(
            decode_request(api_versions.freeze(), served),
            Ok(Decoded::UnsupportedApiVersions { correlation_id: 42 })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 0, 0]), served),
            Err(DecodeError::TooShort(3))
        ));
    }

    #[test]
    fn the_restore_key_decodes_its_header_and_keeps_the_json_body() {
        let mut b = BytesMut::new();
        b.put_i16(STRATA_RESTORE_TOPICS_API_KEY);
        b.put_i16(STRATA_RESTORE_TOPICS_VERSION);
        b.put_i32(9);
        b.put_i16(1);
        b.put_slice(b"r");
        b.put_slice(br#"{"topics":[]}"#);
        match decode_request(b.clone().freeze(), served) {
            Ok(Decoded::RestoreTopics { header, body }) => {
                assert_eq!(header.correlation_id, 9);
                assert_eq!(&body[..], br#"{"topics":[]}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        b[2..4].copy_from_slice(&1i16.to_be_bytes());
        assert!(matches!(
            decode_request(b.freeze(), served),
            Err(DecodeError::UnknownApiKey(STRATA_RESTORE_TOPICS_API_KEY))
        ));
    }

    #[test]
    fn the_mirror_links_key_decodes_its_header_and_keeps_the_json_body() {
        let mut b = BytesMut::new();
        b.put_i16(STRATA_MIRROR_LINKS_API_KEY);
        b.put_i16(STRATA_MIRROR_LINKS_VERSION);
        b.put_i32(5);
        b.put_i16(1);
        b.put_slice(b"c");
        b.put_slice(br#"{"op":"list"}"#);
        match decode_request(b.clone().freeze(), served) {
            Ok(Decoded::MirrorLinks { header, body }) => {
                assert_eq!(header.correlation_id, 5);
                assert_eq!(&body[..], br#"{"op":"list"}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        b[2..4].copy_from_slice(&1i16.to_be_bytes());
        assert!(matches!(
            decode_request(b.freeze(), served),
            Err(DecodeError::UnknownApiKey(STRATA_MIRROR_LINKS_API_KEY))
        ));
    }

    #[test]
    fn produce_v0_to_v2_decode_as_retired() {
        for version in 0..=2 {
            let mut b = BytesMut::new();
            b.put_i16(ApiKey::Produce as i16);
            b.put_i16(version);
            b.put_i32(9);
            b.put_i16(1);
            b.put_slice(b"c");
            b.put_i16(1);
            b.put_i32(5000);
            b.put_i32(1);
            b.put_i16(1);
            b.put_slice(b"t");
            b.put_i32(1);
            b.put_i32(3);
            b.put_i32(-1);
            match decode_request(b.freeze(), served) {
                Ok(Decoded::RetiredProduce { header, request }) => {
                    assert_eq!(
                        (header.correlation_id, header.request_api_version),
                        (9, version)
                    );
                    assert_eq!(request.acks, 1);
                    assert_eq!(request.topics, vec![("t".to_string(), vec![3])]);
                }
                other => panic!("v{version}: unexpected {other:?}"),
            }
        }
    }

    /// A 22-byte Metadata v4 request claiming i32::MAX topics: the decoder sizes a Vec from the
    /// count before reading; it must fail cleanly, not abort the process (see `crate::alloc`).
    #[test]
    fn a_huge_array_count_is_an_error_not_an_abort() {
        let mut b = BytesMut::new();
        b.put_i16(ApiKey::Metadata as i16);
        b.put_i16(4);
        b.put_i32(1);
        b.put_i16(-1);
        b.put_i32(i32::MAX);
        assert!(matches!(
            decode_request(b.freeze(), served),
            Err(DecodeError::Malformed { part: "body", .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes after a valid api key and version never panic the decoder.
        #[test]
        fn random_frames_never_panic(key_index in 0usize..3, version in -1i16..20, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let key = [ApiKey::Metadata, ApiKey::ApiVersions, ApiKey::Produce][key_index];
            let mut buf = BytesMut::new();
            buf.put_i16(key as i16);
            buf.put_i16(version);
            buf.put_slice(&tail);
            let _ = decode_request(buf.freeze(), served);
        }

        /// Truncating or corrupting a valid frame is an error or a request, never a panic.
        #[test]
        fn damaged_valid_frames_never_panic(cut in 0usize..64, flip_at in 0usize..64, flip in any::<u8>()) {
            let frame = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
            ])));
            let mut bytes = BytesMut::from(&frame[..frame.len().saturating_sub(cut)]);
            if flip_at < bytes.len() {
                bytes[flip_at] ^= flip;
            }
            let _ = decode_request(bytes.freeze(), served);
        }
    }
}
