//! ReadyForQuery (B) message: the server is idle, with its transaction status.

use bytes::Bytes;

use crate::reader::Reader;
use crate::ProtocolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (statements refused until ROLLBACK).
    Failed,
}

impl TransactionStatus {
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    pub fn decode(body: Bytes) -> Result<ReadyForQuery, ProtocolError> {
        let mut r = Reader::new("ReadyForQuery", body);
        let status = match r.u8()? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => {
                return Err(ProtocolError::Malformed {
                    what: "ReadyForQuery",
                    why: "unknown transaction status",
                })
            }
        };
        r.finish()?;
        Ok(ReadyForQuery { status })
    }

    pub fn encode_body(&self) -> Bytes {
        Bytes::copy_from_slice(&[self.status.byte()])
    }
}
