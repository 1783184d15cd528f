//! One type per wire message. Frontend messages (client → server) and backend
//! messages (server → client) each have an enum for dispatch; every message
//! type can also be decoded from and encoded to its body on its own.

pub mod authentication;
pub mod backend_key_data;
pub mod bind;
pub mod close;
pub mod command_complete;
pub mod copy;
pub mod describe;
pub mod error_response;
pub mod execute;
pub mod function_call;
pub mod negotiate_protocol_version;
pub mod parameter_status;
pub mod parse;
pub mod password;
pub mod query;
pub mod ready_for_query;
pub mod row_description;
pub mod startup;

use bytes::{Bytes, BytesMut};

use crate::codec::Frame;
use crate::ProtocolError;

pub use authentication::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use close::Close;
pub use command_complete::CommandComplete;
pub use copy::{CopyData, CopyFail};
pub use describe::Describe;
pub use error_response::{ErrorResponse, Severity};
pub use execute::Execute;
pub use function_call::FunctionCall;
pub use negotiate_protocol_version::NegotiateProtocolVersion;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use password::{PasswordMessage, SaslInitialResponse, SaslResponse};
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use row_description::{data_row_values, encode_data_row, DataRowValues, Field, RowDescription};
pub use startup::{CancelRequest, StartupMessage};

/// Message type bytes, by direction. Some bytes mean different things in
/// each direction (`D`, `C`, `E`, `S`), so they are kept apart.
pub mod tag {
    pub mod frontend {
        pub const BIND: u8 = b'B';
        pub const CLOSE: u8 = b'C';
        pub const COPY_DATA: u8 = b'd';
        pub const COPY_DONE: u8 = b'c';
        pub const COPY_FAIL: u8 = b'f';
        pub const DESCRIBE: u8 = b'D';
        pub const EXECUTE: u8 = b'E';
        pub const FLUSH: u8 = b'H';
        pub const FUNCTION_CALL: u8 = b'F';
        pub const PARSE: u8 = b'P';
        pub const PASSWORD: u8 = b'p';
        pub const QUERY: u8 = b'Q';
        pub const SYNC: u8 = b'S';
        pub const TERMINATE: u8 = b'X';
    }
    pub mod backend {
        pub const AUTHENTICATION: u8 = b'R';
        pub const BACKEND_KEY_DATA: u8 = b'K';
        pub const BIND_COMPLETE: u8 = b'2';
        pub const CLOSE_COMPLETE: u8 = b'3';
        pub const COMMAND_COMPLETE: u8 = b'C';
        pub const COPY_DATA: u8 = b'd';
        pub const COPY_DONE: u8 = b'c';
        pub const COPY_IN_RESPONSE: u8 = b'G';
        pub const COPY_OUT_RESPONSE: u8 = b'H';
        pub const COPY_BOTH_RESPONSE: u8 = b'W';
        pub const DATA_ROW: u8 = b'D';
        pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
        pub const ERROR_RESPONSE: u8 = b'E';
        pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
        pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
        pub const NO_DATA: u8 = b'n';
        pub const NOTICE_RESPONSE: u8 = b'N';
        pub const NOTIFICATION_RESPONSE: u8 = b'A';
        pub const PARAMETER_DESCRIPTION: u8 = b't';
        pub const PARAMETER_STATUS: u8 = b'S';
        pub const PARSE_COMPLETE: u8 = b'1';
        pub const PORTAL_SUSPENDED: u8 = b's';
        pub const READY_FOR_QUERY: u8 = b'Z';
        pub const ROW_DESCRIPTION: u8 = b'T';
    }
}

/// A message a client sends after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    Query(Query),
    Parse(Parse),
    Bind(Bind),
    Describe(Describe),
    Execute(Execute),
    Close(Close),
    Sync,
    Flush,
    Terminate,
    CopyData(CopyData),
    CopyDone,
    CopyFail(CopyFail),
    FunctionCall(FunctionCall),
}

