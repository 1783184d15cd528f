//! Masking of result values: column-name patterns and value detectors.
//!
//! The proxy decides per result column. A column whose name matches one of
//! the resource's [`ColumnPattern`]s has every value replaced by [`MASK`];
//! otherwise, when [`Detectors`] are configured, each value is scanned and
//! every sensitive span inside it is replaced by [`MASK`]. This module holds
//! only the pure functions; it never sees a connection.
//!
//! Values are bytes, not necessarily UTF-8 (a client may use a single-byte
//! encoding), so every detector works on ASCII classes only: bytes `>= 0x80`
//! are never part of a match, never count as letters or digits for a word
//! boundary, and never make anything panic. The detectors run on every value
//! of every masked result row, so each one starts with a prefilter that lets
//! typical short values through in nanoseconds, and every scan is linear in
//! the value's length (values can be megabytes): each candidate start looks
//! ahead a bounded number of bytes, never rescans the value.
//!
//! # Detectors
//!
//! "Word boundary" below means: the byte before the span and the byte after
//! it are not ASCII letters or digits (or the span touches the value's edge).
//!
//! - **`email`**: a local part of 1 to 64 characters from `[A-Za-z0-9._%+-]`
//!   (the run of those characters immediately before the `@`, its last 64 if
//!   longer), an `@`, and a domain of labels `[A-Za-z0-9-]+` separated by
//!   single dots, with at least two labels and a last label of two or more
//!   ASCII letters. The span covers the local part through the longest such
//!   domain, so `alice.o'neil+x@mail.example.co.uk` yields
//!   `neil+x@mail.example.co.uk` (the apostrophe ends the local part) and a
//!   sentence's final dot is not included. `a@b` and `user@localhost` do not
//!   match.
//! - **`credit_card`**: 13 to 19 digits, optionally grouped with a single
//!   space or a single hyphen between digits (`4111 1111 1111 1111`,
//!   `4111-1111-1111-1111`), on word boundaries, passing the Luhn check, and
//!   starting with a known issuer prefix: Visa 4; Mastercard 51-55,
//!   2221-2720; Amex 34, 37; Discover 6011, 644-649, 65; JCB 3528-3589;
//!   Diners 300-305, 36, 38, 39; UnionPay 62; Maestro 50, 56-58, 6304, 6759,
//!   6761-6763. A span starts and ends on a group boundary, so a longer
//!   contiguous digit run with a valid number in its middle does not match,
//!   but a grouped card followed by another group (`4111 1111 1111 1111 123`)
//!   still does. When several groupings from one start are valid, the longest
//!   wins.
//! - **`phone`**, two forms, on word boundaries:
//!   - international: `+` and 8 to 15 digits, with single separators (space,
//!     `-`, `.`) between digit groups and at most one parenthesised group:
//!     `+44 20 7946 0958`, `+1 (415) 555-0132`, `+4915112345678`. If the digits
//!     run on past 15, the longest prefix that ends on a group boundary with
//!     8 to 15 digits matches.
//!   - North American, without `+`: three, three and four digits with a
//!     separator (space, `-`, `.`) between the groups, or the area code in
//!     parentheses followed by an optional space: `415-555-0132`,
//!     `415.555.0132`, `415 555 0132`, `(415) 555-0132`; optionally preceded
//!     by the country code `1` and a space or hyphen (`1-415-555-0132`,
//!     `1 (415) 555-0132`). A plain 10-digit run is not a phone (it is an ID
//!     or a timestamp far more often). This form is also refused when it
//!     continues a longer dotted or dashed number (preceded by `.`/`-` after a
//!     digit, or followed by `.`/`-` and a digit), so dates (`2026-11-22`),
//!     times, IP addresses (`10.0.0.1`), versions (`1.2.3`) and UUIDs do not
//!     match.
//! - **`iban`**: two uppercase ASCII letters (country), two digits (check),
//!   then uppercase letters and digits, either contiguous or in groups of four
//!   separated by single spaces (`GB82 WEST 1234 5698 7654 32`, the last group
//!   may be shorter); compact length 15 to 34; on word boundaries; passing the
//!   ISO 13616 mod-97 check (first four characters moved to the end, letters
//!   as 10..35, remainder 1), computed incrementally, so grouped forms are
//!   tried at every group end and the longest valid one wins.
//!
//! When spans of several detectors overlap they are merged into one span,
//! reported with the detector of the span that starts first (the longer one
//! on a tie), so the result is sorted and non-overlapping.

use std::ops::Range;

/// What a masked text value, or a masked span inside one, is replaced with.
pub const MASK: &[u8] = b"[masked]";

/// A kind of sensitive value recognised inside a result value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    Email,
    CreditCard,
    Phone,
    Iban,
}

impl Detector {
    /// Every detector, in the order they are documented.
    pub const ALL: &'static [Detector] = &[
        Detector::Email,
        Detector::CreditCard,
        Detector::Phone,
        Detector::Iban,
    ];

    /// The detector's name in configuration (`detectors = [...]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
        }
    }

    /// The detector with the exact configuration name `s`. Exact and
    /// lower-case only, so a typo fails configuration loading instead of
    /// silently masking less.
    pub fn parse(s: &str) -> Option<Detector> {
        Detector::ALL.iter().copied().find(|d| d.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Detector::Email => 1,
            Detector::CreditCard => 2,
            Detector::Phone => 4,
            Detector::Iban => 8,
        }
    }
}

/// A column-name pattern: a glob, matched case-insensitively (ASCII) against
/// the whole name. `*` matches any run (including empty), `?` exactly one
/// character (a char, not a byte). No other metacharacters; everything else
/// is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    /// As written in the configuration, for messages and `to_like`.
    pattern: String,
    /// ASCII-lowercased with runs of `*` collapsed: what `matches` walks.
    folded: Vec<u8>,
}

