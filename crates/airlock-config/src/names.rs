//! Identifier newtypes: `UserName`, `ResourceName` and `RoleName`.
//!
//! Each one is a `String` that has been checked once, at construction, so code that holds one never
//! has to wonder whether it is well formed. The rules keep names at most 63 bytes because they travel
//! in Postgres startup messages as `user` and `database`, and Postgres truncates identifiers longer
//! than `NAMEDATALEN - 1` = 63 bytes: a longer name would silently address something else.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that does not follow the rule for its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {rule}")]
pub struct NameError {
    /// `"user"`, `"resource"` or `"role"`.
    pub kind: &'static str,
    /// The rejected text.
    pub name: String,
    /// The rule, in words, that the name breaks.
    pub rule: &'static str,
}

/// Longest name in bytes; see the module documentation for why.
const MAX_LEN: usize = 63;

/// `^[a-z][a-z0-9_-]{0,62}$`: resource and role names.
fn is_slug(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= MAX_LEN
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// `^[a-z_][a-z0-9_.@-]{0,62}$`: user names, which are often e-mail-like (`jane.doe@example`).
fn is_user(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && s.len() <= MAX_LEN
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'@' | b'-'))
}

const SLUG_RULE: &str =
    "use a lowercase letter first, then up to 62 of a-z, 0-9, '_' or '-' (^[a-z][a-z0-9_-]{0,62}$)";
const USER_RULE: &str = "use a lowercase letter or '_' first, then up to 62 of a-z, 0-9, '_', '.', '@' or '-' (^[a-z_][a-z0-9_.@-]{0,62}$)";

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:path, $rule:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Checks `name` against the rule for this kind of name.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                if $check(&name) {
                    Ok(Self(name))
                } else {
                    Err(NameError { kind: $kind, name, rule: $rule })
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// An Airlock user: the `user` a client sends in its Postgres startup message.
    UserName, "user", is_user, USER_RULE
);
name_type!(
    /// A resource (one upstream database): the `database` a client sends in its startup message.
    ResourceName, "resource", is_slug, SLUG_RULE
);
name_type!(
    /// A role: a named set of standing entitlements that users are given.
    RoleName, "role", is_slug, SLUG_RULE
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        let long63 = format!("a{}", "b".repeat(62));
        let long64 = format!("a{}", "b".repeat(63));
        // (text, valid as resource/role, valid as user)
        let cases: &[(&str, bool, bool)] = &[
            ("orders", true, true),
            ("orders_ro-2", true, true),
            ("a", true, true),
            (&long63, true, true),
            (&long64, false, false),
            ("", false, false),
            ("Orders", false, false),
            ("1orders", false, false),
            ("_svc", false, true),
            ("jane.doe@example", false, true),
            ("-x", false, false),
            ("has space", false, false),
            ("ümlaut", false, false),
        ];
        for &(text, slug, user) in cases {
            assert_eq!(ResourceName::new(text).is_ok(), slug, "resource {text:?}");
            assert_eq!(RoleName::new(text).is_ok(), slug, "role {text:?}");
            assert_eq!(UserName::new(text).is_ok(), user, "user {text:?}");
        }
    }

    #[test]
    fn error_names_the_kind_and_rule() {
        let err = ResourceName::new("Bad").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid resource name \"Bad\": "),
            "{text}"
        );
        assert!(text.contains("^[a-z][a-z0-9_-]{0,62}$"), "{text}");
    }

    #[test]
    fn serde_is_a_plain_string_and_validates() {
        #[derive(Deserialize, Serialize)]
        struct W {
            n: UserName,
        }
        let w: W = toml::from_str("n = \"oncall1\"").unwrap();
        assert_eq!(w.n, "oncall1");
        assert_eq!(toml::to_string(&w).unwrap().trim(), "n = \"oncall1\"");
        assert!(toml::from_str::<W>("n = \"Nope\"").is_err());
    }

    #[test]
    fn borrow_allows_str_lookups() {
        let mut set = std::collections::BTreeSet::new();
        set.insert(RoleName::new("oncall").unwrap());
        assert!(set.contains("oncall"));
    }
}
