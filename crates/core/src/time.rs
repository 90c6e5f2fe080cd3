//! Timestamps and TTLs.
//!
//! A [`Timestamp`] is a count of microseconds since the Unix epoch. Clients speak floating
//! Unix seconds (plugnpy sends `time.time()`); we round them to the microsecond once, at the
//! edge, so that every comparison inside the state machine is exact integer arithmetic and
//! identical on every replica.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The longest TTL accepted: ten years, in seconds.
pub const MAX_TTL_SECS: u64 = 315_360_000;

/// The largest timestamp accepted from a client, in seconds (year 9999). Anything later is
/// replaced by the leader's clock anyway; the bound only keeps arithmetic far from overflow.
const MAX_CLIENT_SECS: f64 = 253_402_300_799.0;

/// A point in time: microseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself; also the "no stamp yet" value of a fresh state.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp from microseconds since the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch, as clients see it.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }

    /// Reads a client-supplied timestamp in Unix seconds.
    ///
    /// `None` and `0` mean "now" and give `Ok(None)`; negative, non-finite or absurdly large
    /// values are refused with a message naming `field`.
    pub fn from_client_secs(secs: Option<f64>, field: &str) -> Result<Option<Self>, DomainError> {
        let Some(secs) = secs else { return Ok(None) };
        if !secs.is_finite() {
            return Err(DomainError::invalid(format!(
                "'{field}' must be a finite number of Unix seconds"
            )));
        }
        if secs < 0.0 {
            return Err(DomainError::invalid(format!(
                "'{field}' must not be negative (Unix seconds; omit it or send 0 for now)"
            )));
        }
        if secs > MAX_CLIENT_SECS {
            return Err(DomainError::invalid(format!(
                "'{field}' is beyond the year 9999; send Unix seconds, not milliseconds"
            )));
        }
        let micros = (secs * 1_000_000.0).round() as u64;
        if micros == 0 {
            return Ok(None);
        }
        Ok(Some(Timestamp(micros)))
    }

    /// The next representable instant (one microsecond later).
    pub fn next(self) -> Timestamp {
        Timestamp(self.0.saturating_add(1))
    }

    /// This timestamp plus a TTL (saturating; cannot overflow for accepted inputs).
    pub fn plus(self, ttl: Ttl) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(ttl.as_secs().saturating_mul(1_000_000)),
        )
    }
}

/// A time-to-live in whole seconds, between 1 and [`MAX_TTL_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ttl(u64);

impl Ttl {
    /// A TTL from whole seconds, validated.
    pub fn from_secs(secs: u64) -> Result<Self, DomainError> {
        if (1..=MAX_TTL_SECS).contains(&secs) {
            Ok(Ttl(secs))
        } else {
            Err(ttl_range_error())
        }
    }

    /// A TTL from a JSON number: an integer, or a float with no fractional part.
    pub fn from_f64(secs: f64) -> Result<Self, DomainError> {
        if !secs.is_finite() || secs.fract() != 0.0 {
            return Err(DomainError::invalid(
                "'ttl' must be a whole number of seconds".to_string(),
            ));
        }
        if secs < 1.0 || secs > MAX_TTL_SECS as f64 {
            return Err(ttl_range_error());
        }
        Ok(Ttl(secs as u64))
    }

    /// The TTL in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }
}

fn ttl_range_error() -> DomainError {
    DomainError::invalid(format!(
        "'ttl' must be between 1 and {MAX_TTL_SECS} seconds (ten years)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_timestamp_absent_or_zero_means_now() {
        assert_eq!(
            Timestamp::from_client_secs(None, "timestamp").unwrap(),
            None
        );
        assert_eq!(
            Timestamp::from_client_secs(Some(0.0), "timestamp").unwrap(),
            None
        );
        assert_eq!(
            Timestamp::from_client_secs(Some(-0.0), "timestamp").unwrap(),
            None
        );
    }

    #[test]
    fn client_timestamp_rounds_to_microseconds() {
        let t = Timestamp::from_client_secs(Some(1_700_000_000.123_456_7), "timestamp")
            .unwrap()
            .unwrap();
        assert_eq!(t.as_micros(), 1_700_000_000_123_457);
        assert!((t.as_secs_f64() - 1_700_000_000.123_457).abs() < 1e-6);
    }

    #[test]
    fn client_timestamp_refuses_negative_nonfinite_and_huge() {
        for bad in [
            -1.0,
            -0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.7e15,
        ] {
            let err = Timestamp::from_client_secs(Some(bad), "timestamp").unwrap_err();
            assert!(matches!(err, DomainError::InvalidRequest(_)), "{bad}");
        }
    }

    #[test]
    fn ttl_bounds() {
        assert!(Ttl::from_secs(0).is_err());
        assert_eq!(Ttl::from_secs(1).unwrap().as_secs(), 1);
        assert_eq!(
            Ttl::from_secs(MAX_TTL_SECS).unwrap().as_secs(),
            MAX_TTL_SECS
        );
        assert!(Ttl::from_secs(MAX_TTL_SECS + 1).is_err());
        assert_eq!(Ttl::from_f64(3600.0).unwrap().as_secs(), 3600);
        for bad in [
            0.0,
            -1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            315_360_001.0,
            1e300,
        ] {
            assert!(Ttl::from_f64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_timestamp_plus_ttl() {
        let t = Timestamp::from_micros(10_000_000);
        assert_eq!(t.plus(Ttl::from_secs(5).unwrap()).as_micros(), 15_000_000);
    }
}
