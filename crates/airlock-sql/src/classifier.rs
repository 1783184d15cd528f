//! The gateway's classifier: a size limit, a cache keyed by a statement's
//! shape, and parser threads with large stacks.
//!
//! **Shape cache.** Most traffic repeats the same statements with other
//! constants (`WHERE aid = 17`, `WHERE aid = 42`). PostgreSQL's scanner
//! (not its grammar) turns a text into tokens cheaply; the key is the token
//! stream with comments dropped and each constant replaced by its token
//! type. Two texts with the same key reach the grammar as the same token
//! sequence, so they parse to the same tree up to constant values. A verdict
//! is cached only when no decision looked at a constant's value
//! ([`Verdict::literal_sensitive`]: SET values, set_config's arguments,
//! transaction modes, EXPLAIN options), and never for a refused text. The
//! one place a constant changes how other tokens are read, `UESCAPE 'c'`
//! after a Unicode identifier, keeps its constant in the key.
//!
//! **Parser threads.** A cache miss is parsed on one of a few dedicated
//! threads with a large stack: PostgreSQL's parser limits its own recursion
//! to what the stack allows, and decoding and walking a deep tree in Rust
//! needs room too. A statement the parser cannot handle is refused, never
//! forwarded; a panic in the parser thread refuses the statement and the
//! thread carries on.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use pg_query::protobuf::Token;

use crate::classify::{classify, Verdict};
use crate::rule::Rule;

#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// Longer statements are refused (`too_long`, SQLSTATE 54000).
    pub max_statement_bytes: usize,
    /// Verdicts kept by shape; least recently used ones go first.
    pub cache_entries: usize,
    /// Keys longer than this are not cached (they would crowd the cache).
    pub max_key_bytes: usize,
    /// Parser threads.
    pub threads: usize,
    /// Each parser thread's stack.
    pub stack_bytes: usize,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            max_statement_bytes: 1 << 20,
            cache_entries: 10_000,
            max_key_bytes: 16 * 1024,
            threads: 2,
            stack_bytes: 64 << 20,
        }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct ClassifierStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

type Job = (String, tokio::sync::oneshot::Sender<Verdict>);

/// Shared by every session of a gateway; cheap to clone.
#[derive(Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClassifierOptions,
    cache: Mutex<lru::LruCache<Box<[u8]>, Arc<Verdict>>>,
    jobs: mpsc::Sender<Job>,
    stats: ClassifierStats,
}

