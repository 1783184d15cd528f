//! Random identifiers for records (`cred_9f2c…`, `sess_…`).

use rand::Rng;

/// Number of random bytes in an id; 80 bits make collisions irrelevant at any
/// plausible number of records, and 20 hex characters stay readable in logs.
const ID_BYTES: usize = 10;

/// Returns `prefix_` followed by 20 random lowercase hex characters, e.g.
/// `new_id("cred")` → `cred_9f2c04d1a7e35b8c6d02`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::rng().fill(&mut bytes);
    let mut id = String::with_capacity(prefix.len() + 1 + 2 * ID_BYTES);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        // Writing to a String cannot fail; push hex digits by hand to avoid a
        // dependency for twenty characters.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let id = new_id("cred");
        let rest = id.strip_prefix("cred_").expect("prefix");
        assert_eq!(rest.len(), 20);
        assert!(rest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id("sess"), new_id("sess"));
    }
}
