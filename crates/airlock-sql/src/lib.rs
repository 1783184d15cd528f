//! Statement classification with PostgreSQL's own grammar, guardrails on
//! writes, and masking rules for result rows.
//!
//! This crate never talks to the network: the proxy hands it statement
//! texts and acts on its verdicts.

pub mod classify;
pub mod columns;
pub mod functions;
pub mod guard;
pub mod mask;
pub mod rule;
pub mod settings;

pub use classify::{classify, Prepared, Statement, Verdict};
pub use columns::{ColumnUses, MaskedUse};
pub use functions::{FunctionCall, FunctionCatalog, FunctionCheck};
pub use rule::{Class, Rule};
pub mod classifier;
pub use classifier::{Classifier, ClassifierOptions};
pub use guard::{Guardrails, Violation};
