//! The consumer-group (KIP-848) records of `__consumer_offsets`, in Kafka 4.1's schemas, so a
//! Kafka broker or Kafka's tooling reads them unchanged and Strata loads what Kafka wrote.
//!
//! Keys are `int16` record type + non-flexible fields (`int16`-length strings); values are an
//! `int16` version (0) followed by a *flexible* body: compact strings and arrays (unsigned
//! varint length + 1, 0 for null) and a tagged-field section closing every struct.
//! - type 3 `ConsumerGroupMetadata` key `group` → value `epoch: int32` (tag 0, `MetadataHash`,
//!   is skipped when read and not written: Strata recomputes subscriptions from the image).
//! - type 5 `ConsumerGroupMemberMetadata` key `group, member` → value `instance_id: string?,
//!   rack_id: string?, client_id, client_host, subscribed_topic_names: [string],
//!   subscribed_topic_regex: string?, rebalance_timeout_ms: int32, server_assignor: string?`.
//! - type 6 `ConsumerGroupTargetAssignmentMetadata` key `group` → `assignment_epoch: int32`.
//! - type 7 `ConsumerGroupTargetAssignmentMember` key `group, member` →
//!   `topic_partitions: [topic_id: uuid, partitions: [int32]]`.
//! - type 8 `ConsumerGroupCurrentMemberAssignment` key `group, member` → `member_epoch: int32,
//!   previous_member_epoch: int32, state: int8, assigned_partitions: [..],
//!   partitions_pending_revocation: [..]`.
//!
//!   Tag 0 of the value, `ClassicMemberMetadata` (`session_timeout_ms: int32,
//!   supported_protocols: [name: string, metadata: bytes]`), is set for a member that speaks the
//!   classic protocol inside a consumer group; as a nullable struct it is written as size + 1,
//!   a presence byte 1, then the struct.
//!
//! Type 4 (`ConsumerGroupPartitionMetadata`, no longer written by Kafka 4.1) and type 16
//! (`ConsumerGroupRegularExpression`, a cache of regex resolutions) are skipped when read:
//! both are derived from the metadata image, which the coordinator consults directly.
//! A null value is a tombstone.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::group::records::CodecError;

/// Partitions by topic id, as assignments are exchanged and stored.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member that joined with JoinGroup (the classic protocol).
    pub classic: Option<ClassicMemberMetadata>,
}

/// What a consumer group keeps of a classic member: its session timeout and the protocols
/// (assignor name, ConsumerProtocol subscription bytes) of its last JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// One consumer-group record: key fields and a value or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    GroupMetadata {
        group: String,
        epoch: Option<i32>,
    },
    MemberMetadata {
        group: String,
        member: String,
        value: Option<MemberMetadataValue>,
    },
    TargetAssignmentMetadata {
        group: String,
        assignment_epoch: Option<i32>,
    },
    TargetAssignmentMember {
        group: String,
        member: String,
        value: Option<Assignment>,
    },
    CurrentMemberAssignment {
        group: String,
        member: String,
        value: Option<CurrentAssignmentValue>,
    },
}

const GROUP_METADATA: i16 = 3;
const MEMBER_METADATA: i16 = 5;
const TARGET_METADATA: i16 = 6;
const TARGET_MEMBER: i16 = 7;
const CURRENT_ASSIGNMENT: i16 = 8;

impl ConsumerRecord {
    pub fn group(&self) -> &str {
        match self {
            ConsumerRecord::GroupMetadata { group, .. }
            | ConsumerRecord::MemberMetadata { group, .. }
            | ConsumerRecord::TargetAssignmentMetadata { group, .. }
            | ConsumerRecord::TargetAssignmentMember { group, .. }
            | ConsumerRecord::CurrentMemberAssignment { group, .. } => group,
        }
    }

