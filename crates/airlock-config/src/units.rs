//! Human-written durations (`"30s"`, `"1h30m"`) and byte sizes (`"16MiB"`).
//!
//! Both appear in `airlock.toml` and on the command line (`airlock request --for 30m`), so parsing and
//! formatting live here, side by side, and round-trip: `parse(format(x)) == x`.
//! Errors are plain `String`s because callers always wrap them with their own context (a file line, a
//! CLI flag); the text says what was expected.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Duration units, largest first; a duration lists them in this order, each at most once.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

const DURATION_HINT: &str = "write a whole number followed by a unit (ms, s, m, h or d), e.g. \"30s\", \"5m\", \"8h\" or \"1h30m\"";

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"14d"` and combinations such as `"1h30m"`.
///
/// Units must go from largest to smallest, each at most once, so that `"30m1h"` (probably a typo)
/// is refused rather than guessed at. Fractions (`"1.5h"`) are not accepted: write `"1h30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {DURATION_HINT}"));
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the last unit seen; the next one must come strictly after it.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!("invalid duration {s:?}: {DURATION_HINT}"));
        }
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: {digits} has no unit (write \"{digits}s\" for seconds)"
            ));
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {unit:?}: {DURATION_HINT}"
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "invalid duration {s:?}: units must go from largest to smallest, each at most once (e.g. \"1h30m\")"
            ));
        }
        last_unit = Some(index);
        let too_large = || format!("duration {s:?} is too large");
        let amount: u64 = digits.parse().map_err(|_| too_large())?;
        total_ms = amount
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(too_large)?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it: `"1h30m"`, `"8h"`, `"500ms"`, `"0s"`.
///
/// Precision is one millisecond; anything finer is dropped, because nothing Airlock configures or
/// grants is that short.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for &(name, unit_ms) in DURATION_UNITS {
        let unit_ms = u128::from(unit_ms);
        let amount = ms / unit_ms;
        if amount > 0 {
            out.push_str(&amount.to_string());
            out.push_str(name);
            ms -= amount * unit_ms;
        }
    }
    out
}

/// A size in bytes, written in `airlock.toml` as an integer or a string such as `"64KiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Binary units, largest first. Decimal ones (`KB`, `MB`) are refused rather than guessed at.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

const SIZE_HINT: &str =
    "write a whole number of bytes or a number with a binary unit, e.g. \"512B\", \"64KiB\", \"16MiB\" or \"1GiB\"";

impl ByteSize {
    /// One kibibyte (1024 bytes).
    pub const KIB: ByteSize = ByteSize(1 << 10);
    /// One mebibyte.
    pub const MIB: ByteSize = ByteSize(1 << 20);
    /// One gibibyte.
    pub const GIB: ByteSize = ByteSize(1 << 30);

    /// Parses `"512B"`, `"64KiB"`, `"16MiB"`, `"1GiB"` or a bare number of bytes (`"4096"`).
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let text = s.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(format!("invalid size {s:?}: {SIZE_HINT}"));
        }
        let unit = unit.trim_start();
        let multiplier = if unit.is_empty() {
            1
        } else if let Some(&(_, m)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
            m
        } else {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (units are binary: B, KiB, MiB, GiB, TiB; 1 KiB = 1024 bytes)"
            ));
        };
        let too_large = || format!("size {s:?} is too large");
        let amount: u64 = digits.parse().map_err(|_| too_large())?;
        amount
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(too_large)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size in bytes as a `usize`, saturating on (hypothetical) 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly: `1GiB`, `1536KiB`, `1000B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, unit) = SIZE_UNITS
            .iter()
            .copied()
            .find(|&(_, unit)| self.0 != 0 && self.0 % unit == 0)
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", self.0 / unit)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ByteSize::parse(s)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size string such as \"16MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases: &[(&str, u64)] = &[
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("8h", 28_800_000),
            ("14d", 14 * 86_400_000),
            ("1h30m", 5_400_000),
            ("1d2h3m4s5ms", 93_784_005),
            (" 10s ", 10_000),
            ("0s", 0),
        ];
        for &(text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "empty duration"),
            ("30", "30 has no unit"),
            ("10x", "unknown unit \"x\""),
            ("1.5h", "unknown unit \".\""),
            ("h", "invalid duration"),
            ("-5s", "invalid duration"),
            ("30m1h", "largest to smallest"),
            ("1h1h", "largest to smallest"),
            ("1h 30m", "unknown unit \"h \""),
            ("99999999999999999999s", "too large"),
            ("999999999999999d", "too large"),
        ];
        for &(text, expected) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn durations_round_trip() {
        for ms in [
            0u64,
            1,
            999,
            1_000,
            59_999,
            60_000,
            5_400_000,
            28_800_000,
            93_784_005,
            14 * 86_400_000,
        ] {
            let d = Duration::from_millis(ms);
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{ms} -> {text}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(8 * 3600)), "8h");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "0s");
    }

    #[test]
    fn sizes_parse() {
        let cases: &[(&str, u64)] = &[
            ("512B", 512),
            ("64KiB", 65_536),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("4096", 4096),
            ("8 KiB", 8192),
        ];
        for &(text, bytes) in cases {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn sizes_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid size"),
            ("KiB", "invalid size"),
            ("64KB", "unknown unit \"KB\""),
            ("1gib", "unknown unit \"gib\""),
            ("1.5GiB", "unknown unit \".5GiB\""),
            ("99999999999TiB", "too large"),
        ];
        for &(text, expected) in cases {
            let err = ByteSize::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes_round_trip() {
        for bytes in [0u64, 1, 1000, 1024, 8192, 1536 * 1024, 1 << 30, 3 << 40] {
            let size = ByteSize(bytes);
            assert_eq!(ByteSize::parse(&size.to_string()), Ok(size), "{bytes}");
        }
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1536KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn size_serde_accepts_integers_and_strings() {
        #[derive(Deserialize)]
        struct W {
            s: ByteSize,
        }
        let cases: &[(&str, Option<u64>)] = &[
            ("s = 8192", Some(8192)),
            ("s = \"16MiB\"", Some(16 << 20)),
            ("s = -1", None),
            ("s = \"16MB\"", None),
            ("s = true", None),
        ];
        for &(text, expected) in cases {
            let got = toml::from_str::<W>(text).ok().map(|w| w.s.0);
            assert_eq!(got, expected, "{text}");
        }
    }
}