impl ColumnPattern {
    /// Err with a human sentence for: empty pattern, pattern that is only
    /// `*`s ("would mask every column; list the columns instead"), control
    /// characters. A catch-all is refused because it silently masks columns
    /// added later, and an operator who wants that should say so per column.
    pub fn new(pattern: &str) -> Result<ColumnPattern, String> {
        if pattern.is_empty() {
            return Err("a column pattern is empty".to_string());
        }
        if pattern.chars().all(|c| c == '*') {
            return Err(format!(
                "column pattern {pattern:?} would mask every column; list the columns instead"
            ));
        }
        if pattern.chars().any(char::is_control) {
            return Err(format!(
                "column pattern {pattern:?} contains a control character"
            ));
        }
        let mut folded = Vec::with_capacity(pattern.len());
        for &b in pattern.as_bytes() {
            if b == b'*' && folded.last() == Some(&b'*') {
                continue;
            }
            folded.push(b.to_ascii_lowercase());
        }
        Ok(ColumnPattern {
            pattern: pattern.to_string(),
            folded,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `column` matches. Greedy matching that only ever
    /// backtracks to the last `*` seen, so the cost is at most
    /// pattern length × name length, never exponential.
    pub fn matches(&self, column: &str) -> bool {
        let p = self.folded.as_slice();
        let s = column.as_bytes();
        let (mut pi, mut si) = (0usize, 0usize);
        // (pattern index just after the last `*`, name index it is tried at)
        let mut star: Option<(usize, usize)> = None;
        while let Some(&c) = s.get(si) {
            match p.get(pi) {
                Some(b'*') => {
                    pi += 1;
                    star = Some((pi, si));
                    continue;
                }
                Some(b'?') => {
                    pi += 1;
                    si += utf8_len(c);
                    continue;
                }
                Some(&l) if l == c.to_ascii_lowercase() => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, ss)) => {
                    // Let the `*` swallow one more whole character.
                    let next = ss + s.get(ss).map_or(1, |&b| utf8_len(b));
                    star = Some((sp, next));
                    pi = sp;
                    si = next;
                }
                None => return false,
            }
        }
        p.get(pi..)
            .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
    }

    /// The pattern as a PostgreSQL `LIKE` pattern (for `attname ILIKE ...`):
    /// `*`→`%`, `?`→`_`, and literal `%`, `_`, `\` escaped with backslash
    /// (`LIKE`'s default escape character).
    pub fn to_like(&self) -> String {
        let mut out = String::with_capacity(self.pattern.len() + 4);
        for c in self.pattern.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out
    }
}

/// The length of the UTF-8 character whose first byte is `b` (1 for a stray
/// continuation byte, which a `&str` never starts a character with).
fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A set of detectors, cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detectors {
    bits: u8,
}

/// The shortest value any detector can match (`a@b.cc`): anything shorter
/// is returned untouched without looking at it.
const MIN_MATCH_LEN: usize = 6;

impl Detectors {
    pub fn new(list: &[Detector]) -> Detectors {
        Detectors {
            bits: list.iter().fold(0, |bits, d| bits | d.bit()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn contains(&self, d: Detector) -> bool {
        self.bits & d.bit() != 0
    }

    /// Byte ranges of sensitive values inside `value`, sorted,
    /// non-overlapping, with the detector that found each. Values are bytes,
    /// not necessarily UTF-8 (single-byte client encodings): all patterns
    /// are ASCII; bytes >= 0x80 are never part of a match and never crash
    /// anything.
    pub fn find(&self, value: &[u8]) -> Vec<(Range<usize>, Detector)> {
        // Vec::new does not allocate: a value without matches costs none.
        let mut out = Vec::new();
        if self.bits == 0 || value.len() < MIN_MATCH_LEN {
            return out;
        }
        if self.contains(Detector::Email) && value.contains(&b'@') {
            scan_emails(value, &mut out);
        }
        if self.bits & !Detector::Email.bit() != 0 {
            self.scan_digit_detectors(value, &mut out);
        }
        if out.len() > 1 {
            // Earliest start first, longest first on a tie, so a merged span
            // keeps the detector of the span that starts it.
            out.sort_unstable_by(|a, b| {
                a.0.start
                    .cmp(&b.0.start)
                    .then_with(|| b.0.end.cmp(&a.0.end))
            });
            out.dedup_by(|next, kept| {
                if next.0.start < kept.0.end {
                    kept.0.end = kept.0.end.max(next.0.end);
                    true
                } else {
                    false
                }
            });
        }
        out
    }

    /// Runs the card, phone and IBAN scanners only where their characters
    /// are dense enough for them to match. The value is cut into 32-byte
    /// blocks whose character counts are cheap (vectorised) to take. A card
    /// spans at most 37 bytes and an IBAN 42, so one starting in block `k`
    /// lies within blocks `k..k+3`; a phone spans at most 32 bytes, so
    /// within `k..k+2`. A scanner only looks for starts in blocks where those
    /// blocks hold enough characters: 13 digits for a card, 8 for a phone,
    /// 15 uppercase letters or digits for an IBAN. Ordinary text with a few
    /// numbers in it then costs little more than the counting.
    fn scan_digit_detectors(&self, v: &[u8], out: &mut Vec<(Range<usize>, Detector)>) {
        let cards = self.contains(Detector::CreditCard);
        let phones = self.contains(Detector::Phone);
        let ibans = self.contains(Detector::Iban) && v.len() >= 15;
        let blocks = v.len().div_ceil(BLOCK);
        let digits = |k| block_count(v, k, is_digit);
        if blocks == 1 && digits(0) < 2 {
            // The usual short name or word: no digit-based detector can match.
            return;
        }
        let iban_chars = |k| {
            if ibans {
                block_count(v, k, is_iban_char)
            } else {
                0
            }
        };
        let mut d = [digits(0), digits(1), digits(2)];
        let mut c = [iban_chars(0), iban_chars(1), iban_chars(2)];
        // Where each scanner resumes: a match or a digit group may run past
        // the block the scanner was last called for.
        let (mut card_from, mut phone_from, mut iban_from) = (0, 0, 0);
        for k in 0..blocks {
            let lo = k * BLOCK;
            let hi = (lo + BLOCK).min(v.len());
            if cards && d[0] + d[1] + d[2] >= 13 {
                card_from = scan_cards(v, card_from.max(lo), hi, out);
            }
            if phones && d[0] + d[1] >= 8 {
                phone_from = scan_phones(v, phone_from.max(lo), hi, out);
            }
            if ibans && c[0] + c[1] + c[2] >= 15 && d[0] + d[1] + d[2] >= 2 {
                iban_from = scan_ibans(v, iban_from.max(lo), hi, out);
            }
            d = [d[1], d[2], digits(k + 3)];
            c = [c[1], c[2], iban_chars(k + 3)];
        }
    }

    /// `value` with every span found replaced by MASK; `None` when nothing
    /// was found (the common case must not allocate).
    pub fn redact(&self, value: &[u8]) -> Option<Vec<u8>> {
        let spans = self.find(value);
        if spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(value.len() + spans.len() * MASK.len());
        let mut pos = 0;
        for (span, _) in &spans {
            out.extend_from_slice(value.get(pos..span.start).unwrap_or_default());
            out.extend_from_slice(MASK);
            pos = span.end;
        }
        out.extend_from_slice(value.get(pos..).unwrap_or_default());
        Some(out)
    }
}

/// The byte at `i`, or 0 past the end: 0 is in no character class, so an
/// out-of-range look-ahead reads as a boundary and can never panic.
#[inline]
fn at(v: &[u8], i: usize) -> u8 {
    v.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start of the value.
#[inline]
fn before(v: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(j) => at(v, j),
        None => 0,
    }
}

/// The first index in `from..until` whose byte satisfies `pred`.
#[inline]
fn next_pos(v: &[u8], from: usize, until: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    let off = v
        .get(from..until.min(v.len()))?
        .iter()
        .position(|&b| pred(b))?;
    Some(from + off)
}

/// The block size of the digit-density prefilter.
const BLOCK: usize = 32;

/// How many bytes of block `k` of `v` satisfy `class` (0 past the end). A
/// full block is summed into a byte without early exit, which the compiler
/// vectorises.
#[inline]
fn block_count(v: &[u8], k: usize, class: impl Fn(u8) -> bool) -> u32 {
    let lo = k.saturating_mul(BLOCK);
    let count = |bytes: &[u8]| {
        bytes
            .iter()
            .fold(0u8, |n, &b| n.wrapping_add(u8::from(class(b))))
    };
    match v.get(lo..lo.saturating_add(BLOCK)) {
        Some(block) => u32::from(count(block)),
        None => u32::from(count(v.get(lo..).unwrap_or_default())),
    }
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

#[inline]
fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}

// ---------------------------------------------------------------- email

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

const MAX_LOCAL: usize = 64;

/// Scans around each `@`. Linear: the local part looks back at most 64
/// bytes, and a domain stops at the next `@`, so no byte is in two domains.
fn scan_emails(v: &[u8], out: &mut Vec<(Range<usize>, Detector)>) {
    let mut from = 0;
    while let Some(off) = v
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'@'))
    {
        let at_sign = from + off;
        from = at_sign + 1;
        let mut start = at_sign;
        while start > 0 && at_sign - start < MAX_LOCAL && is_local(before(v, start)) {
            start -= 1;
        }
        if start == at_sign {
            continue;
        }
        if let Some(end) = domain_end(v, at_sign + 1) {
            out.push((start..end, Detector::Email));
            from = end;
        }
    }
}

/// The end of the longest domain starting at `i` that has at least two
/// labels and ends in a label of two or more letters.
fn domain_end(v: &[u8], mut i: usize) -> Option<usize> {
    let mut best = None;
    let mut labels = 0usize;
    loop {
        let label_start = i;
        let mut all_letters = true;
        while is_label(at(v, i)) {
            all_letters &= at(v, i).is_ascii_alphabetic();
            i += 1;
        }
        if i == label_start {
            return best;
        }
        labels += 1;
        if labels >= 2 && all_letters && i - label_start >= 2 {
            best = Some(i);
        }
        if at(v, i) == b'.' && is_label(at(v, i + 1)) {
            i += 1;
        } else {
            return best;
        }
    }
}

// ---------------------------------------------------------- credit card

/// Cards starting in `from..until`; returns where the next call resumes.
fn scan_cards(
    v: &[u8],
    from: usize,
    until: usize,
    out: &mut Vec<(Range<usize>, Detector)>,
) -> usize {
    let mut i = from;
    // A group already under way at `from` started in an earlier block,
    // which tried it if it could hold a card.
    if is_digit(before(v, i)) {
        while is_digit(at(v, i)) {
            i += 1;
        }
    }
    while let Some(start) = next_pos(v, i, until, is_digit) {
        // `start` begins a group of digits (the byte before is not a digit).
        i = start;
        if !is_word(before(v, i)) {
            if let Some(end) = card_at(v, i) {
                out.push((i..end, Detector::CreditCard));
                i = end;
                continue;
            }
        }
        while is_digit(at(v, i)) {
            i += 1;
        }
    }
    i.max(until)
}

/// The end of the longest card number starting at `s`, walking at most 19
/// digits ahead. Luhn is kept for both parities as digits arrive, because
/// which digits are doubled depends on the final length.
fn card_at(v: &[u8], s: usize) -> Option<usize> {
    let mut sums = [0u32; 2];
    let mut count = 0usize;
    let mut prefix = 0u32;
    let mut best = None;
    let mut i = s;
    loop {
        while is_digit(at(v, i)) {
            if count == 19 {
                return best;
            }
            let d = u32::from(at(v, i) - b'0');
            let doubled = if d >= 5 { d * 2 - 9 } else { d * 2 };
            // sums[p] doubles the digits whose index has parity p.
            sums[count % 2] += doubled;
            sums[1 - count % 2] += d;
            if count < 4 {
                prefix = prefix * 10 + d;
            }
            count += 1;
            i += 1;
        }
        // With `count` digits the rightmost is undoubled, so the doubled
        // indices are those with the parity of `count`.
        if (13..=19).contains(&count)
            && !is_word(at(v, i))
            && sums[count % 2] % 10 == 0
            && known_issuer(prefix)
        {
            best = Some(i);
        }
        if matches!(at(v, i), b' ' | b'-') && is_digit(at(v, i + 1)) {
            i += 1;
        } else {
            return best;
        }
    }
}

/// Whether the first four digits `p4` start a known issuer's range.
fn known_issuer(p4: u32) -> bool {
    let (p1, p2, p3) = (p4 / 1000, p4 / 100, p4 / 10);
    p1 == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || (644..=649).contains(&p3)
        || p2 == 65
        || (3528..=3589).contains(&p4)
        || (300..=305).contains(&p3)
        || matches!(p2, 36 | 38 | 39)
        || p2 == 62
        || p2 == 50
        || (56..=58).contains(&p2)
        || p4 == 6304
        || p4 == 6759
        || (6761..=6763).contains(&p4)
}

// ---------------------------------------------------------------- phone

/// Phones starting in `from..until`; returns where the next call resumes.
fn scan_phones(
    v: &[u8],
    from: usize,
    until: usize,
    out: &mut Vec<(Range<usize>, Detector)>,
) -> usize {
    let starts = |b: u8| is_digit(b) || b == b'+' || b == b'(';
    let mut i = from;
    while let Some(start) = next_pos(v, i, until, starts) {
        i = start;
        let b = at(v, i);
        let found = if b == b'+' && !is_word(before(v, i)) {
            plus_phone_at(v, i)
        } else if (b == b'(' || is_digit(b)) && na_start_ok(v, i) {
            // na_start_ok refuses a digit after a digit: only group starts.
            na_phone_at(v, i)
        } else {
            None
        };
        match found {
            Some(end) => {
                out.push((i..end, Detector::Phone));
                i = end;
            }
            None if is_digit(b) => {
                while is_digit(at(v, i)) {
                    i += 1;
                }
            }
            None => i += 1,
        }
    }
    i.max(until)
}

fn is_phone_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

/// `+` and 8 to 15 digits in groups; the end of the longest valid prefix.
fn plus_phone_at(v: &[u8], plus: usize) -> Option<usize> {
    let mut i = plus + 1;
    let mut count = 0usize;
    let mut paren_used = false;
    let mut best = None;
    loop {
        // One unit: a digit group or the parenthesised group.
        if at(v, i) == b'(' && !paren_used {
            paren_used = true;
            let open = i;
            i += 1;
            while is_digit(at(v, i)) {
                count += 1;
                i += 1;
                if count > 15 {
                    return best;
                }
            }
            if i == open + 1 || at(v, i) != b')' {
                return best;
            }
            i += 1;
        } else if is_digit(at(v, i)) {
            while is_digit(at(v, i)) {
                count += 1;
                i += 1;
                if count > 15 {
                    return best;
                }
            }
        } else {
            return best;
        }
        if count >= 8 && !is_word(at(v, i)) {
            best = Some(i);
        }
        let next = at(v, i);
        let after = at(v, i + 1);
        if is_phone_sep(next) && (is_digit(after) || (after == b'(' && !paren_used)) {
            i += 1;
        } else if !(is_digit(next) || (next == b'(' && !paren_used)) {
            return best;
        }
    }
}

/// Whether a North American number may start at `i`: not inside a word,
/// not right after `+` (the international form covers that), and not
/// continuing a dotted or dashed number such as a date or an address.
fn na_start_ok(v: &[u8], i: usize) -> bool {
    let b = before(v, i);
    if is_word(b) || b == b'+' {
        return false;
    }
    !(matches!(b, b'.' | b'-') && i >= 2 && is_digit(before(v, i - 1)))
}

/// Exactly `n` digits at `i` (not followed by another digit): the index
/// after them.
fn digits_exact(v: &[u8], i: usize, n: usize) -> Option<usize> {
    let end = i + n;
    let all = (i..end).all(|j| is_digit(at(v, j)));
    (all && !is_digit(at(v, end))).then_some(end)
}

/// A North American number at `s`, with or without the leading `1`.
fn na_phone_at(v: &[u8], s: usize) -> Option<usize> {
    if at(v, s) == b'1' && matches!(at(v, s + 1), b' ' | b'-') {
        if let Some(end) = na_body(v, s + 2) {
            return Some(end);
        }
    }
    na_body(v, s)
}

/// `(ddd) ddd-dddd` or `ddd-ddd-dddd` (any of space, `-`, `.` as
/// separators), then an end boundary.
fn na_body(v: &[u8], s: usize) -> Option<usize> {
    let mut i = if at(v, s) == b'(' {
        let close = digits_exact(v, s + 1, 3)?;
        if at(v, close) != b')' {
            return None;
        }
        if at(v, close + 1) == b' ' {
            close + 2
        } else {
            close + 1
        }
    } else {
        let area = digits_exact(v, s, 3)?;
        if !is_phone_sep(at(v, area)) {
            return None;
        }
        area + 1
    };
    i = digits_exact(v, i, 3)?;
    if !is_phone_sep(at(v, i)) {
        return None;
    }
    let end = digits_exact(v, i + 1, 4)?;
    let after = at(v, end);
    if is_word(after) || (matches!(after, b'.' | b'-') && is_digit(at(v, end + 1))) {
        return None;
    }
    Some(end)
}

// ----------------------------------------------------------------- iban

#[inline]
fn is_iban_char(b: u8) -> bool {
    b.wrapping_sub(b'A') < 26 || b.wrapping_sub(b'0') < 10
}

/// IBANs starting in `from..until`; returns where the next call resumes.
/// Looks for the check digits rather than the country letters: in text,
/// digits are much rarer than capitals, so fewer positions are examined.
fn scan_ibans(
    v: &[u8],
    from: usize,
    until: usize,
    out: &mut Vec<(Range<usize>, Detector)>,
) -> usize {
    // The next possible start; candidates are found by their check digits,
    // two bytes after the start.
    let mut next = from;
    while let Some(j) = next_pos(v, next + 2, until + 2, is_digit) {
        let s = j - 2;
        if is_digit(at(v, j + 1))
            && at(v, s).is_ascii_uppercase()
            && at(v, s + 1).is_ascii_uppercase()
            && !is_word(before(v, s))
        {
            if let Some(end) = iban_at(v, s) {
                out.push((s..end, Detector::Iban));
                next = end;
                continue;
            }
        }
        next = s + 1;
    }
    next.max(until)
}

/// Folds one IBAN character into a mod-97 remainder: digits as themselves,
/// letters as 10..35 (two decimal digits). Never overflows: r < 97.
fn mod97_push(r: u32, b: u8) -> u32 {
    if b.is_ascii_digit() {
        (r * 10 + u32::from(b - b'0')) % 97
    } else {
        (r * 100 + u32::from(b - b'A') + 10) % 97
    }
}

/// The end of the longest valid IBAN at `s` (compact, or grouped by four
/// with single spaces), walking at most 34 characters.
fn iban_at(v: &[u8], s: usize) -> Option<usize> {
    let head = [at(v, s), at(v, s + 1), at(v, s + 2), at(v, s + 3)];
    // Remainder of the BBAN (everything after the first four characters).
    let mut bban = 0u32;
    let mut len = 0usize;
    let mut best = None;
    let mut i = s;
    loop {
        let group_start = i;
        while is_iban_char(at(v, i)) {
            if len == 34 {
                return best;
            }
            if len >= 4 {
                bban = mod97_push(bban, at(v, i));
            }
            len += 1;
            i += 1;
        }
        if (15..=34).contains(&len) && !is_word(at(v, i)) {
            let check = head.iter().fold(bban, |r, &b| mod97_push(r, b));
            if check == 1 {
                best = Some(i);
            }
        }
        if i - group_start == 4 && at(v, i) == b' ' && is_iban_char(at(v, i + 1)) {
            i += 1;
        } else {
            return best;
        }
    }
}

// ------------------------------------------------------ binary numbers

/// Numeric values with more digits than this are not rendered: no card,
/// phone or IBAN is that long, and a hostile header must not make us build
/// a huge string.
const MAX_NUMBER_DIGITS: usize = 1000;

/// For detection in binary-format results: the decimal text of a binary
/// int2/int4/int8 (type OIDs 21, 23, 20) or numeric (1700) value, e.g. a
/// card number stored as bigint or numeric.
/// `None` for other OIDs and for malformed bytes (wrong length, bad numeric
/// header, NaN/Inf).
/// Numeric binary format: i16 ndigits, i16 weight, u16 sign (0x0000 pos,
/// 0x4000 neg, 0xC000 NaN, 0xD000 +Inf, 0xF000 -Inf), u16 dscale, then
/// ndigits u16 base-10000 digits, big-endian. The text is what PostgreSQL
/// prints: a leading `-` if negative, and `.` plus `dscale` fraction digits
/// when dscale > 0. Values over ~1000 digits give `None`.
pub fn binary_number_text(type_oid: u32, bytes: &[u8]) -> Option<String> {
    match type_oid {
        21 => Some(i16::from_be_bytes(bytes.try_into().ok()?).to_string()),
        23 => Some(i32::from_be_bytes(bytes.try_into().ok()?).to_string()),
        20 => Some(i64::from_be_bytes(bytes.try_into().ok()?).to_string()),
        1700 => numeric_text(bytes),
        _ => None,
    }
}

fn be16(bytes: &[u8], i: usize) -> Option<u16> {
    let pair = bytes.get(i..i + 2)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

/// Mirrors PostgreSQL's `numeric_recv` validation and `get_str_from_var`
/// output.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let ndigits = i16::from_be_bytes(be16(bytes, 0)?.to_be_bytes());
    let weight = i64::from(i16::from_be_bytes(be16(bytes, 2)?.to_be_bytes()));
    let sign = be16(bytes, 4)?;
    let dscale = be16(bytes, 6)?;
    let ndigits = usize::try_from(ndigits).ok()?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    if dscale & !0x3FFF != 0 || bytes.len() != 8 + 2 * ndigits {
        return None;
    }
    let dscale = usize::from(dscale);
    let int_groups = usize::try_from(weight + 1).unwrap_or(0);
    if int_groups.saturating_mul(4).saturating_add(dscale) > MAX_NUMBER_DIGITS {
        return None;
    }
    let body = bytes.get(8..)?;
    if body
        .chunks_exact(2)
        .any(|c| u16::from_be_bytes([c[0], c[1]]) > 9999)
    {
        return None;
    }
    // The base-10000 digit at group index `g` (0 is the most significant
    // stored group); groups outside the stored ones are zero.
    let group = |g: i64| -> u16 {
        usize::try_from(g)
            .ok()
            .filter(|&g| g < ndigits)
            .and_then(|g| be16(body, 2 * g))
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(2 + int_groups * 4 + dscale);
    if negative {
        out.push('-');
    }
    if int_groups == 0 {
        out.push('0');
    } else {
        out.push_str(&group(0).to_string());
        for g in 1..=weight {
            push_group(&mut out, group(g));
        }
    }
    if dscale > 0 {
        out.push('.');
        let frac_start = out.len();
        let mut g = weight + 1;
        while out.len() - frac_start < dscale {
            push_group(&mut out, group(g));
            g += 1;
        }
        out.truncate(frac_start + dscale);
    }
    Some(out)
}

/// Appends a base-10000 digit as exactly four decimal digits.
fn push_group(out: &mut String, d: u16) {
    for div in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + ((d / div) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detectors {
        Detectors::new(Detector::ALL)
    }

    fn only(d: Detector) -> Detectors {
        Detectors::new(&[d])
    }

    /// The matched texts, for readable assertions.
    fn found(d: Detectors, v: &str) -> Vec<&str> {
        d.find(v.as_bytes())
            .into_iter()
            .map(|(r, _)| &v[r])
            .collect()
    }

    fn redacted(d: Detectors, v: &str) -> Option<String> {
        d.redact(v.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn detector_names_round_trip() {
        for &d in Detector::ALL {
            assert_eq!(Detector::parse(d.as_str()), Some(d));
        }
        assert_eq!(Detector::parse("credit_card"), Some(Detector::CreditCard));
        assert_eq!(Detector::parse("Email"), None);
        assert_eq!(Detector::parse("creditcard"), None);
        assert_eq!(Detector::parse(""), None);
    }

    #[test]
    fn detector_set() {
        let d = Detectors::new(&[Detector::Email, Detector::Iban]);
        assert!(d.contains(Detector::Email));
        assert!(d.contains(Detector::Iban));
        assert!(!d.contains(Detector::Phone));
        assert!(!d.is_empty());
        assert!(Detectors::default().is_empty());
        assert!(Detectors::new(&[]).is_empty());
        assert_eq!(Detectors::default().find(b"alice@example.com"), Vec::new());
        // Only the configured detectors run.
        assert!(only(Detector::Phone).find(b"alice@example.com").is_empty());
    }

    #[test]
    fn emails() {
        let e = only(Detector::Email);
        assert_eq!(
            found(e, "contact alice.o'neil+x@mail.example.co.uk now"),
            ["neil+x@mail.example.co.uk"]
        );
        assert_eq!(found(e, "alice@example.com"), ["alice@example.com"]);
        assert_eq!(found(e, "alice@example.com wrote"), ["alice@example.com"]);
        assert_eq!(found(e, "from: bob@example.org"), ["bob@example.org"]);
        assert_eq!(found(e, "write to bob@example.org."), ["bob@example.org"]);
        assert_eq!(
            found(e, "a.b@x-y.io, c_d%e@sub.x.travel;f@g.hi"),
            ["a.b@x-y.io", "c_d%e@sub.x.travel", "f@g.hi"]
        );
        assert_eq!(found(e, "<alice@example.com>"), ["alice@example.com"]);
        // The domain stops before a last label that is not letters.
        assert_eq!(found(e, "x@example.com.123"), ["x@example.com"]);
        assert_eq!(
            redacted(e, "to alice@example.com and bob@example.org").as_deref(),
            Some("to [masked] and [masked]")
        );
    }

    #[test]
    fn not_emails() {
        let e = only(Detector::Email);
        for v in [
            "a@b",
            "user@localhost",
            "@example.com",
            "alice@",
            "alice@.com",
            "alice@example.c",
            "alice@example.c0m",
            "alice@example..com",
            "@@@@@@",
            "price: 5 @ 10.00",
        ] {
            assert!(found(e, v).is_empty(), "{v}");
        }
    }

    #[test]
    fn long_local_part_is_capped() {
        let local = "a".repeat(100);
        let v = format!("{local}@example.com");
        let spans = only(Detector::Email).find(v.as_bytes());
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].0, 36..v.len());
    }

    #[test]
    fn cards() {
        let c = only(Detector::CreditCard);
        for v in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
            "2223003122003222",
            "6759649826438453",
        ] {
            assert_eq!(found(c, v), [v], "{v}");
        }
        assert_eq!(
            found(c, r#"{"card":"4111111111111111"}"#),
            ["4111111111111111"]
        );
        assert_eq!(
            found(c, "paid with 4111 1111 1111 1111, thanks"),
            ["4111 1111 1111 1111"]
        );
        // A grouped card followed by another group (a CVV) still matches.
        assert_eq!(found(c, "4111 1111 1111 1111 123"), ["4111 1111 1111 1111"]);
        assert_eq!(
            found(c, "4111111111111111,5555555555554444"),
            ["4111111111111111", "5555555555554444"]
        );
    }

    #[test]
    fn not_cards() {
        let c = only(Detector::CreditCard);
        for v in [
            "4111111111111112",       // Luhn fails
            "9111111111111110",       // Luhn passes, no issuer
            "0041111111111111111100", // valid number inside a longer run
            "x4111111111111111",      // glued to a word
            "4111111111111111x",
            "4111  1111 1111 1111", // double space
            "4111--1111-1111-1111",
            "411111111111",            // too short
            "41111111111111111111111", // too long
            "2026-11-22 10:15:30",
        ] {
            assert!(found(c, v).is_empty(), "{v}");
        }
    }

    #[test]
    fn phones() {
        let p = only(Detector::Phone);
        for v in [
            "+44 20 7946 0958",
            "+1 (415) 555-0132",
            "+4915112345678",
            "+33.1.23.45.67.89",
            "(415) 555-0132",
            "(415)555-0132",
            "415-555-0132",
            "415.555.0132",
            "415 555 0132",
            "1-415-555-0132",
            "1 (415) 555-0132",
        ] {
            assert_eq!(found(p, v), [v], "{v}");
        }
        assert_eq!(
            found(p, "call +44 20 7946 0958 or (415) 555-0132."),
            ["+44 20 7946 0958", "(415) 555-0132"]
        );
        assert_eq!(found(p, "tel:415-555-0132;"), ["415-555-0132"]);
        // Past 15 digits, the longest valid prefix.
        assert_eq!(found(p, "+44 20 7946 0958 1234 5678"), ["+44 20 7946 0958"]);
    }

    #[test]
    fn not_phones() {
        let p = only(Detector::Phone);
        for v in [
            "4155550132",
            "1700000000",
            "2026-11-22",
            "2026-11-22T10:15:30Z",
            "10:15:30.123456",
            "10.0.0.1",
            "192.168.100.200",
            "1.2.3",
            "1.2.3.4.5.6.7.8",
            "123e4567-e89b-12d3-a456-426614174000",
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-1234-1234-123456789012",
            "+1234567",
            "a+4915112345678",
            "+4915112345678a",
            "x415-555-0132",
            "415-555-0132x",
            "415-555-01325",
            "2415-555-0132",
            "9.415.555.0132",
            "415-555-0132-7",
        ] {
            assert!(found(p, v).is_empty(), "{v}: {:?}", found(p, v));
        }
    }

    #[test]
    fn ibans() {
        let i = only(Detector::Iban);
        for v in [
            "GB82WEST12345698765432",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "DE89 3704 0044 0532 0130 00",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
        ] {
            assert_eq!(found(i, v), [v], "{v}");
        }
        assert_eq!(
            found(i, "IBAN: GB82 WEST 1234 5698 7654 32, BIC WESTGB22"),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(
            found(i, "pay DE89370400440532013000 EUR"),
            ["DE89370400440532013000"]
        );
    }

    #[test]
    fn not_ibans() {
        let i = only(Detector::Iban);
        for v in [
            "GB83WEST12345698765432", // wrong check digits
            "GB82WEST12345698765433",
            "gb82west12345698765432",  // lower case
            "XGB82WEST12345698765432", // glued to a word
            "GB82WEST12345698765432x",
            "GB82WEST 1234 5698 7654 32",   // groups not of four
            "GB82  WEST 1234 5698 7654 32", // double space
            "AB12CDEF",                     // too short
        ] {
            assert!(found(i, v).is_empty(), "{v}");
        }
    }

    #[test]
    fn overlapping_detectors_merge() {
        let v = "4111111111111111@example.com";
        let spans = all().find(v.as_bytes());
        assert_eq!(spans, vec![(0..v.len(), Detector::Email)]);
        assert_eq!(redacted(all(), v).as_deref(), Some("[masked]"));
    }

    #[test]
    fn mixed_value() {
        let v = "alice@example.com paid 4111-1111-1111-1111 from GB82WEST12345698765432, \
                 call +1 (415) 555-0132";
        let spans = all().find(v.as_bytes());
        let kinds: Vec<Detector> = spans.iter().map(|s| s.1).collect();
        assert_eq!(
            kinds,
            [
                Detector::Email,
                Detector::CreditCard,
                Detector::Iban,
                Detector::Phone
            ]
        );
        assert_eq!(
            redacted(all(), v).as_deref(),
            Some("[masked] paid [masked] from [masked], call [masked]")
        );
    }

    #[test]
    fn non_utf8_bytes() {
        let v = b"\xe9\xff4111111111111111\xff";
        assert_eq!(all().find(v), vec![(2..18, Detector::CreditCard)]);
        assert_eq!(all().redact(v), Some(b"\xe9\xff[masked]\xff".to_vec()));
        let v = b"\xe9alice@example.com\xe9";
        assert_eq!(all().find(v), vec![(1..18, Detector::Email)]);
        // High bytes are never part of a match.
        assert!(all().find(b"alice@exa\xe9mple.com").is_empty());
        assert!(all().find(b"4111\xa01111 1111 1111").is_empty());
        assert!(all().find(&[0xff; 100]).is_empty());
    }

    #[test]
    fn short_and_empty_values() {
        for v in [&b""[..], b"42", b"@", b"+1", b"Alice Example"] {
            assert!(all().find(v).is_empty());
            assert_eq!(all().redact(v), None);
        }
    }

    #[test]
    fn megabyte_values() {
        let digits = vec![b'7'; 1 << 20];
        assert!(all().find(&digits).is_empty());
        let spaced: Vec<u8> = b"4 ".iter().copied().cycle().take(1 << 20).collect();
        let _ = all().find(&spaced);
        let dashed: Vec<u8> = b"415-".iter().copied().cycle().take(1 << 20).collect();
        let _ = all().find(&dashed);
        let ats = vec![b'@'; 1 << 20];
        assert!(all().find(&ats).is_empty());
        let mixed: Vec<u8> = b"a@b.cc GB82 1234 +1 (2) "
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        let _ = all().find(&mixed);
    }

    type Scanner = fn(&[u8], usize, usize, &mut Vec<(Range<usize>, Detector)>) -> usize;

    /// What a scanner finds over the whole value, without the prefilters.
    fn ungated(v: &[u8], scan: Scanner) -> Vec<(Range<usize>, Detector)> {
        let mut out = Vec::new();
        scan(v, 0, v.len(), &mut out);
        out
    }

    #[test]
    fn matches_at_every_block_offset() {
        let pieces: &[(&[u8], Detector)] = &[
            (b"4111 1111 1111 1111", Detector::CreditCard),
            (b"+1 (415) 555-0132", Detector::Phone),
            (b"1 (415) 555-0132", Detector::Phone),
            (b"GB82 WEST 1234 5698 7654 32", Detector::Iban),
            (b"alice@example.com", Detector::Email),
        ];
        for &(piece, det) in pieces {
            for pad in 0..100 {
                let mut v = b"x ".repeat(pad);
                v.truncate(pad);
                v.push(b' ');
                let start = v.len();
                v.extend_from_slice(piece);
                v.extend_from_slice(b" and some more text after it, 12 34");
                assert_eq!(
                    all().find(&v),
                    vec![(start..start + piece.len(), det)],
                    "{}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
    }

    /// A tiny xorshift PRNG: the property test needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_values_keep_the_invariants() {
        const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789 -.+()@@aZGB_%\xe9\xff\n";
        const PIECES: &[&[u8]] = &[
            b"4111111111111111",
            b"4111 1111 1111 1111",
            b"alice@example.com",
            b"+1 (415) 555-0132",
            b"415-555-0132",
            b"GB82 WEST 1234 5698 7654 32",
            b"DE89370400440532013000",
        ];
        let d = all();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..5000 {
            // Mostly short values, some spanning several density blocks.
            let len = if round % 4 == 0 {
                rng.below(400)
            } else {
                rng.below(120)
            };
            let mut v = Vec::with_capacity(len + 32);
            while v.len() < len {
                if rng.below(16) == 0 {
                    v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
                } else if rng.below(4) == 0 {
                    v.push(rng.next() as u8);
                } else {
                    v.push(ALPHABET[rng.below(ALPHABET.len())]);
                }
            }
            let spans = d.find(&v);
            let mut prev_end = 0;
            for (r, _) in &spans {
                assert!(r.start < r.end && r.end <= v.len(), "{v:?} {spans:?}");
                assert!(r.start >= prev_end, "{v:?} {spans:?}");
                assert!(v[r.clone()].iter().all(|b| b.is_ascii()), "{v:?}");
                prev_end = r.end;
            }
            let red = d.redact(&v);
            assert_eq!(red.is_none(), spans.is_empty(), "{v:?}");
            if let Some(red) = red {
                let mut expect = Vec::new();
                let mut pos = 0;
                for (r, _) in &spans {
                    expect.extend_from_slice(&v[pos..r.start]);
                    expect.extend_from_slice(MASK);
                    pos = r.end;
                }
                expect.extend_from_slice(&v[pos..]);
                assert_eq!(red, expect);
            }
            for &one in Detector::ALL {
                for (r, det) in only(one).find(&v) {
                    assert_eq!(det, one);
                    assert!(r.end <= v.len());
                }
            }
            // The density prefilter never hides a match.
            assert_eq!(
                only(Detector::CreditCard).find(&v),
                ungated(&v, scan_cards),
                "{v:?}"
            );
            assert_eq!(
                only(Detector::Phone).find(&v),
                ungated(&v, scan_phones),
                "{v:?}"
            );
            assert_eq!(
                only(Detector::Iban).find(&v),
                ungated(&v, scan_ibans),
                "{v:?}"
            );
        }
    }

    #[test]
    fn column_patterns() {
        let p = |s: &str| ColumnPattern::new(s).expect(s);
        assert!(p("*_ssn").matches("user_ssn"));
        assert!(p("*_ssn").matches("_SSN"));
        assert!(p("*_ssn").matches("USER_SSN"));
        assert!(!p("*_ssn").matches("ssn"));
        assert!(!p("*_ssn").matches("user_ssn_hash"));
        assert!(p("e?ail").matches("email"));
        assert!(p("e?ail").matches("EMAIL"));
        assert!(!p("e?ail").matches("eail"));
        assert!(!p("e?ail").matches("emmail"));
        assert!(p("email").matches("Email"));
        assert!(!p("email").matches("emails"));
        assert!(p("card_number").matches("CARD_NUMBER"));
        assert!(p("*card*").matches("credit_card_no"));
        assert!(p("a*b*c").matches("abc"));
        assert!(p("a*b*c").matches("axxbyyc"));
        assert!(!p("a*b*c").matches("axxbyy"));
        assert!(p("**x").matches("x"));
        // `?` is one character, not one byte.
        assert!(p("t?l").matches("tél"));
        assert!(p("?").matches("é"));
        assert!(!p("??").matches("é"));
        assert!(p("n?m*").matches("nämé"));
        assert!(p("*é").matches("café"));
        assert!(p("Ö*").matches("Östlich"));
        // Only ASCII folds.
        assert!(!p("é").matches("É"));
        assert_eq!(p("*_SSN").as_str(), "*_SSN");
    }

    #[test]
    fn column_pattern_backtracking_is_bounded() {
        let pat = ColumnPattern::new(&format!("{}c", "a*".repeat(30))).expect("pattern");
        let name = format!("{}b", "a".repeat(60));
        assert!(!pat.matches(&name));
    }

    #[test]
    fn bad_column_patterns() {
        assert!(ColumnPattern::new("").is_err());
        let all = ColumnPattern::new("**").expect_err("only stars");
        assert!(all.contains("would mask every column"), "{all}");
        assert!(ColumnPattern::new("a\tb").is_err());
        assert!(ColumnPattern::new("a\u{7f}").is_err());
    }

    #[test]
    fn like_patterns() {
        let like = |s: &str| ColumnPattern::new(s).expect(s).to_like();
        assert_eq!(like("*_ssn"), r"%\_ssn");
        assert_eq!(like("e?ail"), "e_ail");
        assert_eq!(like("100%"), r"100\%");
        assert_eq!(like(r"a\b"), r"a\\b");
        assert_eq!(like("Ö*"), "Ö%");
    }

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndigits.to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn binary_integers() {
        let t = binary_number_text;
        assert_eq!(t(21, &(-5i16).to_be_bytes()).as_deref(), Some("-5"));
        assert_eq!(t(21, &i16::MIN.to_be_bytes()).as_deref(), Some("-32768"));
        assert_eq!(
            t(23, &(-123456i32).to_be_bytes()).as_deref(),
            Some("-123456")
        );
        assert_eq!(
            t(20, &4111111111111111i64.to_be_bytes()).as_deref(),
            Some("4111111111111111")
        );
        assert_eq!(
            t(20, &i64::MIN.to_be_bytes()).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(t(23, &[0, 0, 1]), None);
        assert_eq!(t(20, &[0; 4]), None);
        assert_eq!(t(25, b"4111111111111111"), None);
    }

    #[test]
    fn binary_numerics() {
        let t = |b: &[u8]| binary_number_text(1700, b);
        assert_eq!(t(&numeric(0, 0, 0, 0, &[])).as_deref(), Some("0"));
        assert_eq!(
            t(&numeric(4, 3, 0, 0, &[4111, 1111, 1111, 1111])).as_deref(),
            Some("4111111111111111")
        );
        assert_eq!(
            t(&numeric(2, 0, 0x4000, 2, &[12, 5000])).as_deref(),
            Some("-12.50")
        );
        assert_eq!(t(&numeric(1, -1, 0, 4, &[1])).as_deref(), Some("0.0001"));
        assert_eq!(
            t(&numeric(1, -2, 0, 8, &[5])).as_deref(),
            Some("0.00000005")
        );
        assert_eq!(t(&numeric(1, 2, 0, 0, &[7])).as_deref(), Some("700000000"));
        assert_eq!(t(&numeric(2, 0, 0, 0, &[3, 1415])).as_deref(), Some("3"));
        assert_eq!(t(&numeric(1, 0, 0, 3, &[42])).as_deref(), Some("42.000"));
        // NaN, infinities, bad sign, bad digits, bad lengths.
        assert_eq!(t(&numeric(0, 0, 0xC000, 0, &[])), None);
        assert_eq!(t(&numeric(0, 0, 0xD000, 0, &[])), None);
        assert_eq!(t(&numeric(0, 0, 0xF000, 0, &[])), None);
        assert_eq!(t(&numeric(0, 0, 0x1234, 0, &[])), None);
        assert_eq!(t(&numeric(1, 0, 0, 0, &[10000])), None);
        assert_eq!(t(&numeric(-1, 0, 0, 0, &[])), None);
        let full = numeric(4, 3, 0, 0, &[4111, 1111, 1111, 1111]);
        assert_eq!(t(&full[..full.len() - 1]), None);
        assert_eq!(t(&full[..5]), None);
        assert_eq!(t(&[]), None);
        // Absurd sizes are refused rather than rendered.
        assert_eq!(t(&numeric(1, i16::MAX, 0, 0, &[1])), None);
        assert_eq!(t(&numeric(0, 0, 0, 0x3FFF, &[])), None);
        assert_eq!(t(&numeric(0, 0, 0, 0x4000, &[])), None);
        // A rendered binary card number is detected like text.
        let text = t(&full).expect("numeric");
        assert!(!all().find(text.as_bytes()).is_empty());
    }
}
