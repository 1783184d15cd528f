//! ErrorResponse and NoticeResponse (B) messages: identical field lists
//! (`S` severity, `C` SQLSTATE, `M` message, `D` detail, `H` hint, ...).

use bytes::{BufMut, Bytes, BytesMut};

use crate::reader::{put_cstr, Reader};
use crate::ProtocolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Warning,
    Notice,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Info => "INFO",
        }
    }
}

/// Field type bytes.
pub mod field {
    pub const SEVERITY: u8 = b'S';
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub fields: Vec<(u8, String)>,
}

impl ErrorResponse {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            fields: vec![
                (field::SEVERITY, severity.as_str().to_owned()),
                (field::SEVERITY_NONLOCALIZED, severity.as_str().to_owned()),
                (field::CODE, code.to_owned()),
                (field::MESSAGE, message.into()),
            ],
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse::new(Severity::Error, code, message)
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse::new(Severity::Fatal, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ErrorResponse {
        self.fields.push((field::DETAIL, detail.into()));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ErrorResponse {
        self.fields.push((field::HINT, hint.into()));
        self
    }

    pub fn field(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> Option<&str> {
        self.field(field::CODE)
    }

    pub fn message(&self) -> Option<&str> {
        self.field(field::MESSAGE)
    }

    pub fn decode(body: Bytes) -> Result<ErrorResponse, ProtocolError> {
        let mut r = Reader::new("ErrorResponse", body);
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            let value = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
            fields.push((code, value));
        }
        r.finish()?;
        Ok(ErrorResponse { fields })
    }

    pub fn encode_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        for (code, value) in &self.fields {
            b.put_u8(*code);
            put_cstr(&mut b, value.as_bytes());
        }
        b.put_u8(0);
        b.freeze()
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.field(field::SEVERITY).unwrap_or("ERROR"),
            self.message().unwrap_or(""),
            self.code().unwrap_or("?????")
        )
    }
}