    pub fn encode_key(&self, buf: &mut BytesMut) {
        let (kind, group, member) = match self {
            ConsumerRecord::GroupMetadata { group, .. } => (GROUP_METADATA, group, None),
            ConsumerRecord::MemberMetadata { group, member, .. } => {
                (MEMBER_METADATA, group, Some(member))
            }
            ConsumerRecord::TargetAssignmentMetadata { group, .. } => {
                (TARGET_METADATA, group, None)
            }
            ConsumerRecord::TargetAssignmentMember { group, member, .. } => {
                (TARGET_MEMBER, group, Some(member))
            }
            ConsumerRecord::CurrentMemberAssignment { group, member, .. } => {
                (CURRENT_ASSIGNMENT, group, Some(member))
            }
        };
        buf.put_i16(kind);
        put_string(buf, group);
        if let Some(m) = member {
            put_string(buf, m);
        }
    }

    /// The value bytes, or None for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        match self {
            ConsumerRecord::GroupMetadata { epoch, .. } => buf.put_i32((*epoch)?),
            ConsumerRecord::TargetAssignmentMetadata {
                assignment_epoch, ..
            } => buf.put_i32((*assignment_epoch)?),
            ConsumerRecord::MemberMetadata { value, .. } => {
                let v = value.as_ref()?;
                put_compact_nullable(&mut buf, v.instance_id.as_deref());
                put_compact_nullable(&mut buf, v.rack_id.as_deref());
                put_compact_nullable(&mut buf, Some(&v.client_id));
                put_compact_nullable(&mut buf, Some(&v.client_host));
                put_uvarint(&mut buf, v.subscribed_topic_names.len() as u64 + 1);
                for t in &v.subscribed_topic_names {
                    put_compact_nullable(&mut buf, Some(t));
                }
                put_compact_nullable(&mut buf, v.subscribed_topic_regex.as_deref());
                buf.put_i32(v.rebalance_timeout_ms);
                put_compact_nullable(&mut buf, v.server_assignor.as_deref());
                if let Some(c) = &v.classic {
                    let mut body = BytesMut::new();
                    put_classic(&mut body, c);
                    put_uvarint(&mut buf, 1);
                    put_uvarint(&mut buf, 0);
                    put_uvarint(&mut buf, body.len() as u64 + 1);
                    put_uvarint(&mut buf, 1);
                    buf.put_slice(&body);
                    return Some(buf.freeze());
                }
            }
            ConsumerRecord::TargetAssignmentMember { value, .. } => {
                put_assignment(&mut buf, value.as_ref()?);
            }
            ConsumerRecord::CurrentMemberAssignment { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i32(v.member_epoch);
                buf.put_i32(v.previous_member_epoch);
                buf.put_i8(v.state);
                put_assignment(&mut buf, &v.assigned);
                put_assignment(&mut buf, &v.pending_revocation);
            }
        }
        // The value's own (empty) tagged fields.
        put_uvarint(&mut buf, 0);
        Some(buf.freeze())
    }

    /// Decodes a record of key type 3..=8 whose type bytes were already read into `kind`;
    /// `Ok(None)` for the types not kept (4, and any newer ones).
    pub fn decode(
        kind: i16,
        mut key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<ConsumerRecord>, CodecError> {
        let group = get_string(&mut key, "group")?;
        let member = match kind {
            MEMBER_METADATA | TARGET_MEMBER | CURRENT_ASSIGNMENT => {
                Some(get_string(&mut key, "member")?)
            }
            GROUP_METADATA | TARGET_METADATA => None,
            _ => return Ok(None),
        };
        let mut body = match value {
            None => None,
            Some(mut v) => {
                need(v, 2, "value version")?;
                let version = v.get_i16();
                if version != 0 {
                    return Err(CodecError::UnsupportedVersion {
                        what: "consumer group value",
                        version,
                    });
                }
                Some(v)
            }
        };
        let member = member.unwrap_or_default();
        let rec = match kind {
            GROUP_METADATA => ConsumerRecord::GroupMetadata {
                group,
                epoch: body.as_mut().map(|b| get_i32(b, "epoch")).transpose()?,
            },
            TARGET_METADATA => ConsumerRecord::TargetAssignmentMetadata {
                group,
                assignment_epoch: body
                    .as_mut()
                    .map(|b| get_i32(b, "assignment epoch"))
                    .transpose()?,
            },
            MEMBER_METADATA => ConsumerRecord::MemberMetadata {
                group,
                member,
                value: body.as_mut().map(get_member_metadata).transpose()?,
            },
            TARGET_MEMBER => ConsumerRecord::TargetAssignmentMember {
                group,
                member,
                value: body.as_mut().map(get_assignment).transpose()?,
            },
            _ => ConsumerRecord::CurrentMemberAssignment {
                group,
                member,
                value: body
                    .as_mut()
                    .map(|b| {
                        Ok::<_, CodecError>(CurrentAssignmentValue {
                            member_epoch: get_i32(b, "member epoch")?,
                            previous_member_epoch: get_i32(b, "previous member epoch")?,
                            state: {
                                need(b, 1, "state")?;
                                b.get_i8()
                            },
                            assigned: get_assignment(b)?,
                            pending_revocation: get_assignment(b)?,
                        })
                    })
                    .transpose()?,
            },
        };
        Ok(Some(rec))
    }
}

