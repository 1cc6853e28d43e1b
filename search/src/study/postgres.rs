//! The study in a PostgreSQL database, for workers on several machines. One database
//! holds many studies, each under its name; the study's row in `cryptpeft_studies` is
//! its write lock (`SELECT ... FOR UPDATE`), and heartbeats are stamped and aged by the
//! server's clock, so workers' clocks may disagree. With `sslmode=require` the
//! connection is TLS 1.2+ (rustls) and the server's certificate is verified.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls, Transaction};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::store::{
    claimed, new_state, no_longer_ours, parse_rows, Claim, Decision, Finished, Proposal, Row,
    Storage, Trial, ROW_COLUMNS,
};
use crate::error::{Error, Result};
use crate::eval::Epoch;
use crate::fault;

/// The server's clock, in seconds since the epoch.
const NOW: &str = "extract(epoch from clock_timestamp())::float8";

/// Schema changes from concurrent first workers are serialized by this advisory lock.
const SCHEMA_LOCK: i64 = 0x4372_7970_5045_4654; // "CrypPEFT"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cryptpeft_studies (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS cryptpeft_meta (
    study TEXT NOT NULL REFERENCES cryptpeft_studies (name),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (study, key)
);
CREATE TABLE IF NOT EXISTS cryptpeft_trials (
    study TEXT NOT NULL REFERENCES cryptpeft_studies (name),
    number BIGINT NOT NULL,
    genome TEXT NOT NULL,
    config TEXT NOT NULL,
    epochs BIGINT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL,
    price TEXT NOT NULL,
    val_accuracy DOUBLE PRECISION,
    test_accuracy DOUBLE PRECISION,
    train_seconds DOUBLE PRECISION,
    message TEXT,
    checkpoint BYTEA,
    propose_seconds DOUBLE PRECISION,
    curve TEXT,
    PRIMARY KEY (study, number),
    UNIQUE (study, config, epochs)
);
-- Added since the first release.
ALTER TABLE cryptpeft_trials ADD COLUMN IF NOT EXISTS propose_seconds DOUBLE PRECISION;
ALTER TABLE cryptpeft_trials ADD COLUMN IF NOT EXISTS curve TEXT;
";

/// How [`PgStudy::open`] treats the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Creates the tables and the study where missing.
    Create,
    /// The study must exist; the tables are upgraded.
    Existing,
    /// The study must exist; nothing is written, the session is read-only.
    ReadOnly,
}

pub struct PgStudy {
    /// The server and study, without the password, for messages.
    at: String,
    study: String,
    client: Mutex<Client>,
}

