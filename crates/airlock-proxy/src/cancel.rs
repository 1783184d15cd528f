//! The cancel-key map: gateway-issued BackendKeyData mapped to the upstream
//! connection's own keys.
//!
//! Clients never see upstream process ids or secrets. A CancelRequest that
//! arrives at the gateway is checked against the key the gateway issued (in
//! constant time) and forwarded, on a new upstream connection, with the
//! upstream's key. Entries live exactly as long as their session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_pgwire::messages::BackendKeyData;

/// Where and how to deliver a cancel for one session.
#[derive(Debug, Clone)]
pub struct UpstreamCancel {
    pub resource: String,
    pub host: String,
    pub port: u16,
    pub key: BackendKeyData,
}

#[derive(Clone, Default)]
pub struct CancelMap {
    inner: Arc<Mutex<HashMap<i32, (i32, UpstreamCancel)>>>,
}

impl CancelMap {
    /// Issues a fresh gateway key for a session and remembers where it leads.
    /// The returned guard removes the entry when the session ends.
    pub fn register(&self, upstream: UpstreamCancel) -> (BackendKeyData, CancelGuard) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Process ids are positive in PostgreSQL; keep ours positive too so
        // tools that print them look normal.
        let process_id = loop {
            let candidate = (rand::random::<u32>() >> 1) as i32;
            if candidate != 0 && !map.contains_key(&candidate) {
                break candidate;
            }
        };
        let secret_key = rand::random::<i32>();
        map.insert(process_id, (secret_key, upstream));
        (
            BackendKeyData {
                process_id,
                secret_key,
            },
            CancelGuard {
                map: self.clone(),
                process_id,
            },
        )
    }

    /// Finds the upstream for a gateway key; `None` for unknown ids and wrong
    /// secrets alike (the caller must not tell them apart to the sender).
    pub fn lookup(&self, key: BackendKeyData) -> Option<UpstreamCancel> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (secret, upstream) = map.get(&key.process_id)?;
        let equal: bool = subtle_eq(&secret.to_be_bytes(), &key.secret_key.to_be_bytes());
        equal.then(|| upstream.clone())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct CancelGuard {
    map: CancelMap,
    process_id: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.map
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.process_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> UpstreamCancel {
        UpstreamCancel {
            resource: "orders".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            key: BackendKeyData {
                process_id: 4242,
                secret_key: 99,
            },
        }
    }

    #[test]
    fn register_lookup_and_drop() {
        let map = CancelMap::default();
        let (key, guard) = map.register(upstream());
        assert!(key.process_id > 0);
        assert_eq!(map.lookup(key).unwrap().key.process_id, 4242);
        let wrong = BackendKeyData {
            secret_key: key.secret_key.wrapping_add(1),
            ..key
        };
        assert!(map.lookup(wrong).is_none());
        drop(guard);
        assert!(map.lookup(key).is_none());
        assert!(map.is_empty());
    }
}
