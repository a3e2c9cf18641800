//! An order request as a client sends it, and the rules it must pass before anything is
//! written. Every rejection names the field and what is wrong with it.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

pub const MAX_REQUEST_ID_CHARS: usize = 128;
pub const MAX_CUSTOMER_CHARS: usize = 100;
/// One million dollars: anything above is a typo or an attack, not an order.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000;

/// The longest input line read: a valid order is well under 1 KiB (its longest fields are
/// 128 + 100 characters). Longer lines are refused without ever being held whole in memory.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// One line of input, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLine {
    Text(String),
    /// Over [`MAX_LINE_BYTES`]: only its length was kept.
    TooLong {
        bytes: u64,
    },
    /// Not UTF-8, so not JSON.
    NotUtf8,
}

impl InputLine {
    /// The line as text, or what is wrong with it (an error for this line alone).
    pub fn text(self) -> Result<String, String> {
        match self {
            InputLine::Text(text) => Ok(text),
            InputLine::TooLong { bytes } => Err(format!(
                "line is {bytes} bytes, longer than the limit of {MAX_LINE_BYTES}"
            )),
            InputLine::NotUtf8 => Err("line is not valid UTF-8".into()),
        }
    }
}

/// Read the next line (without its `\n`), holding at most [`MAX_LINE_BYTES`] + 1 bytes of
/// it. `None` at the end of the input.
pub fn read_line(input: &mut impl BufRead) -> std::io::Result<Option<InputLine>> {
    let mut kept = Vec::new();
    let mut bytes: u64 = 0;
    let mut read_any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        read_any = true;
        let newline = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        bytes += part.len() as u64;
        let room = (MAX_LINE_BYTES + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&part[..part.len().min(room)]);
        let used = newline.map_or(chunk.len(), |i| i + 1);
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if bytes > MAX_LINE_BYTES as u64 {
        return Ok(Some(InputLine::TooLong { bytes }));
    }
    Ok(Some(match String::from_utf8(kept) {
        Ok(text) => InputLine::Text(text),
        Err(_) => InputLine::NotUtf8,
    }))
}

/// Input echoed back in an error, cut to [`MAX_REQUEST_ID_CHARS`] characters.
pub fn truncate_echo(text: &str) -> String {
    match text.char_indices().nth(MAX_REQUEST_ID_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The client's idempotency key: a retry with the same id is the same order.
    pub request_id: String,
    pub customer: String,
    pub amount_cents: i64,
}

impl OrderRequest {
    /// Parse one JSON line and validate it.
    pub fn parse(line: &str) -> Result<OrderRequest, String> {
        let request: OrderRequest =
            serde_json::from_str(line).map_err(|e| format!("malformed order JSON: {e}"))?;
        request.validate()?;
        Ok(request)
    }

    pub fn validate(&self) -> Result<(), String> {
        let id = self.request_id.trim();
        if id.is_empty() {
            return Err("request_id is empty".into());
        }
        if self.request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(format!(
                "request_id is longer than {MAX_REQUEST_ID_CHARS} characters"
            ));
        }
        if self.customer.trim().is_empty() {
            return Err("customer is empty".into());
        }
        if self.customer.chars().count() > MAX_CUSTOMER_CHARS {
            return Err(format!(
                "customer is longer than {MAX_CUSTOMER_CHARS} characters"
            ));
        }
        if self.amount_cents <= 0 {
            return Err(format!(
                "amount_cents must be positive, got {}",
                self.amount_cents
            ));
        }
        if self.amount_cents > MAX_AMOUNT_CENTS {
            return Err(format!(
                "amount_cents {} is above the limit of {MAX_AMOUNT_CENTS}",
                self.amount_cents
            ));
        }
        Ok(())
    }

    /// The `OrderPlaced` payload: the order as placed.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.request_id,
            "customer": self.customer,
            "amount_cents": self.amount_cents,
        })
    }
}

/// `count` orders generated from `seed`: the same seed gives the same orders (and the same
/// request ids, so replaying a seed is a retry, not new business).
pub fn generate(seed: u64, first: u64, count: u64) -> Vec<OrderRequest> {
    const CUSTOMERS: &[&str] = &[
        "ada", "grace", "edsger", "barbara", "ken", "leslie", "margaret", "tony",
    ];
    (first..first + count)
        .map(|i| {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
            OrderRequest {
                request_id: format!("s{seed}-o{i}"),
                customer: CUSTOMERS[rng.usize(..CUSTOMERS.len())].to_string(),
                amount_cents: rng.i64(100..=50_000),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<InputLine> {
        let mut reader = std::io::BufReader::with_capacity(16, input);
        std::iter::from_fn(|| read_line(&mut reader).unwrap()).collect()
    }

    #[test]
    fn each_bad_line_is_its_own_problem() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let mut input = b"{\"a\":1}\n\xff\xfe\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        assert_eq!(
            lines(&input),
            vec![
                InputLine::Text("{\"a\":1}".into()),
                InputLine::NotUtf8,
                InputLine::TooLong {
                    bytes: MAX_LINE_BYTES as u64 + 1
                },
                InputLine::Text("last".into()),
            ]
        );
        assert_eq!(
            truncate_echo(&"é".repeat(500)).chars().count(),
            MAX_REQUEST_ID_CHARS + 1
        );
        assert_eq!(truncate_echo("short"), "short");
    }
}
