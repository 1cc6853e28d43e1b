//! A real PostgreSQL server for the storage tests, nothing mocked: a throwaway cluster
//! this test process starts with Debian's (or the PATH's) `initdb` and `postgres`,
//! stopped when the process exits. It listens on a private Unix socket and on a free
//! loopback port that takes TLS only (`hostssl`), with a certificate from a fresh CA.
//! Running as root, the cluster runs as the `postgres` user (initdb refuses root).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running cluster: its Unix-socket URL, its TLS port and its CA's file.
pub struct Cluster {
    url: String,
    pub port: u16,
    pub ca: PathBuf,
}

/// The URL of a new, empty database for one test (over the Unix socket).
pub fn fresh_database(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = &cluster().url;
    let name = format!(
        "cryptpeft_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test server {base}: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    with_database(base, &name)
}

/// The TLS URL (loopback, `sslmode=require`) of a database `fresh_database` made.
pub fn tls_url(db_url: &str) -> String {
    let db = db_url
        .split_once(":///")
        .and_then(|(_, rest)| rest.split('?').next())
        .expect("a fresh_database URL");
    format!(
        "postgresql://cryptpeft@127.0.0.1:{}/{db}?sslmode=require",
        cluster().port
    )
}

/// `base` with its database replaced by `db`.
fn with_database(base: &str, db: &str) -> String {
    let (head, query) = base.split_once('?').unwrap_or((base, ""));
    let (scheme, rest) = head.split_once("://").expect("a URL");
    let authority = rest.split('/').next().unwrap_or("");
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{db}{q}")
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start_cluster)
}

fn bin(name: &str) -> PathBuf {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    debian.sort();
    if let Some(p) = debian.pop() {
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's `{name}` not found (in /usr/lib/postgresql/*/bin or PATH): install \
             Debian's `postgresql` (.ci/run does)"
        )
    })
}

/// The uid and gid the cluster runs as: ours, or `postgres`'s when we are root.
fn cluster_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, the test cluster needs the `postgres` user (Debian's postgresql \
         package creates it)"
    );
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

fn as_cluster_user(c: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

/// Removes the directories of earlier test processes' clusters that are gone.
fn remove_stale(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cryptpeft-pg-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Writes the server's certificate and key into the data directory (the key private
/// to the cluster's user, as postgres demands), the CA beside it, and a `pg_hba.conf`
/// that takes the Unix socket and TLS over loopback only.
fn configure_tls(dir: &Path, data: &Path, user: Option<(u32, u32)>) -> PathBuf {
    let d = cryptpeft_deploy::keys::Deployment::generate(&["127.0.0.1".into()], 1).unwrap();
    let files = [
        ("server.crt", &d.dealer.cert_pem, 0o644),
        ("server.key", &d.dealer.key_pem, 0o600),
        (
            "pg_hba.conf",
            &"local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_string(),
            0o600,
        ),
    ];
    for (name, text, mode) in files {
        let p = data.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        }
    }
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &d.dealer_ca.cert_pem).unwrap();
    ca
}

fn start_cluster() -> Cluster {
    let root = std::env::temp_dir();
    remove_stale(&root);
    let dir = root.join(format!("cryptpeft-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let user = cluster_user();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = as_cluster_user(&mut Command::new(bin("initdb")), user)
        .args([
            "-A",
            "trust",
            "-U",
            "cryptpeft",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = configure_tls(&dir, &data, user);
    let port = super::free_port();
    // Spawned from a thread that never ends, so the parent-death signal fires when the
    // process exits (it follows the spawning thread, not the process).
    let postgres = bin("postgres");
    let (data2, sock) = (data.clone(), dir.clone());
    std::thread::spawn(move || {
        let mut c = Command::new(postgres);
        as_cluster_user(&mut c, user)
            .arg("-D")
            .arg(&data2)
            .arg("-k")
            .arg(&sock)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "ssl=on",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            c.pre_exec(|| {
                // Fast shutdown when this test process is gone.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                Ok(())
            });
        }
        let mut child = c.spawn().expect("starting postgres");
        let _ = child.wait();
        loop {
            std::thread::park();
        }
    });
    let url = format!(
        "postgresql:///postgres?user=cryptpeft&host={}&port={port}",
        dir.display()
    );
    let start = Instant::now();
    while postgres::Client::connect(&url, postgres::NoTls).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the test cluster in {} did not start within 60 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster { url, port, ca }
}
