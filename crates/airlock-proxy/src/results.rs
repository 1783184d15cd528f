//! What happens to results on their way back: masking of sensitive values
//! and the `max_rows` guardrail.
//!
//! **Knowing the columns.** A DataRow carries values, not names; the
//! columns come from the RowDescription before it. In a simple Query every
//! result has one. In the extended protocol a client may Execute a portal
//! whose description it fetched long ago (or never), so while masking is on
//! the gate sends its own Describe of the portal just before each Execute,
//! and this side swallows that Describe's answer after taking the layout
//! from it. To tell the answers apart the two directions share the queue of
//! [`Expect`]ations: PostgreSQL answers messages in order, and after an error
//! in the extended protocol skips everything up to Sync, so the queue says
//! which message every RowDescription and NoData answers.
//!
//! **Masking a value.** A column whose name matches a pattern (or whose
//! table column does, through an alias: [`MaskContext::catalog`]) is masked
//! whole: text-like types become [`MASK`], every other type NULL (a
//! placeholder would not be a valid value of the type; NULL is, in text and
//! binary alike). Other values go through the detectors: in a text-like
//! value each sensitive span is replaced by [`MASK`]; any other type with a
//! finding becomes NULL. Binary values are inspected where their bytes are
//! text (text, varchar, bpchar, name, json, jsonb, xml) or a number
//! (int2/4/8, numeric); other binary values are passed as they are. A row
//! that does not match its description is masked whole (fail closed).
//! Error and notice texts go through the detectors too: PostgreSQL quotes
//! values in them ("invalid input syntax for type integer: ...").
//!
//! **Cutting at `max_rows`.** Rows are counted per result (one query's,
//! one FETCH's, one Execute's). Past the limit no more rows reach the
//! client; the gateway cancels the statement upstream when it is the only
//! one outstanding, swallows what is still coming, and answers the result's
//! end (CommandComplete, or the cancel's error) with SQLSTATE 54000. When
//! the statement finished before the cancel arrived its effects stand, and
//! the error says so. A cancel sent while more statements are pipelined
//! could hit a later one, so then the gateway only swallows the rest.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use airlock_config::MaskRules;
use airlock_pgwire::messages::tag::backend as btag;
use airlock_pgwire::messages::{
    data_row_values, encode_data_row, BackendMessage, ErrorResponse, RowDescription,
};
use airlock_pgwire::{sqlstate, Frame, ProtocolError};
use airlock_sql::mask::{binary_number_text, MASK};

use crate::error::UserFacingError;

/// What the upstream will answer, for the messages whose answers matter
/// here, in the order they were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A simple Query: RowDescriptions until its ReadyForQuery.
    Query,
    /// The client's Describe: its RowDescription or NoData goes to the client.
    Describe,
    /// The gate's own Describe before an Execute: its answer is swallowed.
    OurDescribe,
    /// A Sync: its ReadyForQuery.
    Sync,
}

const MAX_EXPECTED: usize = 1 << 16;

/// The queue both directions share.
#[derive(Default)]
pub struct Expectations {
    queue: Mutex<VecDeque<Expect>>,
}

