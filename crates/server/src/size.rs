//! Human-readable sizes: `512`, `16KB`, `16 KB`, `1mb`, `1GB`, `2 KiB` (powers of 1024,
//! case-insensitive; `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`).

/// Parses a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a size (examples: 512, 16KB, 1 MB, 1GB)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use B, KB, MB or GB; powers of 1024)"
            ))
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("16KB").unwrap(), 16384);
        assert_eq!(parse_size("16 KB").unwrap(), 16384);
        assert_eq!(parse_size("16kb").unwrap(), 16384);
        assert_eq!(parse_size("1mb").unwrap(), 1 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2 KiB").unwrap(), 2048);
        assert_eq!(parse_size(" 7 b ").unwrap(), 7);
        for bad in [
            "",
            "KB",
            "-1",
            "1.5KB",
            "12 TB",
            "abc",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