fn get_member_metadata(b: &mut &[u8]) -> Result<MemberMetadataValue, CodecError> {
    let instance_id = get_compact_nullable(b, "instance id")?;
    let rack_id = get_compact_nullable(b, "rack id")?;
    let client_id = get_compact_nullable(b, "client id")?.unwrap_or_default();
    let client_host = get_compact_nullable(b, "client host")?.unwrap_or_default();
    let n = get_array_len(b, "subscribed topics")?;
    let mut subscribed_topic_names = Vec::with_capacity(n.min(b.len()));
    for _ in 0..n {
        subscribed_topic_names.push(get_compact_nullable(b, "topic")?.unwrap_or_default());
    }
    let subscribed_topic_regex = get_compact_nullable(b, "regex")?;
    let rebalance_timeout_ms = get_i32(b, "rebalance timeout")?;
    let server_assignor = get_compact_nullable(b, "server assignor")?;
    let mut classic = None;
    let count = get_uvarint(b, "tagged fields")?;
    for _ in 0..count {
        let tag = get_uvarint(b, "tag")?;
        let size = get_uvarint(b, "tag size")? as usize;
        need(b, size, "tagged field")?;
        let mut field = &b[..size];
        b.advance(size);
        if tag == 0 && get_uvarint(&mut field, "classic member presence")? == 1 {
            classic = Some(get_classic(&mut field)?);
        }
    }
    Ok(MemberMetadataValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
        classic,
    })
}

fn put_classic(buf: &mut BytesMut, c: &ClassicMemberMetadata) {
    buf.put_i32(c.session_timeout_ms);
    put_uvarint(buf, c.protocols.len() as u64 + 1);
    for (name, metadata) in &c.protocols {
        put_compact_nullable(buf, Some(name));
        put_uvarint(buf, metadata.len() as u64 + 1);
        buf.put_slice(metadata);
        put_uvarint(buf, 0);
    }
    put_uvarint(buf, 0);
}

fn get_classic(b: &mut &[u8]) -> Result<ClassicMemberMetadata, CodecError> {
    let session_timeout_ms = get_i32(b, "classic session timeout")?;
    let n = get_array_len(b, "classic protocols")?;
    let mut protocols = Vec::with_capacity(n);
    for _ in 0..n {
        let name = get_compact_nullable(b, "protocol name")?.unwrap_or_default();
        let len = get_uvarint(b, "protocol metadata")?.saturating_sub(1) as usize;
        need(b, len, "protocol metadata")?;
        let metadata = Bytes::copy_from_slice(&b[..len]);
        b.advance(len);
        skip_tagged(b)?;
        protocols.push((name, metadata));
    }
    skip_tagged(b)?;
    Ok(ClassicMemberMetadata {
        session_timeout_ms,
        protocols,
    })
}

fn put_assignment(buf: &mut BytesMut, a: &Assignment) {
    put_uvarint(buf, a.len() as u64 + 1);
    for (topic, partitions) in a {
        buf.put_slice(topic.as_bytes());
        put_uvarint(buf, partitions.len() as u64 + 1);
        for p in partitions {
            buf.put_i32(*p);
        }
        put_uvarint(buf, 0);
    }
}