impl Expectations {
    pub fn push(&self, e: Expect) {
        let mut q = self.lock();
        // A conforming server answers everything; a bound keeps a confused
        // one from growing the queue forever (layouts never depend on it).
        if q.len() >= MAX_EXPECTED {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// Queues several, in order, under one lock.
    pub fn push_all(&self, es: impl IntoIterator<Item = Expect>) {
        let mut q = self.lock();
        for e in es {
            if q.len() >= MAX_EXPECTED {
                q.pop_front();
            }
            q.push_back(e);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Expect>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The masking of one session.
pub struct MaskContext {
    pub rules: MaskRules,
    /// Table columns (table OID, attribute number) whose names match a
    /// pattern, read from the catalog at session start: a column selected
    /// under an alias is still recognised.
    pub catalog: HashSet<(u32, i16)>,
    /// The names (lower case) of the relations those columns belong to.
    pub relations: Arc<HashSet<String>>,
}

/// What the catalog says about the masked columns, read at session start.
#[derive(Debug, Default)]
pub struct MaskCatalog {
    /// (table OID, attribute number) of every column whose name matches.
    pub columns: HashSet<(u32, i16)>,
    /// The names (lower case) of the relations those columns belong to.
    pub relations: HashSet<String>,
}

/// What to do with one column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    /// Masked whole: `text` says whether MASK is a valid value of its type.
    Whole {
        text: bool,
    },
    /// Run the detectors over it.
    Detect(Inspect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inspect {
    /// The bytes are text; `replace_spans` when its type is text-like.
    Text { replace_spans: bool },
    /// Binary jsonb: a version byte, then text.
    Jsonb,
    /// A binary number: decoded to digits, NULL on a finding.
    Number(u32),
}

/// Types whose text form, and binary form, is the text itself.
fn text_like(oid: u32) -> bool {
    matches!(oid, 25 | 1043 | 1042 | 19 | 114 | 142 | 705)
}

const JSONB: u32 = 3802;

/// One reply to one upstream message.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Forward,
    /// Whole messages (tags and lengths included) to send instead.
    Replace(Bytes),
    Drop,
}

/// The upstream→client side: see the module docs.
pub struct ResultFilter {
    expect: Arc<Expectations>,
    resource: String,
    max_rows: Option<u64>,
    mask: Option<MaskContext>,
    cancel: Option<Arc<dyn Fn() + Send + Sync>>,
    layout: Option<Vec<Action>>,
    rows: u64,
    /// Past `max_rows`: the rest of this result is swallowed.
    cut: bool,
}

impl ResultFilter {
    pub fn new(
        expect: Arc<Expectations>,
        resource: String,
        max_rows: Option<u64>,
        mask: Option<MaskContext>,
        cancel: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> ResultFilter {
        ResultFilter {
            expect,
            resource,
            max_rows,
            mask,
            cancel,
            layout: None,
            rows: 0,
            cut: false,
        }
    }

    /// The message types this filter must see whole, as a bit set.
    pub fn tags(&self) -> u128 {
        let mut tags = [
            btag::ROW_DESCRIPTION,
            btag::NO_DATA,
            btag::DATA_ROW,
            btag::COMMAND_COMPLETE,
            btag::PORTAL_SUSPENDED,
            btag::EMPTY_QUERY_RESPONSE,
            btag::ERROR_RESPONSE,
            btag::READY_FOR_QUERY,
            btag::COPY_DATA,
            btag::COPY_DONE,
        ]
        .iter()
        .fold(0u128, |acc, t| acc | 1 << t);
        if self.detects() {
            tags |= 1 << btag::NOTICE_RESPONSE;
        }
        tags
    }

    fn detects(&self) -> bool {
        self.mask
            .as_ref()
            .is_some_and(|m| !m.rules.detectors.is_empty())
    }

    /// Decides about one whole upstream message (its body).
    pub fn on_message(&mut self, tag: u8, body: &[u8]) -> Result<Out, ProtocolError> {
        match tag {
            btag::ROW_DESCRIPTION | btag::NO_DATA => {
                let answers = {
                    let mut q = self.expect.lock();
                    match q.front() {
                        Some(Expect::Describe) | Some(Expect::OurDescribe) => q.pop_front(),
                        Some(Expect::Query) => Some(Expect::Query),
                        // Not expected: treat as the client's.
                        _ => None,
                    }
                };
                self.layout = Some(if tag == btag::NO_DATA {
                    Vec::new()
                } else {
                    self.layout_of(body)?
                });
                self.rows = 0;
                Ok(if answers == Some(Expect::OurDescribe) {
                    Out::Drop
                } else {
                    Out::Forward
                })
            }
            btag::DATA_ROW | btag::COPY_DATA => {
                if self.cut {
                    return Ok(Out::Drop);
                }
                self.rows += 1;
                if self.max_rows.is_some_and(|max| self.rows > max) {
                    self.start_cut();
                    return Ok(Out::Drop);
                }
                if tag == btag::DATA_ROW && self.mask.is_some() {
                    return self.mask_row(body);
                }
                Ok(Out::Forward)
            }
            btag::COPY_DONE if self.cut => Ok(Out::Drop),
            btag::COMMAND_COMPLETE | btag::PORTAL_SUSPENDED | btag::EMPTY_QUERY_RESPONSE => {
                self.rows = 0;
                Ok(if std::mem::take(&mut self.cut) {
                    Out::Replace(self.cut_error(None))
                } else {
                    Out::Forward
                })
            }
            btag::ERROR_RESPONSE => {
                self.rows = 0;
                {
                    let mut q = self.expect.lock();
                    // An error in the extended protocol skips to Sync; one in
                    // a simple Query ends only that query's current statement.
                    if q.front() != Some(&Expect::Query) {
                        while q.front().is_some_and(|e| *e != Expect::Sync) {
                            q.pop_front();
                        }
                    }
                }
                if std::mem::take(&mut self.cut) {
                    let why = ErrorResponse::decode(Bytes::copy_from_slice(body))
                        .map(|e| e.to_string())
                        .unwrap_or_else(|_| "an error".into());
                    return Ok(Out::Replace(self.cut_error(Some(&why))));
                }
                Ok(self.redact_notice(tag, body))
            }
            btag::NOTICE_RESPONSE => Ok(self.redact_notice(tag, body)),
            btag::READY_FOR_QUERY => {
                {
                    let mut q = self.expect.lock();
                    while let Some(e) = q.pop_front() {
                        if matches!(e, Expect::Sync | Expect::Query) {
                            break;
                        }
                    }
                }
                self.rows = 0;
                self.layout = None;
                if std::mem::take(&mut self.cut) {
                    // The result ended without a terminator we could replace
                    // (cannot happen with a conforming server): say so first.
                    let mut out = BytesMut::from(
                        &self.cut_error(Some("the result ended without a completion message"))[..],
                    );
                    Frame::new(btag::READY_FOR_QUERY, Bytes::copy_from_slice(body))
                        .encode(&mut out);
                    return Ok(Out::Replace(out.freeze()));
                }
                Ok(Out::Forward)
            }
            _ => Ok(Out::Forward),
        }
    }

    fn layout_of(&self, body: &[u8]) -> Result<Vec<Action>, ProtocolError> {
        let Some(mask) = &self.mask else {
            // Only counting rows: the columns do not matter.
            return Ok(Vec::new());
        };
        let rd = RowDescription::decode(Bytes::copy_from_slice(body))?;
        Ok(rd
            .fields
            .iter()
            .map(|f| {
                let name = String::from_utf8_lossy(&f.name);
                let by_name = mask.rules.columns.iter().any(|p| p.matches(&name));
                let by_origin = f.table_oid != 0 && mask.catalog.contains(&(f.table_oid, f.column));
                if by_name || by_origin {
                    return Action::Whole {
                        text: text_like(f.type_oid) || f.type_oid == JSONB,
                    };
                }
                if mask.rules.detectors.is_empty() {
                    return Action::Keep;
                }
                match (f.format, f.type_oid) {
                    (0, oid) => Action::Detect(Inspect::Text {
                        replace_spans: text_like(oid) || oid == JSONB,
                    }),
                    (_, oid) if text_like(oid) => Action::Detect(Inspect::Text {
                        replace_spans: true,
                    }),
                    (_, JSONB) => Action::Detect(Inspect::Jsonb),
                    (_, oid @ (20 | 21 | 23 | 1700)) => Action::Detect(Inspect::Number(oid)),
                    _ => Action::Keep,
                }
            })
            .collect())
    }

    fn mask_row(&mut self, body: &[u8]) -> Result<Out, ProtocolError> {
        let Some(mask) = &self.mask else {
            return Ok(Out::Forward);
        };
        let (n, values) = data_row_values(body)?;
        let layout = match &self.layout {
            Some(l) if l.len() == n => l,
            _ => {
                // A row without (or unlike) its description: mask it whole.
                let mut out = BytesMut::new();
                encode_data_row(&mut out, (0..n).map(|_| None));
                return Ok(Out::Replace(out.freeze()));
            }
        };
        if layout.iter().all(|a| *a == Action::Keep) {
            return Ok(Out::Forward);
        }
        let detectors = mask.rules.detectors;
        let mut changed = false;
        let mut new: Vec<Option<Cow<'_, [u8]>>> = Vec::with_capacity(n);
        let mut values = values;
        for (value, action) in values.by_ref().zip(layout) {
            let value = value?;
            let v = match (value, action) {
                (None, _) | (Some(_), Action::Keep) => value.map(Cow::Borrowed),
                (Some(_), Action::Whole { text }) => {
                    changed = true;
                    text.then_some(Cow::Borrowed(MASK))
                }
                (Some(v), Action::Detect(how)) => match how {
                    Inspect::Text { replace_spans } => match detectors.redact(v) {
                        None => Some(Cow::Borrowed(v)),
                        Some(r) => {
                            changed = true;
                            replace_spans.then_some(Cow::Owned(r))
                        }
                    },
                    Inspect::Jsonb => match v.split_first() {
                        Some((version, text)) => match detectors.redact(text) {
                            None => Some(Cow::Borrowed(v)),
                            Some(r) => {
                                changed = true;
                                let mut out = Vec::with_capacity(r.len() + 1);
                                out.push(*version);
                                out.extend_from_slice(&r);
                                Some(Cow::Owned(out))
                            }
                        },
                        None => Some(Cow::Borrowed(v)),
                    },
                    Inspect::Number(oid) => match binary_number_text(*oid, v) {
                        Some(digits) if detectors.redact(digits.as_bytes()).is_some() => {
                            changed = true;
                            None
                        }
                        _ => Some(Cow::Borrowed(v)),
                    },
                },
            };
            new.push(v);
        }
        // Bytes after the last value: the walk reports them on its next step.
        if let Some(Err(e)) = values.next() {
            return Err(e);
        }
        if !changed {
            return Ok(Out::Forward);
        }
        let mut out = BytesMut::with_capacity(body.len() + 5);
        encode_data_row(&mut out, new.iter().map(|v| v.as_deref()));
        Ok(Out::Replace(out.freeze()))
    }

    /// An upstream error or notice with sensitive values in its texts masked.
    fn redact_notice(&self, tag: u8, body: &[u8]) -> Out {
        let Some(mask) = self.mask.as_ref().filter(|_| self.detects()) else {
            return Out::Forward;
        };
        let Ok(mut e) = ErrorResponse::decode(Bytes::copy_from_slice(body)) else {
            return Out::Forward;
        };
        let mut changed = false;
        for (code, value) in &mut e.fields {
            // Message, detail, hint, context, and the names PostgreSQL quotes.
            if matches!(code, b'M' | b'D' | b'H' | b'W' | b'q') {
                if let Some(r) = mask.rules.detectors.redact(value.as_bytes()) {
                    *value = String::from_utf8_lossy(&r).into_owned();
                    changed = true;
                }
            }
        }
        if !changed {
            return Out::Forward;
        }
        let mut out = BytesMut::new();
        Frame::new(tag, e.encode_body()).encode(&mut out);
        Out::Replace(out.freeze())
    }

    fn start_cut(&mut self) {
        let only_one_outstanding = {
            let q = self.expect.lock();
            q.iter()
                .filter(|e| matches!(e, Expect::Sync | Expect::Query))
                .count()
                == 1
        };
        let cancelled = match (&self.cancel, only_one_outstanding) {
            (Some(cancel), true) => {
                cancel();
                true
            }
            _ => false,
        };
        tracing::info!(
            resource = %self.resource,
            max_rows = self.max_rows,
            cancelled,
            "result cut at max_rows"
        );
        self.cut = true;
    }

    /// The error that ends a cut result. `stopped`: the upstream ended it
    /// with this error (our cancel's, normally) rather than completing.
    fn cut_error(&self, stopped: Option<&str>) -> Bytes {
        let max = self.max_rows.unwrap_or(0);
        let e = UserFacingError::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "result cut off by Airlock: more than {max} rows (guardrail max_rows of resource \"{}\"); the first {max} rows were sent",
                self.resource
            ),
        )
        .detail(match stopped {
            Some(why) => format!("the statement was stopped upstream ({why})"),
            None => "the statement had already completed upstream: if it changed data, the changes stand unless its transaction is rolled back".to_owned(),
        })
        .hint("narrow the query (WHERE, LIMIT) or aggregate; for a large export ask for a reviewed runbook");
        let mut out = BytesMut::new();
        BackendMessage::ErrorResponse(e.to_response()).encode(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_pgwire::messages::Field;
    use airlock_sql::mask::{ColumnPattern, Detector, Detectors};

    fn rd(cols: &[(&str, u32)]) -> Vec<u8> {
        RowDescription {
            fields: cols
                .iter()
                .map(|(name, oid)| Field {
                    name: Bytes::copy_from_slice(name.as_bytes()),
                    table_oid: 0,
                    column: 0,
                    type_oid: *oid,
                    type_size: -1,
                    type_modifier: -1,
                    format: 0,
                })
                .collect(),
        }
        .encode_body()
        .to_vec()
    }

    fn row(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_data_row(&mut out, values.iter().map(|v| v.map(str::as_bytes)));
        out[5..].to_vec()
    }

    fn values(out: &Out) -> Vec<Option<String>> {
        let Out::Replace(b) = out else {
            panic!("not replaced: {out:?}")
        };
        let (_, vs) = data_row_values(&b[5..]).unwrap();
        vs.map(|v| v.unwrap().map(|v| String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn masking(expect: &Arc<Expectations>) -> ResultFilter {
        ResultFilter::new(
            expect.clone(),
            "orders".into(),
            None,
            Some(MaskContext {
                rules: MaskRules {
                    columns: vec![ColumnPattern::new("email").unwrap()],
                    detectors: Detectors::new(&[Detector::CreditCard]),
                    strict: true,
                },
                catalog: HashSet::new(),
                relations: Arc::default(),
            }),
            None,
        )
    }

    #[test]
    fn columns_and_detected_values_are_masked_by_type() {
        let expect = Arc::new(Expectations::default());
        let mut f = masking(&expect);
        expect.push(Expect::Query);
        let t = rd(&[("id", 23), ("email", 25), ("note", 25), ("n", 20)]);
        assert_eq!(
            f.on_message(btag::ROW_DESCRIPTION, &t).unwrap(),
            Out::Forward
        );
        let out = f
            .on_message(
                btag::DATA_ROW,
                &row(&[
                    Some("1"),
                    Some("a@b.co"),
                    Some("card 4111111111111111"),
                    Some("4111111111111111"),
                ]),
            )
            .unwrap();
        assert_eq!(
            values(&out),
            vec![
                Some("1".into()),
                Some("[masked]".into()),
                Some("card [masked]".into()),
                None
            ]
        );
        // Nothing sensitive: the row passes as it is.
        let clean = row(&[Some("2"), None, Some("hello"), Some("7")]);
        assert_eq!(f.on_message(btag::DATA_ROW, &clean).unwrap(), Out::Forward);
        // A row unlike its description is masked whole.
        let out = f.on_message(btag::DATA_ROW, &row(&[Some("x")])).unwrap();
        assert_eq!(values(&out), vec![None]);
    }

    #[test]
    fn the_gates_own_describe_is_swallowed_and_errors_skip_to_sync() {
        let expect = Arc::new(Expectations::default());
        let mut f = masking(&expect);
        let t = rd(&[("email", 25)]);
        // Client Describe, then the gate's before Execute, then Sync.
        expect.push(Expect::Describe);
        expect.push(Expect::OurDescribe);
        expect.push(Expect::Sync);
        assert_eq!(
            f.on_message(btag::ROW_DESCRIPTION, &t).unwrap(),
            Out::Forward
        );
        assert_eq!(f.on_message(btag::ROW_DESCRIPTION, &t).unwrap(), Out::Drop);
        assert_eq!(
            f.on_message(btag::READY_FOR_QUERY, b"I").unwrap(),
            Out::Forward
        );
        assert!(expect.lock().is_empty());
        // An error before the gate's Describe: PostgreSQL skips it.
        expect.push(Expect::OurDescribe);
        expect.push(Expect::Sync);
        expect.push(Expect::Describe);
        expect.push(Expect::Sync);
        let err = ErrorResponse::error("34000", "portal \"p\" does not exist").encode_body();
        assert_eq!(
            f.on_message(btag::ERROR_RESPONSE, &err).unwrap(),
            Out::Forward
        );
        assert_eq!(
            f.on_message(btag::READY_FOR_QUERY, b"I").unwrap(),
            Out::Forward
        );
        // The next RowDescription answers the client's Describe.
        assert_eq!(
            f.on_message(btag::ROW_DESCRIPTION, &t).unwrap(),
            Out::Forward
        );
    }

    #[test]
    fn rows_past_max_rows_are_swallowed_and_the_end_becomes_an_error() {
        let expect = Arc::new(Expectations::default());
        let cancels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = cancels.clone();
        let mut f = ResultFilter::new(
            expect.clone(),
            "orders".into(),
            Some(2),
            None,
            Some(Arc::new(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })),
        );
        expect.push(Expect::Query);
        let r = row(&[Some("1")]);
        assert_eq!(
            f.on_message(btag::ROW_DESCRIPTION, &rd(&[("a", 23)]))
                .unwrap(),
            Out::Forward
        );
        assert_eq!(f.on_message(btag::DATA_ROW, &r).unwrap(), Out::Forward);
        assert_eq!(f.on_message(btag::DATA_ROW, &r).unwrap(), Out::Forward);
        assert_eq!(f.on_message(btag::DATA_ROW, &r).unwrap(), Out::Drop);
        assert_eq!(f.on_message(btag::DATA_ROW, &r).unwrap(), Out::Drop);
        assert_eq!(cancels.load(std::sync::atomic::Ordering::SeqCst), 1);
        let Out::Replace(e) = f.on_message(btag::COMMAND_COMPLETE, b"SELECT 4\0").unwrap() else {
            panic!("the end is replaced")
        };
        let e = ErrorResponse::decode(e.slice(5..)).unwrap();
        assert_eq!(e.code(), Some("54000"));
        assert!(e.to_string().contains("more than 2 rows"), "{e}");
        assert_eq!(
            f.on_message(btag::READY_FOR_QUERY, b"I").unwrap(),
            Out::Forward
        );
        // The next result counts from zero; with two queries outstanding
        // a cut does not cancel (it could hit the second).
        expect.push(Expect::Query);
        expect.push(Expect::Query);
        for _ in 0..3 {
            f.on_message(btag::DATA_ROW, &r).unwrap();
        }
        assert_eq!(cancels.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
