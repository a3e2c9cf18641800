//! Reading `pgoutput`, PostgreSQL's own logical decoding output (protocol version 1), as the
//! SQL function `pg_logical_slot_peek_binary_changes` hands it back: one message per row.
//!
//! ```text
//!   B  begin     final_lsn:i64 commit_ts:i64 xid:i32
//!   R  relation  relid:i32 namespace:str name:str replident:u8 ncols:i16 {flags:u8 name:str type:i32 typmod:i32}*
//!   I  insert    relid:i32 'N' tuple          tuple = ncols:i16 {'n' | 'u' | 't' len:i32 bytes}*
//!   M  message   (a heartbeat: logical message in its own transaction, ignored)
//!   C  commit    flags:u8 commit_lsn:i64 end_lsn:i64 commit_ts:i64
//! ```
//!
//! Every field is length-prefixed or fixed-size: there is no quoting to undo (which is why
//! this decoder reads `pgoutput` rather than `test_decoding`'s text). A transaction's inserts
//! count only once its `C` arrives; the slot's position to confirm is that commit's `end_lsn`.
//! Anything this decoder does not understand is an error naming the message, never skipped:
//! a skipped insert would be a lost event.

use std::collections::HashMap;

use crate::outbox::ClaimedRow;

/// The table whose inserts are events (the publication reports partitions as their root).
pub const OUTBOX_TABLE: &str = "outbox";

/// What a batch of messages decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Outbox inserts of committed transactions, in commit order (and statement order within one).
    pub events: Vec<ClaimedRow>,
    /// The end of the last complete transaction: where the slot may be advanced to once the
    /// events are durable. None when no commit was seen.
    pub end_lsn: Option<u64>,
    /// Transactions seen (including those with no outbox insert, e.g. heartbeats).
    pub commits: usize,
}

/// A decoder for one peek: relation messages come again in every peek (each call is a new
/// decoding session), so nothing carries over between batches.
#[derive(Default)]
pub struct Decoder {
    /// relid → (table name, column names in tuple order).
    relations: HashMap<u32, (String, Vec<String>)>,
    /// Inserts of the transaction being read (kept only when its commit arrives).
    open_tx: Option<Vec<ClaimedRow>>,
    out: Decoded,
}

impl Decoder {
    /// Feed one message (one row of the peek, its `data` column).
    pub fn message(&mut self, data: &[u8]) -> Result<(), String> {
        let mut r = Reader { data, at: 0 };
        let kind = r.u8()?;
        match kind {
            b'B' => {
                if self.open_tx.is_some() {
                    return Err("BEGIN inside an open transaction".into());
                }
                self.open_tx = Some(Vec::new());
            }
            b'R' => self.relation(&mut r)?,
            b'I' => self.insert(&mut r)?,
            b'C' => {
                let _flags = r.u8()?;
                let _commit_lsn = r.u64()?;
                let end_lsn = r.u64()?;
                let rows = self.open_tx.take().ok_or("COMMIT without BEGIN")?;
                if let Some(last) = self.out.end_lsn {
                    assert!(end_lsn > last, "commit end {end_lsn:X} after {last:X}");
                }
                self.out.events.extend(rows);
                self.out.end_lsn = Some(end_lsn);
                self.out.commits += 1;
            }
            // Type and origin messages, and logical messages (our heartbeat): no events.
            b'Y' | b'O' | b'M' => {}
            other => {
                return Err(format!(
                    "message kind {:?}: the publication should send inserts only",
                    other as char
                ));
            }
        }
        Ok(())
    }

    /// The decoded batch. An unfinished transaction is dropped: it comes again, whole, in the
    /// next peek (the slot was not advanced past it).
    pub fn finish(self) -> Decoded {
        self.out
    }

    fn relation(&mut self, r: &mut Reader) -> Result<(), String> {
        let relid = r.u32()?;
        let _namespace = r.cstr()?;
        let name = r.cstr()?;
        let _replica_identity = r.u8()?;
        let ncols = r.u16()?;
        let mut columns = Vec::with_capacity(ncols as usize);
        for _ in 0..ncols {
            let _flags = r.u8()?;
            columns.push(r.cstr()?);
            let _type_oid = r.u32()?;
            let _typmod = r.u32()?;
        }
        self.relations.insert(relid, (name, columns));
        Ok(())
    }

    fn insert(&mut self, r: &mut Reader) -> Result<(), String> {
        let relid = r.u32()?;
        let (name, columns) = self
            .relations
            .get(&relid)
            .ok_or_else(|| format!("INSERT into relation {relid} before its RELATION message"))?;
        if r.u8()? != b'N' {
            return Err("INSERT without a new tuple".into());
        }
        let values = tuple(r)?;
        if values.len() != columns.len() {
            return Err(format!(
                "INSERT into {name}: {} values for {} columns",
                values.len(),
                columns.len()
            ));
        }
        if name != OUTBOX_TABLE {
            return Err(format!(
                "INSERT into {name}: the publication is for {OUTBOX_TABLE} only"
            ));
        }
        let row = outbox_row(columns, values)?;
        self.open_tx
            .as_mut()
            .ok_or("INSERT outside a transaction")?
            .push(row);
        Ok(())
    }
}