fn get_assignment(b: &mut &[u8]) -> Result<Assignment, CodecError> {
    let n = get_array_len(b, "topic partitions")?;
    let mut out = Assignment::new();
    for _ in 0..n {
        need(b, 16, "topic id")?;
        let id =
            Uuid::from_slice(&b[..16]).map_err(|_| CodecError::Truncated { what: "topic id" })?;
        b.advance(16);
        let m = get_array_len(b, "partitions")?;
        let set = out.entry(id).or_default();
        for _ in 0..m {
            set.insert(get_i32(b, "partition")?);
        }
        skip_tagged(b)?;
    }
    Ok(out)
}

fn put_string(buf: &mut BytesMut, s: &str) {
    let n = s.len().min(i16::MAX as usize);
    buf.put_i16(n as i16);
    buf.put_slice(&s.as_bytes()[..n]);
}

fn get_string(b: &mut &[u8], what: &'static str) -> Result<String, CodecError> {
    need(b, 2, what)?;
    let len = b.get_i16();
    if len < 0 {
        return Ok(String::new());
    }
    take_str(b, len as usize, what)
}

fn take_str(b: &mut &[u8], len: usize, what: &'static str) -> Result<String, CodecError> {
    need(b, len, what)?;
    let s = std::str::from_utf8(&b[..len])
        .map_err(|_| CodecError::Utf8 { what })?
        .to_string();
    b.advance(len);
    Ok(s)
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_uvarint(b: &mut &[u8], what: &'static str) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        need(b, 1, what)?;
        let byte = b.get_u8();
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::Truncated { what })
}

fn put_compact_nullable(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
}

fn get_compact_nullable(b: &mut &[u8], what: &'static str) -> Result<Option<String>, CodecError> {
    let n = get_uvarint(b, what)?;
    if n == 0 {
        return Ok(None);
    }
    take_str(b, (n - 1) as usize, what).map(Some)
}

/// A compact array's length; a null array reads as empty. Never more than the bytes left, so
/// a corrupt length cannot make a loop run long.
fn get_array_len(b: &mut &[u8], what: &'static str) -> Result<usize, CodecError> {
    let n = get_uvarint(b, what)?;
    let n = n.saturating_sub(1) as usize;
    if n > b.len() {
        return Err(CodecError::Truncated { what });
    }
    Ok(n)
}

fn skip_tagged(b: &mut &[u8]) -> Result<(), CodecError> {
    let count = get_uvarint(b, "tagged fields")?;
    for _ in 0..count {
        get_uvarint(b, "tag")?;
        let size = get_uvarint(b, "tag size")? as usize;
        need(b, size, "tagged field")?;
        b.advance(size);
    }
    Ok(())
}

