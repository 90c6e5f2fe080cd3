//! Human-readable sizes: `512`, `16KB`, `16 KB`, `1mb`, `1GB`, `2 KiB` (powers of 1024,
//! case-insensitive; `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`).

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digits first.
    #[error("'{text}' is not a size (examples: 512, 16KB, 1 MB, 1GB)")]
    NotASize {
        /// The text as given.
        text: String,
    },
    /// More bytes than a `u64` holds.
    #[error("'{text}' is too large")]
    TooLarge {
        /// The text as given.
        text: String,
        /// The parser's error, when the number itself does not fit (not when only the
        /// number times its unit does).
        #[source]
        source: Option<std::num::ParseIntError>,
    },
    /// A unit other than B, KB, MB or GB.
    #[error("unknown unit '{unit}' in '{text}' (use B, KB, MB or GB; powers of 1024)")]
    UnknownUnit {
        /// The unit (lower-cased).
        unit: String,
        /// The text as given.
        text: String,
    },
}

/// Parses a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::NotASize { text: text.into() });
    }
    let n: u64 = digits.parse().map_err(|e| SizeError::TooLarge {
        text: text.into(),
        source: Some(e),
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.into(),
                text: text.into(),
            })
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| SizeError::TooLarge {
            text: text.into(),
            source: None,
        })
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

    #[test]
    fn messages() {
        let message = |text: &str| parse_size(text).unwrap_err().to_string();
        assert_eq!(
            message("KB"),
            "'KB' is not a size (examples: 512, 16KB, 1 MB, 1GB)"
        );
        assert_eq!(
            message("12 TB"),
            "unknown unit 'tb' in '12 TB' (use B, KB, MB or GB; powers of 1024)"
        );
        assert_eq!(
            message("99999999999999999999"),
            "'99999999999999999999' is too large"
        );
        assert_eq!(message("99999999999GB"), "'99999999999GB' is too large");
        let overflow = parse_size("99999999999999999999").unwrap_err();
        assert!(std::error::Error::source(&overflow).is_some());
    }
}
