//! An error said with its causes: the one way every crate turns an error into a message or
//! a log line.

use std::fmt;

/// Displays an error followed by each of its sources, joined by `: ` (as `anyhow` prints
/// `{:#}`): `cannot read tls.cert_file /etc/cert.pem: I/O error: …`. A cause whose text the
/// message already ends with is not said twice (some foreign errors, openraft's storage
/// errors among them, repeat their source in their own text).
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !said.ends_with(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner")]
    struct Repeating(#[source] Inner);

    #[test]
    fn joins_the_sources_and_does_not_repeat_one_already_said() {
        assert_eq!(Chain(&Outer(Inner)).to_string(), "outer: inner");
        assert_eq!(Chain(&Inner).to_string(), "inner");
        assert_eq!(Chain(&Repeating(Inner)).to_string(), "outer: inner");
    }
}