impl FrontendMessage {
    /// Decodes a frame received from a client after authentication finished.
    pub fn decode(frame: &Frame) -> Result<FrontendMessage, ProtocolError> {
        use tag::frontend as t;
        let body = frame.body.clone();
        let empty = |what: &'static str| {
            if frame.body.is_empty() {
                Ok(())
            } else {
                Err(ProtocolError::Malformed {
                    what,
                    why: "message must have an empty body",
                })
            }
        };
        Ok(match frame.tag {
            t::QUERY => FrontendMessage::Query(Query::decode(body)?),
            t::PARSE => FrontendMessage::Parse(Parse::decode(body)?),
            t::BIND => FrontendMessage::Bind(Bind::decode(body)?),
            t::DESCRIBE => FrontendMessage::Describe(Describe::decode(body)?),
            t::EXECUTE => FrontendMessage::Execute(Execute::decode(body)?),
            t::CLOSE => FrontendMessage::Close(Close::decode(body)?),
            t::SYNC => {
                empty("Sync")?;
                FrontendMessage::Sync
            }
            t::FLUSH => {
                empty("Flush")?;
                FrontendMessage::Flush
            }
            t::TERMINATE => {
                empty("Terminate")?;
                FrontendMessage::Terminate
            }
            t::COPY_DATA => FrontendMessage::CopyData(CopyData { data: body }),
            t::COPY_DONE => {
                empty("CopyDone")?;
                FrontendMessage::CopyDone
            }
            t::COPY_FAIL => FrontendMessage::CopyFail(CopyFail::decode(body)?),
            t::FUNCTION_CALL => FrontendMessage::FunctionCall(FunctionCall::decode(body)?),
            other => {
                return Err(ProtocolError::UnexpectedTag {
                    tag: other,
                    context: "not a frontend message after authentication",
                })
            }
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        use tag::frontend as t;
        let frame = match self {
            FrontendMessage::Query(m) => Frame::new(t::QUERY, m.encode_body()),
            FrontendMessage::Parse(m) => Frame::new(t::PARSE, m.encode_body()),
            FrontendMessage::Bind(m) => Frame::new(t::BIND, m.encode_body()),
            FrontendMessage::Describe(m) => Frame::new(t::DESCRIBE, m.encode_body()),
            FrontendMessage::Execute(m) => Frame::new(t::EXECUTE, m.encode_body()),
            FrontendMessage::Close(m) => Frame::new(t::CLOSE, m.encode_body()),
            FrontendMessage::Sync => Frame::new(t::SYNC, Bytes::new()),
            FrontendMessage::Flush => Frame::new(t::FLUSH, Bytes::new()),
            FrontendMessage::Terminate => Frame::new(t::TERMINATE, Bytes::new()),
            FrontendMessage::CopyData(m) => Frame::new(t::COPY_DATA, m.data.clone()),
            FrontendMessage::CopyDone => Frame::new(t::COPY_DONE, Bytes::new()),
            FrontendMessage::CopyFail(m) => Frame::new(t::COPY_FAIL, m.encode_body()),
            FrontendMessage::FunctionCall(m) => Frame::new(t::FUNCTION_CALL, m.encode_body()),
        };
        frame.encode(dst);
    }
}

/// The backend messages the gateway interprets. Everything else an upstream
/// sends is relayed as an opaque [`Frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    Authentication(Authentication),
    BackendKeyData(BackendKeyData),
    ParameterStatus(ParameterStatus),
    ReadyForQuery(ReadyForQuery),
    ErrorResponse(ErrorResponse),
    NoticeResponse(ErrorResponse),
    CommandComplete(CommandComplete),
    NegotiateProtocolVersion(NegotiateProtocolVersion),
    /// Any other message, uninterpreted.
    Other(Frame),
}

impl BackendMessage {
    pub fn decode(frame: &Frame) -> Result<BackendMessage, ProtocolError> {
        use tag::backend as t;
        let body = frame.body.clone();
        Ok(match frame.tag {
            t::AUTHENTICATION => BackendMessage::Authentication(Authentication::decode(body)?),
            t::BACKEND_KEY_DATA => BackendMessage::BackendKeyData(BackendKeyData::decode(body)?),
            t::PARAMETER_STATUS => BackendMessage::ParameterStatus(ParameterStatus::decode(body)?),
            t::READY_FOR_QUERY => BackendMessage::ReadyForQuery(ReadyForQuery::decode(body)?),
            t::ERROR_RESPONSE => BackendMessage::ErrorResponse(ErrorResponse::decode(body)?),
            t::NOTICE_RESPONSE => BackendMessage::NoticeResponse(ErrorResponse::decode(body)?),
            t::COMMAND_COMPLETE => BackendMessage::CommandComplete(CommandComplete::decode(body)?),
            t::NEGOTIATE_PROTOCOL_VERSION => {
                BackendMessage::NegotiateProtocolVersion(NegotiateProtocolVersion::decode(body)?)
            }
            _ => BackendMessage::Other(frame.clone()),
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        use tag::backend as t;
        let frame = match self {
            BackendMessage::Authentication(m) => Frame::new(t::AUTHENTICATION, m.encode_body()),
            BackendMessage::BackendKeyData(m) => Frame::new(t::BACKEND_KEY_DATA, m.encode_body()),
            BackendMessage::ParameterStatus(m) => Frame::new(t::PARAMETER_STATUS, m.encode_body()),
            BackendMessage::ReadyForQuery(m) => Frame::new(t::READY_FOR_QUERY, m.encode_body()),
            BackendMessage::ErrorResponse(m) => Frame::new(t::ERROR_RESPONSE, m.encode_body()),
            BackendMessage::NoticeResponse(m) => Frame::new(t::NOTICE_RESPONSE, m.encode_body()),
            BackendMessage::CommandComplete(m) => Frame::new(t::COMMAND_COMPLETE, m.encode_body()),
            BackendMessage::NegotiateProtocolVersion(m) => {
                Frame::new(t::NEGOTIATE_PROTOCOL_VERSION, m.encode_body())
            }
            BackendMessage::Other(f) => f.clone(),
        };
        frame.encode(dst);
    }
}

#[cfg(test)]
mod tests;
