//! Value parsers for flags that could hurt: each refuses, with a message naming the limit,
//! what would otherwise overflow, delete too much or panic deeper down (clap exits with 2).

use crate::clock::MAX_DURATION_MS;

/// A duration in plain milliseconds (`--retention-ms 86400000`), at most 100 years.
pub fn ms(text: &str) -> Result<u64, String> {
    let ms: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
    if ms > MAX_DURATION_MS {
        return Err(format!(
            "{ms} ms is longer than the limit of {MAX_DURATION_MS} ms (100 years)"
        ));
    }
    Ok(ms)
}

/// A consumer group: its name becomes part of file names, so `[A-Za-z0-9_-]`, 1..=64 bytes.
pub fn group(text: &str) -> Result<String, String> {
    const MAX_GROUP_BYTES: usize = 64;
    if text.is_empty() {
        return Err("a consumer group name cannot be empty".into());
    }
    if text.len() > MAX_GROUP_BYTES {
        return Err(format!(
            "a consumer group name is at most {MAX_GROUP_BYTES} bytes"
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{text:?} has {bad:?}: a consumer group name is letters, digits, '_' and '-' only"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_are_refused_with_the_limit() {
        assert_eq!(ms("86400000"), Ok(86_400_000));
        assert!(
            ms("18446744073709551615")
                .unwrap_err()
                .contains("100 years")
        );
        assert!(ms("-1").is_err());
        assert_eq!(group("points-2"), Ok("points-2".into()));
        assert!(group("../x").unwrap_err().contains("'.'"));
        assert!(group("").unwrap_err().contains("empty"));
        assert!(group(&"g".repeat(65)).is_err());
    }
}
