//! Untrusted text in front of people: what may not be filed, and how it is
//! shown on a terminal.
//!
//! Statements, reasons, comments, rows, log bodies and attributes come from
//! people and programs Airlock does not trust. A carriage return, an escape
//! sequence or a bidi override in them can make a terminal or a page show
//! something other than what the bytes say (`DELETE ... WHERE id = 5` over a
//! statement that deletes five rows). So there is one rule, here, for every
//! crate: [`is_unsafe`] names the characters that are never filed
//! ([`check`]) and never shown raw ([`escape`], [`escape_lines`]).
//!
//! The unsafe characters are the C0 controls but TAB and LF, DEL, the C1
//! controls, the Unicode format characters (general category Cf: bidi
//! embeddings, overrides and isolates, LRM/RLM/ALM, zero-width characters,
//! the BOM, soft hyphen, tag characters, ...) and the line and paragraph
//! separators U+2028/U+2029 (Zl, Zp), as of Unicode 15. The console's
//! script carries the same table (`UNSAFE_RANGES` in `console/app.js`), and
//! a test in `airlock-api` keeps the two equal.
//!
//! Shown escaped, a character reads as `\r`, `\n`, `\t`, `\x1b` (other C0
//! controls and DEL) or `\u{202e}` (everything else). Backslashes are shown as
//! they are, so `\r` can also be the two characters of an SQL `E'\r'`; the
//! `--json` outputs carry the exact text.

use std::borrow::Cow;
use std::fmt;

/// The characters never filed and never shown raw, as inclusive ranges of
/// code points (TAB and LF are not in it: [`escape`] handles those for
/// one-line output).
pub const UNSAFE_RANGES: &[(u32, u32)] = &[
    (0x00, 0x08),
    (0x0b, 0x1f),
    (0x7f, 0x9f),
    (0xad, 0xad),
    (0x600, 0x605),
    (0x61c, 0x61c),
    (0x6dd, 0x6dd),
    (0x70f, 0x70f),
    (0x890, 0x891),
    (0x8e2, 0x8e2),
    (0x180e, 0x180e),
    (0x200b, 0x200f),
    (0x2028, 0x202e),
    (0x2060, 0x206f),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x1343f),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
];

/// Whether `c` may not be filed and is shown escaped: a control character
/// other than TAB and LF, or an invisible formatting character.
pub fn is_unsafe(c: char) -> bool {
    let c = c as u32;
    if c < 0x7f {
        // The common case, without the search.
        return c < 0x20 && c != 0x09 && c != 0x0a;
    }
    UNSAFE_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The first unsafe character of a text, where it is and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeChar {
    pub ch: char,
    /// 1-based line (lines end at LF).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl UnsafeChar {
    /// What people call it: "a carriage return", "a right-to-left override".
    pub fn name(&self) -> &'static str {
        match self.ch as u32 {
            0x00 => "a NUL byte",
            0x08 => "a backspace",
            0x0b => "a vertical tab",
            0x0c => "a form feed",
            0x0d => "a carriage return",
            0x1b => "an escape (ESC, which starts terminal escape sequences)",
            0x7f => "a delete (DEL)",
            0x85 => "a next-line control (NEL)",
            0x9b => "a control sequence introducer (CSI)",
            0xad => "a soft hyphen",
            0x200b => "a zero-width space",
            0x200c => "a zero-width non-joiner",
            0x200d => "a zero-width joiner",
            0x200e => "a left-to-right mark",
            0x200f => "a right-to-left mark",
            0x061c => "an Arabic letter mark",
            0x2028 => "a line separator",
            0x2029 => "a paragraph separator",
            0x202a => "a left-to-right embedding",
            0x202b => "a right-to-left embedding",
            0x202c => "a pop-directional-formatting",
            0x202d => "a left-to-right override",
            0x202e => "a right-to-left override",
            0x2060 => "a word joiner",
            0x2066 => "a left-to-right isolate",
            0x2067 => "a right-to-left isolate",
            0x2068 => "a first-strong isolate",
            0x2069 => "a pop-directional-isolate",
            0xfeff => "a byte order mark (zero-width no-break space)",
            c if c < 0x20 || (0x80..0xa0).contains(&c) => "a control character",
            _ => "an invisible formatting character",
        }
    }
}

impl fmt::Display for UnsafeChar {
    /// `a carriage return (U+000D, shown as \r) at line 1, column 33`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (U+{:04X}, shown as ", self.name(), self.ch as u32)?;
        push_escaped(f, self.ch)?;
        write!(f, ") at line {}, column {}", self.line, self.column)
    }
}

/// The first character of `text` that may not be filed, if any.
pub fn check(text: &str) -> Result<(), UnsafeChar> {
    let (mut line, mut column) = (1, 0);
    for ch in text.chars() {
        column += 1;
        if ch == '\n' {
            line += 1;
            column = 0;
        } else if is_unsafe(ch) {
            return Err(UnsafeChar { ch, line, column });
        }
    }
    Ok(())
}

