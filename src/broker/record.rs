//! One record on disk: `<crc32 as 8 lowercase hex> <json>\n`.
//!
//! The format is text so that `less`, `grep` and `tail -f` work on a log, and so that an outside
//! checker in any language can verify it with zlib's `crc32`. The CRC covers the JSON only; the
//! newline ends the record. Together they catch both ways a crash or a bad disk damages a log:
//! a line cut short (no '\n', or a CRC that no longer matches the bytes that made it) and a
//! flipped byte (CRC mismatch). A real broker (Kafka) frames records in binary with a length
//! prefix and a CRC-32C per batch; a length prefix is what makes a binary log seekable, a
//! newline does the same job here.

use super::MAX_RECORD_BYTES;

/// The CRC as 8 lowercase hex digits, then one space.
const HEADER_BYTES: usize = 9;

/// The longest line a log may hold: header, the largest JSON, newline.
pub(crate) const MAX_LINE_BYTES: usize = HEADER_BYTES + MAX_RECORD_BYTES + 1;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Append one record line `<crc32 as 8 lowercase hex> <json>\n` to `out`.
///
/// Panics if `json` contains a '\n' (it would split the record in two: compact `serde_json`
/// output never does) or is longer than [`MAX_RECORD_BYTES`] (callers check that first, see
/// [`super::Broker::write`]).
pub fn encode_record(json: &[u8], out: &mut Vec<u8>) {
    assert!(
        !json.contains(&b'\n'),
        "encode_record: a record's JSON must be one line (found a '\\n')"
    );
    assert!(
        json.len() <= MAX_RECORD_BYTES,
        "encode_record: JSON of {} bytes exceeds MAX_RECORD_BYTES ({MAX_RECORD_BYTES})",
        json.len()
    );
    let crc = crc32fast::hash(json);
    out.reserve(HEADER_BYTES + json.len() + 1);
    for shift in (0..8).rev() {
        out.push(HEX_DIGITS[((crc >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b' ');
    out.extend_from_slice(json);
    out.push(b'\n');
}

/// Check one line (without its '\n'): returns the JSON it carries, or why it is bad.
pub(crate) fn verify_line(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < HEADER_BYTES {
        return Err(format!(
            "line of {} bytes is shorter than a record header (8 hex digits and a space)",
            line.len()
        ));
    }
    let (header, json) = line.split_at(HEADER_BYTES);
    if header[8] != b' ' {
        return Err("no space after the 8-digit CRC".into());
    }
    let mut stored_crc: u32 = 0;
    for &digit in &header[..8] {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => {
                return Err(format!(
                    "CRC field {:?} is not 8 lowercase hex digits",
                    show(&header[..8])
                ));
            }
        };
        stored_crc = (stored_crc << 4) | u32::from(nibble);
    }
    let actual_crc = crc32fast::hash(json);
    if stored_crc != actual_crc {
        return Err(format!(
            "CRC mismatch: line says {stored_crc:08x}, its {} JSON bytes hash to {actual_crc:08x}",
            json.len()
        ));
    }
    Ok(json)
}

/// Bytes for an error message: lossy UTF-8, so damage is visible but printable.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_zlib_crc_hex_space_json_newline() {
        let mut out = Vec::new();
        encode_record(br#"{"a":1}"#, &mut out);
        // python3 -c 'import zlib; print("%08x" % zlib.crc32(b"{\"a\":1}"))'
        assert_eq!(out, b"561bacaf {\"a\":1}\n");
        assert_eq!(verify_line(&out[..out.len() - 1]), Ok(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn rejects_uppercase_short_and_flipped_lines() {
        assert!(verify_line(b"561BACAF {\"a\":1}").is_err());
        assert!(verify_line(b"561bacaf").is_err());
        assert!(verify_line(b"561bacaf {\"a\":2}").is_err());
        assert!(verify_line(b"561bacaf_{\"a\":1}").is_err());
    }

    #[test]
    #[should_panic(expected = "must be one line")]
    fn newline_in_json_is_a_programmer_error() {
        encode_record(b"{\n}", &mut Vec::new());
    }
}
