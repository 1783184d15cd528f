//! The cancel-key map: the BackendKeyData a client is given, mapped to the
//! upstream connection's own key.
//!
//! A client is given the upstream's real process id, so what it finds in
//! `pg_stat_activity`, `pg_backend_pid()` and the sender of a NOTIFY is its
//! own backend; the secret is the gateway's, so a client never holds a key
//! that cancels upstream directly. A CancelRequest that arrives at the
//! gateway is checked against the secret the gateway issued (in constant
//! time) and forwarded, on a new upstream connection, with the upstream's
//! key. Entries live exactly as long as their session.
//!
//! Process ids are not unique across upstreams (two databases can each have
//! a backend 4242), so entries are found by the pair (pid, secret). The
//! secret's top byte names the gateway that issued it ([`issuer`]), so that
//! in a fleet a CancelRequest that reached another gateway can be sent on
//! to the right one; the other 24 bits are random.

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

/// The gateway that issued a client's key, from the secret's top byte.
pub fn issuer(key: BackendKeyData) -> u8 {
    (key.secret_key as u32 >> 24) as u8
}

/// By upstream pid: the live sessions with that pid, each with the secret
/// its client was given.
type Entries = HashMap<i32, Vec<(i32, UpstreamCancel)>>;

#[derive(Clone, Default)]
pub struct CancelMap {
    /// This gateway's id in its fleet (0 for a single gateway).
    gateway: u8,
    inner: Arc<Mutex<Entries>>,
}

impl CancelMap {
    /// A map whose secrets say they were issued by gateway `gateway`.
    pub fn new(gateway: u8) -> CancelMap {
        CancelMap {
            gateway,
            inner: Arc::default(),
        }
    }

    /// Issues the client's key for a session: the upstream's pid and a fresh
    /// secret, unique among the sessions with that pid. The returned guard
    /// removes the entry when the session ends.
    pub fn register(&self, upstream: UpstreamCancel) -> (BackendKeyData, CancelGuard) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let process_id = upstream.key.process_id;
        let same_pid = map.entry(process_id).or_default();
        let secret_key = loop {
            let random = rand::random::<u32>() & 0x00ff_ffff;
            let candidate = ((u32::from(self.gateway) << 24) | random) as i32;
            if !same_pid.iter().any(|(s, _)| *s == candidate) {
                break candidate;
            }
        };
        same_pid.push((secret_key, upstream));
        (
            BackendKeyData {
                process_id,
                secret_key,
            },
            CancelGuard {
                map: self.clone(),
                process_id,
                secret_key,
            },
        )
    }

    /// Finds the upstream for a client's key; `None` for unknown pids and
    /// wrong secrets alike (the caller must not tell them apart to the
    /// sender). Every secret issued for the pid is compared in full.
    pub fn lookup(&self, key: BackendKeyData) -> Option<UpstreamCancel> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (secret, upstream) in map.get(&key.process_id)? {
            if subtle_eq(&secret.to_be_bytes(), &key.secret_key.to_be_bytes()) {
                found = Some(upstream.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
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
    secret_key: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let mut map = self.map.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same_pid) = map.get_mut(&self.process_id) {
            same_pid.retain(|(s, _)| *s != self.secret_key);
            if same_pid.is_empty() {
                map.remove(&self.process_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(resource: &str, pid: i32) -> UpstreamCancel {
        UpstreamCancel {
            resource: resource.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            key: BackendKeyData {
                process_id: pid,
                secret_key: 99,
            },
        }
    }

    #[test]
    fn register_lookup_and_drop() {
        let map = CancelMap::default();
        let (key, guard) = map.register(upstream("orders", 4242));
        // The client sees the upstream's real pid, never its secret.
        assert_eq!(key.process_id, 4242);
        assert_ne!(key.secret_key, 99);
        assert_eq!(map.lookup(key).unwrap().key.secret_key, 99);
        let wrong = BackendKeyData {
            secret_key: key.secret_key.wrapping_add(1),
            ..key
        };
        assert!(map.lookup(wrong).is_none());
        drop(guard);
        assert!(map.lookup(key).is_none());
        assert!(map.is_empty());
    }

    #[test]
    fn the_same_pid_on_two_upstreams_stays_two_sessions() {
        let map = CancelMap::default();
        let (a, guard_a) = map.register(upstream("orders", 7));
        let (b, _guard_b) = map.register(upstream("billing", 7));
        assert_eq!((a.process_id, b.process_id), (7, 7));
        assert_ne!(a.secret_key, b.secret_key);
        assert_eq!(map.lookup(a).unwrap().resource, "orders");
        assert_eq!(map.lookup(b).unwrap().resource, "billing");
        drop(guard_a);
        assert!(map.lookup(a).is_none());
        assert_eq!(map.lookup(b).unwrap().resource, "billing");
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn secrets_name_the_gateway_that_issued_them() {
        for gateway in [0u8, 1, 0x7f, 0x80, 0xff] {
            let map = CancelMap::new(gateway);
            let guards: Vec<_> = (0..50)
                .map(|_| map.register(upstream("orders", 1)))
                .collect();
            for (key, _) in &guards {
                assert_eq!(issuer(*key), gateway);
            }
        }
    }
}