/// `text` with Windows line endings (CRLF) made LF. A lone CR stays (and is
/// refused by [`check`]): it is how a line is overwritten on a terminal.
pub fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if text.contains("\r\n") {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

fn push_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

fn escape_where(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            // Writing to a String cannot fail.
            let _ = push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` for one line of a terminal: every unsafe character, LF and TAB
/// escaped (`\r`, `\n`, `\t`, `\x1b`, `\u{202e}`).
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c == '\n' || c == '\t' || is_unsafe(c))
}

/// `text` for several lines of a terminal (an SQL statement, a program's
/// output): LF and TAB kept, every other unsafe character escaped.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_table() {
        let cases = [
            ('a', false),
            (' ', false),
            ('\t', false),
            ('\n', false),
            ('~', false),
            ('é', false),
            ('ש', false),
            ('😀', false),
            ('\u{a0}', false),
            ('\u{300}', false),
            ('\0', true),
            ('\x08', true),
            ('\x0b', true),
            ('\r', true),
            ('\x1b', true),
            ('\x1f', true),
            ('\x7f', true),
            ('\u{80}', true),
            ('\u{85}', true),
            ('\u{9b}', true),
            ('\u{9f}', true),
            ('\u{ad}', true),
            ('\u{61c}', true),
            ('\u{200b}', true),
            ('\u{200d}', true),
            ('\u{200e}', true),
            ('\u{200f}', true),
            ('\u{2027}', false),
            ('\u{2028}', true),
            ('\u{2029}', true),
            ('\u{202a}', true),
            ('\u{202e}', true),
            ('\u{202f}', false),
            ('\u{2066}', true),
            ('\u{2069}', true),
            ('\u{2070}', false),
            ('\u{feff}', true),
            ('\u{fffb}', true),
            ('\u{fffd}', false),
            ('\u{e0001}', true),
            ('\u{e0041}', true),
            ('\u{e0080}', false),
        ];
        for (c, want) in cases {
            assert_eq!(is_unsafe(c), want, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn ranges_are_sorted_and_disjoint() {
        for w in UNSAFE_RANGES.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
    }

    #[test]
    fn escape_table() {
        let cases = [
            ("plain", "plain", "plain"),
            ("a\nb\tc", "a\\nb\\tc", "a\nb\tc"),
            (
                "DELETE FROM customers\r-- WHERE id = 5",
                "DELETE FROM customers\\r-- WHERE id = 5",
                "DELETE FROM customers\\r-- WHERE id = 5",
            ),
            ("\x1b[2K\x1b[1A", "\\x1b[2K\\x1b[1A", "\\x1b[2K\\x1b[1A"),
            ("a\x08b\x7f\0", "a\\x08b\\x7f\\x00", "a\\x08b\\x7f\\x00"),
            ("\u{9b}31m", "\\u{9b}31m", "\\u{9b}31m"),
            (
                "id = 5 \u{202e}1 = 1\u{202c}",
                "id = 5 \\u{202e}1 = 1\\u{202c}",
                "id = 5 \\u{202e}1 = 1\\u{202c}",
            ),
            (
                "\u{feff}x\u{200b}",
                "\\u{feff}x\\u{200b}",
                "\\u{feff}x\\u{200b}",
            ),
            ("crlf\r\n", "crlf\\r\\n", "crlf\\r\n"),
            ("back\\slash", "back\\slash", "back\\slash"),
            ("שלום 😀", "שלום 😀", "שלום 😀"),
        ];
        for (text, one_line, lines) in cases {
            assert_eq!(escape(text), one_line, "{text:?}");
            assert_eq!(escape_lines(text), lines, "{text:?}");
        }
        assert!(matches!(escape("safe"), Cow::Borrowed(_)));
        assert!(matches!(escape_lines("safe\nlines"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_text_is_always_safe() {
        let nasty: String = (0u32..0x3000)
            .chain(0xfff0..0x10000)
            .chain(0xe0000..0xe0100)
            .filter_map(char::from_u32)
            .collect();
        assert!(escape(&nasty).chars().all(|c| !is_unsafe(c) && c != '\n'));
        assert!(escape_lines(&nasty).chars().all(|c| !is_unsafe(c)));
        assert!(check(&escape_lines(&nasty)).is_ok());
    }

    #[test]
    fn check_names_the_character_and_where_it_is() {
        assert_eq!(check("SELECT 1;\n\tSELECT 2"), Ok(()));
        let cases = [
            (
                "DELETE FROM customers\r-- WHERE id = 5",
                '\r',
                1,
                22,
                "a carriage return (U+000D, shown as \\r) at line 1, column 22",
            ),
            (
                "SELECT 1;\nSELECT '\x1b[2K'",
                '\x1b',
                2,
                9,
                "an escape (ESC, which starts terminal escape sequences) (U+001B, shown as \\x1b) at line 2, column 9",
            ),
            (
                "INC-42 \u{202e}",
                '\u{202e}',
                1,
                8,
                "a right-to-left override (U+202E, shown as \\u{202e}) at line 1, column 8",
            ),
            (
                "é\u{85}",
                '\u{85}',
                1,
                2,
                "a next-line control (NEL) (U+0085, shown as \\u{85}) at line 1, column 2",
            ),
            (
                "x\u{e0041}",
                '\u{e0041}',
                1,
                2,
                "an invisible formatting character (U+E0041, shown as \\u{e0041}) at line 1, column 2",
            ),
        ];
        for (text, ch, line, column, message) in cases {
            let e = check(text).unwrap_err();
            assert_eq!(e, UnsafeChar { ch, line, column }, "{text:?}");
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn crlf_becomes_lf_and_a_lone_cr_stays() {
        assert_eq!(normalize_newlines("a\r\nb\r\n"), "a\nb\n");
        assert!(matches!(normalize_newlines("a\nb"), Cow::Borrowed(_)));
        assert_eq!(normalize_newlines("a\rb\r\n"), "a\rb\n");
        assert!(check(&normalize_newlines("UPDATE t\r\nSET x = 1\r\n")).is_ok());
        assert!(check(&normalize_newlines("UPDATE t\rSET x = 1")).is_err());
    }
}