impl Classifier {
    pub fn new(options: ClassifierOptions) -> Classifier {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..options.threads.max(1) {
            let rx = rx.clone();
            // A thread that cannot be started leaves the others; with none,
            // every statement is refused (fail closed) and the error is
            // logged by the caller's first refusal.
            let _ = std::thread::Builder::new()
                .name(format!("airlock-sql-{i}"))
                .stack_size(options.stack_bytes)
                .spawn(move || parser_thread(&rx));
        }
        let entries = NonZeroUsize::new(options.cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Classifier {
            inner: Arc::new(Inner {
                options,
                cache: Mutex::new(lru::LruCache::new(entries)),
                jobs: tx,
                stats: ClassifierStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &ClassifierStats {
        &self.inner.stats
    }

    pub fn options(&self) -> &ClassifierOptions {
        &self.inner.options
    }

    /// Classifies `sql`: from the cache when its shape is known, else on a
    /// parser thread.
    pub async fn classify(&self, sql: &str) -> Arc<Verdict> {
        let opts = &self.inner.options;
        if sql.len() > opts.max_statement_bytes {
            return Arc::new(Verdict::refused(
                Rule::TooLong,
                format!(
                    "the statement is {} bytes; the gateway's limit is {} bytes",
                    sql.len(),
                    opts.max_statement_bytes
                ),
            ));
        }
        let key = shape_key(sql).filter(|k| k.len() <= opts.max_key_bytes);
        if let Some(key) = &key {
            if let Some(v) = self.lock_cache().get(key.as_slice()) {
                self.inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                return v.clone();
            }
        }
        self.inner.stats.misses.fetch_add(1, Ordering::Relaxed);
        let verdict = Arc::new(self.parse(sql).await);
        if let Some(key) = key {
            if !verdict.literal_sensitive && verdict.class() != crate::Class::Refused {
                self.lock_cache()
                    .put(key.into_boxed_slice(), verdict.clone());
            }
        }
        verdict
    }

    async fn parse(&self, sql: &str) -> Verdict {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.inner.jobs.send((sql.to_owned(), tx));
        if sent.is_err() {
            return Verdict::refused(Rule::SyntaxError, "the gateway's parser is not running");
        }
        rx.await.unwrap_or_else(|_| {
            Verdict::refused(
                Rule::SyntaxError,
                "the gateway's parser failed on this statement",
            )
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, lru::LruCache<Box<[u8]>, Arc<Verdict>>> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn parser_thread(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((sql, reply)) = job else {
            return;
        };
        let verdict = std::panic::catch_unwind(|| classify(&sql)).unwrap_or_else(|_| {
            Verdict::refused(
                Rule::SyntaxError,
                "the gateway's parser failed on this statement",
            )
        });
        let _ = reply.send(verdict);
    }
}

/// The statement's shape: its tokens with comments dropped and constants
/// replaced by their token type. `None` when the scanner rejects the text
/// (the parser then reports why).
pub fn shape_key(sql: &str) -> Option<Vec<u8>> {
    let tokens = scan_tokens(sql)?;
    let bytes = sql.as_bytes();
    let mut key = Vec::with_capacity(sql.len() + tokens.len());
    let mut after_uescape = false;
    for t in &tokens {
        let token = Token::try_from(t.token).unwrap_or(Token::Nul);
        match token {
            Token::SqlComment | Token::CComment => continue,
            Token::Iconst
            | Token::Fconst
            | Token::Sconst
            | Token::Usconst
            | Token::Bconst
            | Token::Xconst
                if !after_uescape =>
            {
                // 0xFF never occurs in UTF-8 text: a constant cannot be
                // confused with a token's own bytes.
                key.extend_from_slice(&[0xFF, (t.token & 0xFF) as u8, 0]);
            }
            _ => {
                // The token's kind as well as its bytes: `n'x'` is the
                // keyword NCHAR then a string, `n 'x'` a type named `n`
                // then a string, and both keep the bytes `n`. (0xFE never
                // occurs in UTF-8 either.)
                let (start, end) = (t.start as usize, t.end as usize);
                key.push(0xFE);
                key.extend_from_slice(&t.token.to_le_bytes()[..2]);
                key.extend_from_slice(bytes.get(start..end)?);
                key.push(0);
            }
        }
        after_uescape = token == Token::Uescape;
    }
    Some(key)
}

/// PostgreSQL's scanner over `sql`. Text with no tokens at all is answered
/// here: pg_query 18.1's `scan_tokens` builds a slice from a null pointer
/// for it (undefined behaviour, an abort in debug builds). Every character
/// that is not Unicode white space starts a token or a scanner error, so
/// text that trims to nothing is the only case.
pub fn scan_tokens(sql: &str) -> Option<Vec<pg_query::protobuf::ScanToken>> {
    if sql.trim().is_empty() {
        return Some(Vec::new());
    }
    pg_query::scan_tokens(sql).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the fuzzer): `N'x'` is scanned as the keyword
    /// NCHAR (bytes `n`) and a string; `n 'x'` as a type name `n` and a
    /// string. A key of bytes alone made them one shape, and a cast to a
    /// type `n` could take a national string's cached verdict.
    #[test]
    fn shapes_tell_tokens_of_the_same_bytes_apart() {
        assert_ne!(
            shape_key("SELECT n'role'").unwrap(),
            shape_key("SELECT n 'role'").unwrap()
        );
    }

    #[test]
    fn shapes_ignore_constants_and_comments_only() {
        let a = shape_key("SELECT abalance FROM a WHERE aid = 17;").unwrap();
        let b = shape_key("SELECT abalance /* hi */ FROM a\nWHERE aid = 42 ;").unwrap();
        assert_eq!(a, b);
        assert_ne!(
            a,
            shape_key("SELECT abalance FROM a WHERE aid = '17';").unwrap()
        );
        assert_ne!(
            a,
            shape_key("SELECT abalance FROM b WHERE aid = 17;").unwrap()
        );
        // UESCAPE's constant changes how the identifier before it reads.
        assert_ne!(
            shape_key(r#"SELECT U&"nextv!0061l"('s') UESCAPE '!'"#),
            shape_key(r#"SELECT U&"nextv!0061l"('s') UESCAPE '#'"#)
        );
    }

    #[tokio::test]
    async fn caches_by_shape_but_not_literal_sensitive_verdicts() {
        let c = Classifier::new(ClassifierOptions::default());
        assert_eq!(
            c.classify("SELECT * FROM t WHERE id = 1").await.rule(),
            Rule::Query
        );
        assert_eq!(
            c.classify("SELECT * FROM t WHERE id = 2").await.rule(),
            Rule::Query
        );
        assert_eq!(c.stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(
            c.classify("SET transaction_read_only = on").await.rule(),
            Rule::Set
        );
        assert_eq!(
            c.classify("SET transaction_read_only = 'off'").await.rule(),
            Rule::ReadOnlySetting
        );
        assert_eq!(
            c.classify("SET transaction_read_only = 'on'").await.rule(),
            Rule::Set
        );
        assert_eq!(
            c.classify("SELECT set_config('application_name', 'x', false)")
                .await
                .rule(),
            Rule::Query
        );
        assert_eq!(
            c.classify("SELECT set_config('role', 'x', false)")
                .await
                .rule(),
            Rule::IdentitySetting
        );
    }

    #[tokio::test]
    async fn limits() {
        let c = Classifier::new(ClassifierOptions {
            max_statement_bytes: 100,
            ..ClassifierOptions::default()
        });
        let long = format!("SELECT '{}'", "x".repeat(200));
        assert_eq!(c.classify(&long).await.rule(), Rule::TooLong);
        let c = Classifier::new(ClassifierOptions::default());
        let deep = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(c.classify(&deep).await.rule(), Rule::TooDeep);
        // Deep trees the grammar accepts: the tree walkers hit the stack
        // limit, or the tree is decoded and walked on the parser thread.
        let deep = format!("SELECT 1{}", " + 1".repeat(100_000));
        assert_eq!(c.classify(&deep).await.rule(), Rule::TooDeep);
        let deep = format!("SELECT {}1", "- ".repeat(9_000));
        assert_eq!(c.classify(&deep).await.rule(), Rule::Query);
        // The gateway goes on.
        assert_eq!(c.classify("SELECT 1").await.rule(), Rule::Query);
    }
}
