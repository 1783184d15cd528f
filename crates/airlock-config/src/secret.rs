//! Secrets read from the environment, and what goes wrong reading them.
//!
//! `airlock.toml` never holds a secret, only the name of an environment variable (`password_env`).
//! The value is read when it is needed and kept in a [`Secret`], whose `Debug` and `Display` print
//! `***`, so a secret that ends up in a log line or an error message by accident is still hidden.

use std::fmt;

use crate::model::Access;
use crate::names::ResourceName;

/// A secret string. `Debug` and `Display` print `***`; [`Secret::expose`] gives the value to the one
/// place that needs it (the upstream login).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret value. Callers must not log it or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    /// Zeroes the value so it does not linger in freed memory (`zeroize`'s volatile writes, which
    /// the compiler may not remove as dead stores).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Why a secret could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretProblem {
    /// The variable is not set.
    Unset,
    /// The variable is set to the empty string.
    Empty,
    /// The variable's value is not valid UTF-8.
    NotUnicode,
}

/// A `password_env` variable that could not be read. Holds only the variable's name, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    /// The resource whose credential names the variable, when known.
    pub resource: Option<ResourceName>,
    /// The access level of that credential, when known.
    pub access: Option<Access>,
    /// The upstream user the password is for.
    pub user: String,
    /// The environment variable.
    pub var: String,
    /// What is wrong with it.
    pub problem: SecretProblem,
}

impl fmt::Display for MissingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.resource, self.access) {
            (Some(resource), Some(access)) => write!(
                f,
                "resource \"{resource}\" ({access} credential, upstream user \"{}\"): ",
                self.user
            )?,
            (Some(resource), None) => write!(
                f,
                "resource \"{resource}\" (upstream user \"{}\"): ",
                self.user
            )?,
            _ => write!(f, "upstream user \"{}\": ", self.user)?,
        }
        let what = match self.problem {
            SecretProblem::Unset => "is not set",
            SecretProblem::Empty => "is empty",
            SecretProblem::NotUnicode => "is not valid UTF-8",
        };
        write!(
            f,
            "environment variable {} named by password_env {what}; set it to the upstream password in the gateway's environment",
            self.var
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(Secret(***))");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn missing_secret_names_the_variable_not_a_value() {
        let cases = [
            (
                MissingSecret {
                    resource: Some(ResourceName::new("orders").unwrap()),
                    access: Some(Access::Write),
                    user: "orders_rw".to_owned(),
                    var: "ORDERS_RW_PASSWORD".to_owned(),
                    problem: SecretProblem::Unset,
                },
                "resource \"orders\" (write credential, upstream user \"orders_rw\"): environment variable ORDERS_RW_PASSWORD named by password_env is not set",
            ),
            (
                MissingSecret {
                    resource: None,
                    access: None,
                    user: "u".to_owned(),
                    var: "V".to_owned(),
                    problem: SecretProblem::Empty,
                },
                "upstream user \"u\": environment variable V named by password_env is empty",
            ),
        ];
        for (missing, prefix) in cases {
            let text = missing.to_string();
            assert!(text.starts_with(prefix), "{text}");
        }
    }
}
