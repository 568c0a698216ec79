//! A certificate subject as the RFC 2253 string Kafka maps principals from (Java's
//! `X500Principal.getName()`): relative distinguished names last-first, joined by `,`;
//! attributes of one RDN joined by `+`; the RFC's keywords (CN, C, L, ST, O, OU, STREET, DC,
//! UID) and every other attribute as its dotted OID with the DER value in hex (`1.2.3=#0c03...`).
//!
//! The subject bytes come from `webpki` (the certificate's parser); this walks the few DER
//! shapes of a `Name` (SEQUENCE OF SET OF SEQUENCE { OID, value }) and nothing else.

/// Why a subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate subject: {0}")]
pub struct DnError(&'static str);

impl DnError {
    pub(super) fn invalid_certificate() -> DnError {
        DnError("not a valid X.509 certificate")
    }
}

const TAG_SET: u8 = 0x31;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;

/// One DER element and what follows it.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    /// Tag, length and content.
    whole: &'a [u8],
    rest: &'a [u8],
}

fn element(input: &[u8]) -> Result<Element<'_>, DnError> {
    let (&tag, rest) = input.split_first().ok_or(DnError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DnError("multi-byte tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DnError("truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DnError("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(DnError("truncated content"));
    }
    let header = input.len() - rest.len();
    Ok(Element {
        tag,
        content: &rest[..len],
        whole: &input[..header + len],
        rest: &rest[len..],
    })
}

fn oid_dotted(oid: &[u8]) -> Result<String, DnError> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        if value > (u64::MAX >> 7) {
            return Err(DnError("OID arc too large"));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == oid.len() {
            return Err(DnError("unterminated OID"));
        }
    }
    if arcs.is_empty() {
        return Err(DnError("empty OID"));
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// The RFC 2253 keyword of an attribute type, for the ones Java names.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A directory string's text; `None` for a type that has none (then the value is hex).
fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => std::str::from_utf8(content).ok().map(str::to_string),
        // TeletexString: in practice Latin-1.
        0x14 => Some(content.iter().map(|b| char::from(*b)).collect()),
        // BMPString: UTF-16BE.
        0x1e if content.len() % 2 == 0 => {
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 section 2.4 escaping.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats a certificate's subject (the content of its `Name` SEQUENCE) as RFC 2253.
pub fn rfc2253(subject: &[u8]) -> Result<String, DnError> {
    let mut rdns = Vec::new();
    let mut rest = subject;
    while !rest.is_empty() {
        let set = element(rest)?;
        if set.tag != TAG_SET {
            return Err(DnError("RDN is not a SET"));
        }
        rest = set.rest;
        let mut avas = Vec::new();
        let mut inner = set.content;
        while !inner.is_empty() {
            let seq = element(inner)?;
            if seq.tag != TAG_SEQUENCE {
                return Err(DnError("attribute is not a SEQUENCE"));
            }
            inner = seq.rest;
            let oid = element(seq.content)?;
            if oid.tag != TAG_OID {
                return Err(DnError("attribute type is not an OID"));
            }
            let value = element(oid.rest)?;
            let oid = oid_dotted(oid.content)?;
            let ava = match (keyword(&oid), string_value(value.tag, value.content)) {
                (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
                _ => format!("{oid}=#{}", hex(value.whole)),
            };
            avas.push(ava);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x81, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut ava = tlv(TAG_OID, oid);
        ava.extend(tlv(tag, value));
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &ava))
    }

    #[test]
    fn rdns_come_last_first_with_keywords_escapes_and_hex() {
        let mut subject = Vec::new();
        subject.extend(rdn(&[0x55, 0x04, 0x06], 0x13, b"US"));
        subject.extend(rdn(&[0x55, 0x04, 0x0a], 0x0c, b"Acme, Inc."));
        // emailAddress has no keyword: OID and the DER value in hex.
        subject.extend(rdn(
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
            0x16,
            b"a@b",
        ));
        subject.extend(rdn(&[0x55, 0x04, 0x03], 0x0c, b" alice"));
        assert_eq!(
            rfc2253(&subject).expect("parses"),
            "CN=\\ alice,1.2.840.113549.1.9.1=#1603614062,O=Acme\\, Inc.,C=US"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(rfc2253(&[0x31]).is_err());
        assert!(rfc2253(&[0x30, 0x00]).is_err());
        assert!(rfc2253(&[0x31, 0x05, 0x30, 0x03, 0x06, 0x01]).is_err());
        assert_eq!(rfc2253(&[]).expect("empty subject"), "");
    }
}