/// `url` without its password (in the user part or a `password=` parameter), for
/// messages and the run directory's record; everything else stays, so it still connects
/// (the password then comes from `PGPASSWORD`).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl PgStudy {
    /// Connects to `url` and opens the study `name` there, creating it if `create`
    /// (else a missing study is an error and nothing is written). Without a password in
    /// the URL, `PGPASSWORD` gives it, as for `psql`.
    pub fn open(url: &str, name: &str, mode: Mode) -> Result<Self> {
        let at = format!("`{name}` at {}", redact(url));
        let err = |problem: String| Error::Study {
            at: at.clone(),
            problem,
        };
        let mut config: Config = url
            .parse()
            .map_err(|e| err(format!("the storage URL: {e}")))?;
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        // An unreachable server is an error after a while, not a hang; a peer gone
        // mid-query is noticed by keepalives.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(15));
        }
        config.keepalives_idle(Duration::from_secs(30));
        let connected = if config.get_ssl_mode() == SslMode::Require {
            config.connect(MakeRustlsConnect::new(tls(&err)?))
        } else {
            warn_if_remote(&config);
            config.connect(NoTls)
        };
        let mut client = connected.map_err(|e| err(format!("cannot connect: {}", describe(&e))))?;
        if mode != Mode::Create {
            let found = client
                .query_one(
                    "SELECT to_regclass('cryptpeft_studies') IS NOT NULL
                     AND EXISTS (SELECT 1 FROM cryptpeft_studies WHERE name = $1)",
                    &[&name],
                )
                .map_err(|e| err(describe(&e)))?
                .get::<_, Option<bool>>(0);
            if found != Some(true) {
                return Err(err("no such study in this database".into()));
            }
        }
        if mode == Mode::ReadOnly {
            // Every later transaction of this session is read-only: the server refuses a write.
            client
                .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .map_err(|e| err(describe(&e)))?;
            return Ok(Self {
                at,
                study: name.to_string(),
                client: Mutex::new(client),
            });
        }
        let mut tx = client.transaction().map_err(|e| err(describe(&e)))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .and_then(|_| tx.batch_execute(SCHEMA))
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO cryptpeft_studies (name) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&name],
                )
            })
            .map_err(|e| err(format!("creating the study: {}", describe(&e))))?;
        tx.commit().map_err(|e| err(describe(&e)))?;
        Ok(Self {
            at,
            study: name.to_string(),
            client: Mutex::new(client),
        })
    }

    fn err(&self, e: postgres::Error) -> Error {
        Error::Study {
            at: self.at.clone(),
            problem: describe(&e),
        }
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        // A panic elsewhere never leaves the client mid-statement.
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_rows(&self, c: &mut impl postgres::GenericClient) -> Result<Vec<Row>> {
        let rows = c
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS}, {NOW} - heartbeat FROM cryptpeft_trials
                     WHERE study = $1 ORDER BY number"
                ),
                &[&self.study],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(Row {
                    number: r.try_get(0)?,
                    genome: r.try_get(1)?,
                    config: r.try_get(2)?,
                    epochs: r.try_get(3)?,
                    state: r.try_get(4)?,
                    worker: r.try_get(5)?,
                    price: r.try_get(6)?,
                    val_accuracy: r.try_get(7)?,
                    test_accuracy: r.try_get(8)?,
                    train_seconds: r.try_get(9)?,
                    message: r.try_get(10)?,
                    propose_seconds: r.try_get(11)?,
                    age: r.try_get(12)?,
                })
            })
            .collect::<std::result::Result<_, postgres::Error>>()
            .map_err(|e| self.err(e))
    }

    fn record(&self, tx: &mut Transaction, decision: &Decision, worker: &str) -> Result<bool> {
        let changed = match decision {
            // Conditional: the dead worker's finish may have landed since the read.
            Decision::TakeOver(tr) => tx
                .execute(
                    &format!(
                        "UPDATE cryptpeft_trials SET worker = $1, heartbeat = {NOW}
                         WHERE study = $2 AND number = $3 AND worker = $4 AND state = 'running'"
                    ),
                    &[&worker, &self.study, &(tr.number as i64), &tr.worker],
                )
                .map_err(|e| self.err(e))?,
            Decision::Record(number, new) => tx
                .execute(
                    &format!(
                        "INSERT INTO cryptpeft_trials
                         (study, number, genome, config, epochs, state, worker, heartbeat, price,
                          propose_seconds)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, {NOW}, $8, $9)"
                    ),
                    &[
                        &self.study,
                        &(*number as i64),
                        &serde_json::to_string(&new.genome).expect("genome"),
                        &new.config,
                        &(new.epochs as i64),
                        &new_state(new).as_str(),
                        &worker,
                        &serde_json::to_string(&new.price).expect("price"),
                        &new.propose_seconds,
                    ],
                )
                .map_err(|e| Error::Study {
                    at: self.at.clone(),
                    problem: format!(
                        "recording trial {number} ({}): {}",
                        new.config,
                        describe(&e)
                    ),
                })?,
            Decision::Wait | Decision::Done => 1,
        };
        Ok(changed == 1)
    }
}

/// The CA file that verifies the server: `PGSSLROOTCERT`, else `~/.postgresql/root.crt`
/// (where `psql` looks too).
fn root_cert_path() -> Option<PathBuf> {
    std::env::var_os("PGSSLROOTCERT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt")))
}