/// A tuple's values as text (None = NULL).
fn tuple(r: &mut Reader) -> Result<Vec<Option<String>>, String> {
    let ncols = r.u16()?;
    let mut values = Vec::with_capacity(ncols as usize);
    for i in 0..ncols {
        match r.u8()? {
            b'n' => values.push(None),
            b't' => {
                let len = r.u32()? as usize;
                let bytes = r.take(len)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| format!("column {i}: not UTF-8: {e}"))?;
                values.push(Some(text.to_string()));
            }
            b'u' => return Err(format!("column {i}: unchanged TOAST value in an INSERT")),
            other => return Err(format!("column {i}: value kind {:?}", other as char)),
        }
    }
    Ok(values)
}

/// The event columns of an outbox insert, by name (the table's other columns are ignored).
fn outbox_row(columns: &[String], values: Vec<Option<String>>) -> Result<ClaimedRow, String> {
    let mut by_name: HashMap<&str, Option<String>> = HashMap::new();
    for (column, value) in columns.iter().zip(values) {
        by_name.insert(column.as_str(), value);
    }
    let mut text = |name: &str| -> Result<String, String> {
        by_name
            .remove(name)
            .ok_or_else(|| format!("outbox insert without column {name}"))?
            .ok_or_else(|| format!("outbox insert with {name} NULL"))
    };
    let int = |name: &str, value: String| -> Result<i64, String> {
        value
            .parse()
            .map_err(|e| format!("outbox column {name} = {value:?}: {e}"))
    };
    Ok(ClaimedRow {
        id: int("id", text("id")?)?,
        event_id: text("event_id")?,
        aggregate_id: text("aggregate_id")?,
        aggregate_seq: int("aggregate_seq", text("aggregate_seq")?)?,
        event_type: text("event_type")?,
        payload: text("payload")?,
        created_at_us: int("created_at_us", text("created_at_us")?)?,
        // A decoded row is never claimed: the record's `attempt` is 0.
        attempts: 0,
    })
}

/// Big-endian fields off a byte slice, each read bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.data.len());
        let end = end.ok_or_else(|| {
            format!(
                "message cut short: {n} bytes wanted at byte {} of {}",
                self.at,
                self.data.len()
            )
        })?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A NUL-terminated string.
    fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.data[self.at..];
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or("string without its NUL terminator")?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }
}

/// `X/Y`, PostgreSQL's text form of an LSN.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(columns: &[&str]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16384u32.to_be_bytes());
        m.extend(b"public\0outbox\0");
        m.push(b'd');
        m.extend((columns.len() as u16).to_be_bytes());
        for c in columns {
            m.push(0);
            m.extend(c.as_bytes());
            m.push(0);
            m.extend(25u32.to_be_bytes());
            m.extend((-1i32).to_be_bytes());
        }
        m
    }

    fn insert(values: &[Option<&str>]) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'N');
        m.extend((values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                None => m.push(b'n'),
                Some(text) => {
                    m.push(b't');
                    m.extend((text.len() as u32).to_be_bytes());
                    m.extend(text.as_bytes());
                }
            }
        }
        m
    }

    fn commit(end_lsn: u64) -> Vec<u8> {
        let mut m = vec![b'C', 0];
        m.extend((end_lsn - 8).to_be_bytes());
        m.extend(end_lsn.to_be_bytes());
        m.extend(0u64.to_be_bytes());
        m
    }

    const COLUMNS: [&str; 8] = [
        "id",
        "event_id",
        "aggregate_id",
        "aggregate_seq",
        "event_type",
        "payload",
        "created_at_us",
        "published_at_us",
    ];

    fn row(id: &str) -> Vec<Option<&str>> {
        vec![
            Some(id),
            Some("e'1"),
            Some("7"),
            Some("1"),
            Some("OrderPlaced"),
            Some(r#"{"customer":"o'brien"}"#),
            Some("1700"),
            None,
        ]
    }

    #[test]
    fn an_insert_counts_only_when_its_commit_arrives() {
        let mut d = Decoder::default();
        for m in [
            vec![b'B'; 21],
            relation(&COLUMNS),
            insert(&row("5")),
            commit(0x1_0000_0100),
        ] {
            d.message(&m).unwrap();
        }
        d.message(&[b'B'; 21]).unwrap();
        d.message(&insert(&row("6"))).unwrap(); // its commit is not in this batch
        let out = d.finish();
        assert_eq!(
            out.events.len(),
            1,
            "the unfinished transaction must not ship"
        );
        let e = &out.events[0];
        assert_eq!((e.id, e.event_id.as_str(), e.aggregate_seq), (5, "e'1", 1));
        assert_eq!(
            e.payload, r#"{"customer":"o'brien"}"#,
            "quotes come through as they are"
        );
        assert_eq!(out.end_lsn, Some(0x1_0000_0100));
        assert_eq!(lsn_text(0x1_0000_0100), "1/100");
    }

    #[test]
    fn a_cut_message_or_an_update_is_an_error_not_a_skip() {
        let mut d = Decoder::default();
        d.message(&[b'B'; 21]).unwrap();
        d.message(&relation(&COLUMNS)).unwrap();
        let mut cut = insert(&row("5"));
        cut.truncate(cut.len() - 3);
        assert!(d.message(&cut).unwrap_err().contains("cut short"));
        assert!(d.message(b"U....").unwrap_err().contains("inserts only"));
        let mut short = Decoder::default();
        short.message(&[b'B'; 21]).unwrap();
        short.message(&relation(&COLUMNS[..6])).unwrap();
        let err = short.message(&insert(&row("5")[..6])).unwrap_err();
        assert!(err.contains("without column created_at_us"), "{err}");
    }
}