fn get_i32(b: &mut &[u8], what: &'static str) -> Result<i32, CodecError> {
    need(b, 4, what)?;
    Ok(b.get_i32())
}

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), CodecError> {
    if b.len() < n {
        Err(CodecError::Truncated { what })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: ConsumerRecord) {
        let mut key = BytesMut::new();
        r.encode_key(&mut key);
        let value = r.encode_value();
        let mut k = &key[..];
        let kind = k.get_i16();
        let back = ConsumerRecord::decode(kind, k, value.as_deref())
            .unwrap()
            .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn records_round_trip() {
        let id = Uuid::from_u128(0x1234);
        let a: Assignment = [(id, [0, 2, 5].into_iter().collect())]
            .into_iter()
            .collect();
        round_trip(ConsumerRecord::GroupMetadata {
            group: "g".into(),
            epoch: Some(7),
        });
        round_trip(ConsumerRecord::GroupMetadata {
            group: "g".into(),
            epoch: None,
        });
        round_trip(ConsumerRecord::TargetAssignmentMetadata {
            group: "g".into(),
            assignment_epoch: Some(3),
        });
        round_trip(ConsumerRecord::MemberMetadata {
            group: "g".into(),
            member: "m".into(),
            value: Some(MemberMetadataValue {
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                subscribed_topic_names: vec!["a".into(), "b".into()],
                subscribed_topic_regex: Some("^x.*".into()),
                rebalance_timeout_ms: 300_000,
                server_assignor: Some("range".into()),
                classic: None,
            }),
        });
        round_trip(ConsumerRecord::MemberMetadata {
            group: "g".into(),
            member: "c".into(),
            value: Some(MemberMetadataValue {
                client_id: "c".into(),
                subscribed_topic_names: vec!["a".into()],
                rebalance_timeout_ms: 30_000,
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: 10_000,
                    protocols: vec![
                        ("range".into(), Bytes::from_static(&[0, 1, 2])),
                        ("roundrobin".into(), Bytes::new()),
                    ],
                }),
                ..Default::default()
            }),
        });
        round_trip(ConsumerRecord::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
            value: Some(a.clone()),
        });
        round_trip(ConsumerRecord::CurrentMemberAssignment {
            group: "g".into(),
            member: "m".into(),
            value: Some(CurrentAssignmentValue {
                member_epoch: 4,
                previous_member_epoch: 3,
                state: 1,
                assigned: a.clone(),
                pending_revocation: Assignment::new(),
            }),
        });
    }

    /// Kafka's flexible layout for `ConsumerGroupCurrentMemberAssignmentValue` v0, by hand.
    #[test]
    fn current_assignment_bytes_match_kafkas_layout() {
        let id = Uuid::from_u128(1);
        let r = ConsumerRecord::CurrentMemberAssignment {
            group: "g".into(),
            member: "m".into(),
            value: Some(CurrentAssignmentValue {
                member_epoch: 2,
                previous_member_epoch: 1,
                state: 0,
                assigned: [(id, [3].into_iter().collect())].into_iter().collect(),
                pending_revocation: Assignment::new(),
            }),
        };
        let mut expected = vec![0u8, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2];
        expected.extend_from_slice(id.as_bytes());
        expected.extend_from_slice(&[2, 0, 0, 0, 3, 0, 1, 0]);
        assert_eq!(&r.encode_value().unwrap()[..], &expected[..]);
        let mut key = BytesMut::new();
        r.encode_key(&mut key);
        assert_eq!(&key[..], &[0, 8, 0, 1, b'g', 0, 1, b'm']);
    }

    /// Kafka's layout for a classic member's `ConsumerGroupMemberMetadataValue` v0: the
    /// nullable `ClassicMemberMetadata` struct in tag 0, sized with its presence byte.
    #[test]
    fn classic_member_metadata_bytes_match_kafkas_layout() {
        let r = ConsumerRecord::MemberMetadata {
            group: "g".into(),
            member: "m".into(),
            value: Some(MemberMetadataValue {
                client_id: "c".into(),
                client_host: "h".into(),
                subscribed_topic_names: vec!["t".into()],
                rebalance_timeout_ms: 5,
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: 10,
                    protocols: vec![("r".into(), Bytes::from_static(&[1]))],
                }),
                ..Default::default()
            }),
        };
        let expected: &[u8] = &[
            0, 0, // version
            0, 0, // instance id, rack id: null
            2, b'c', 2, b'h', // client id, client host
            2, 2, b't', // subscribed topics
            0,    // regex: null
            0, 0, 0, 5, // rebalance timeout
            0, // server assignor: null
            1, 0, 12, 1, // one tagged field: tag 0, 12 bytes, present
            0, 0, 0, 10, // session timeout
            2, 2, b'r', 2, 1, 0, // [name "r", metadata [1]]
            0, // the struct's tagged fields
        ];
        assert_eq!(&r.encode_value().unwrap()[..], expected);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let r = ConsumerRecord::TargetAssignmentMember {
            group: "g".into(),
            member: "m".into(),
            value: Some(
                [(Uuid::from_u128(9), [1].into_iter().collect())]
                    .into_iter()
                    .collect(),
            ),
        };
        let v = r.encode_value().unwrap();
        for cut in 0..v.len() - 1 {
            let _ =
                ConsumerRecord::decode(TARGET_MEMBER, &[0, 1, b'g', 0, 1, b'm'], Some(&v[..cut]));
        }
        assert!(
            ConsumerRecord::decode(TARGET_MEMBER, &[0, 1, b'g', 0, 1, b'm'], Some(&v[..3]))
                .is_err()
        );
    }
}