/// TLS settings that verify the server's certificate (and its name: the host dialed)
/// against the CA of [`root_cert_path`].
fn tls(err: &dyn Fn(String) -> Error) -> Result<rustls::ClientConfig> {
    let path = root_cert_path()
        .ok_or_else(|| err("sslmode=require: set PGSSLROOTCERT to the server's CA".into()))?;
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(&path)
        .and_then(|it| it.collect())
        .map_err(|e| {
            err(format!(
                "sslmode=require: the server's CA {} (PGSSLROOTCERT): {e}",
                path.display()
            ))
        })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| err(format!("the CA in {}: {e}", path.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Says once that a connection over a network is in the clear.
fn warn_if_remote(config: &Config) {
    static ONCE: Once = Once::new();
    let remote = config.get_hosts().iter().any(|h| match h {
        Host::Tcp(name) => !matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
        Host::Unix(_) => false,
    });
    if remote {
        ONCE.call_once(|| {
            eprintln!(
                "warning: the study's database connection is not encrypted: anyone on the \
                 path can read the checkpoints and rewrite the results (add \
                 ?sslmode=require and the server's CA in PGSSLROOTCERT)"
            )
        });
    }
}

/// A PostgreSQL error with the server's message, where there is one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

impl Storage for PgStudy {
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String> {
        self.client()
            .execute(
                "INSERT INTO cryptpeft_meta (study, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&self.study, &key, &value],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.meta(key)?.expect("just inserted"))
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .query_opt(
                "SELECT value FROM cryptpeft_meta WHERE study = $1 AND key = $2",
                &[&self.study, &key],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn claim(&self, worker: &str, propose: &mut dyn FnMut(&[Trial]) -> Proposal) -> Result<Claim> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "SELECT 1 FROM cryptpeft_studies WHERE name = $1 FOR UPDATE",
            &[&self.study],
        )
        .map_err(|e| self.err(e))?;
        let trials = parse_rows(self.read_rows(&mut tx)?, &self.at)?;
        let decision = Decision::new(trials, worker, propose);
        if !self.record(&mut tx, &decision, worker)? {
            // Lost a race for the orphan; ask again.
            return Ok(Claim::Wait);
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(claimed(decision, worker))
    }

    fn heartbeat(&self, number: u64, worker: &str) -> Result<()> {
        self.client()
            .execute(
                &format!(
                    "UPDATE cryptpeft_trials SET heartbeat = {NOW}
                     WHERE study = $1 AND number = $2 AND worker = $3 AND state = 'running'"
                ),
                &[&self.study, &(number as i64), &worker],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn finish(
        &self,
        number: u64,
        worker: &str,
        outcome: std::result::Result<Finished, String>,
    ) -> Result<()> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        let n = number as i64;
        let changed = match &outcome {
            Ok(f) => tx.execute(
                &format!(
                    "UPDATE cryptpeft_trials SET state = 'complete', val_accuracy = $1,
                     train_seconds = $2, checkpoint = $3, heartbeat = {NOW}, curve = $7
                     WHERE study = $4 AND number = $5 AND worker = $6 AND state = 'running'"
                ),
                &[
                    &f.accuracy,
                    &f.seconds,
                    &f.checkpoint,
                    &self.study,
                    &n,
                    &worker,
                    &serde_json::to_string(&f.curve).expect("a curve serializes"),
                ],
            ),
            Err(msg) => tx.execute(
                &format!(
                    "UPDATE cryptpeft_trials SET state = 'failed', message = $1, heartbeat = {NOW}
                     WHERE study = $2 AND number = $3 AND worker = $4 AND state = 'running'"
                ),
                &[msg, &self.study, &n, &worker],
            ),
        }
        .map_err(|e| self.err(e))?;
        fault::point("commit");
        tx.commit().map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(no_longer_ours(&self.at, number));
        }
        Ok(())
    }

    fn set_test_accuracy(&self, number: u64, accuracy: f64) -> Result<()> {
        self.client()
            .execute(
                "UPDATE cryptpeft_trials SET test_accuracy = $1
                 WHERE study = $2 AND number = $3 AND test_accuracy IS NULL",
                &[&accuracy, &self.study, &(number as i64)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn aged_trials(&self) -> Result<Vec<(Trial, f64)>> {
        let rows = self.read_rows(&mut *self.client())?;
        parse_rows(rows, &self.at)
    }

    fn checkpoint(&self, number: u64) -> Result<Option<Vec<u8>>> {
        let row = self
            .client()
            .query_opt(
                "SELECT checkpoint FROM cryptpeft_trials WHERE study = $1 AND number = $2",
                &[&self.study, &(number as i64)],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    fn curve(&self, number: u64) -> Result<Option<Vec<Epoch>>> {
        let mut client = self.client();
        // A read-only view of a study an older release made has no curve column.
        let column = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_name = 'cryptpeft_trials' AND column_name = 'curve')",
                &[],
            )
            .map_err(|e| self.err(e))?
            .get::<_, bool>(0);
        if !column {
            return Ok(None);
        }
        let row = client
            .query_opt(
                "SELECT curve FROM cryptpeft_trials WHERE study = $1 AND number = $2",
                &[&self.study, &(number as i64)],
            )
            .map_err(|e| self.err(e))?;
        row.and_then(|r| r.get::<_, Option<String>>(0))
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| Error::Study {
                    at: self.at.clone(),
                    problem: format!("trial {number}'s curve: {e}"),
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redaction_drops_only_the_password() {
        for (url, want) in [
            (
                "postgresql://u:secret@h:5433/db",
                "postgresql://u@h:5433/db",
            ),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "postgres://u:p%40ss@h/db?sslmode=require&password=x",
                "postgres://u@h/db?sslmode=require",
            ),
            (
                "postgresql:///db?user=u&host=/tmp/s&password=x",
                "postgresql:///db?user=u&host=/tmp/s",
            ),
            ("postgresql://h", "postgresql://h"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }
}
