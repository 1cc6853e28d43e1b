//! `cryptpeft-search dashboard DIR`: a read-only web page of a study on this machine,
//! live while workers run. The page is one self-contained file: its script and styles
//! come from the binary, never from a CDN, and `report --html` writes the same page
//! with the study's data inside.
//!
//! Safe by default: it listens on loopback unless told otherwise, answers only GET,
//! serves from the run directory only plots and tables (never checkpoints or the
//! database), refuses other hosts' names (DNS rebinding), and shows the study's
//! location without its password.

mod snapshot;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use tiny_http::{Header, Method, Request, Response, Server};

use crate::error::{Error, Result};
use crate::report::reference_seconds;
use crate::study::View;

pub use snapshot::{details, take, Details, Snapshot, StepTable};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// Run-directory files the page may link to: plots and tables, nothing secret.
const SERVED: [(&str, &str); 4] = [
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("csv", "text/csv; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
];

/// The page; `data` (a snapshot's JSON) inside makes it a static copy, without it the
/// page polls `/api/study`.
pub fn page(data: Option<&str>) -> String {
    // `<` never occurs in JSON outside strings, where `\u003c` means the same: the data
    // cannot close its script element.
    let data = data.map_or("null".to_string(), |d| d.replace('<', "\\u003c"));
    PAGE.replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
        .replace("/*DATA*/", &data)
}

/// The page with the study's data and its front members' details inside
/// (`report --html`).
pub fn static_page(view: &View) -> Result<String> {
    let mut snap = take(view, &reference_seconds(&view.genomes, &view.pricer))?;
    let mut members: Vec<u64> = snap.fronts.iter().flatten().copied().collect();
    members.sort_unstable();
    members.dedup();
    for n in members {
        snap.details.insert(n, details(view, n)?);
    }
    let json = serde_json::to_string(&snap).expect("a snapshot serializes");
    Ok(page(Some(&json)))
}

/// Serves the dashboard of `view` on `addr` until the process ends; `ready` gets the
/// bound address (port 0 picks a free one).
pub fn serve(view: View, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let server =
        Server::http(addr).map_err(|e| Error::Other(format!("listening on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Other(format!("{addr} is not an IP address")))?;
    let references = reference_seconds(&view.genomes, &view.pricer);
    ready(bound);
    for request in server.incoming_requests() {
        let response = respond(&view, &references, &request, bound);
        // A client that hung up is no concern of the next one.
        let _ = request.respond(response);
    }
    Ok(())
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn reply(status: u16, kind: &str, body: Vec<u8>) -> Reply {
    Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", kind))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        // The page reaches nothing but this server.
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src 'self'; connect-src 'self'",
        ))
}

fn error(status: u16, why: &str) -> Reply {
    let body = serde_json::json!({ "error": why }).to_string();
    reply(status, "application/json", body.into_bytes())
}

fn json(value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).expect("serializes");
    reply(200, "application/json", body)
}

/// Whether the request names this server: on loopback, only loopback names, so that a
/// web page elsewhere cannot rebind its own name to this port and read the study.
fn host_allowed(request: &Request, bound: SocketAddr) -> bool {
    if !bound.ip().is_loopback() {
        return true;
    }
    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_ascii_lowercase());
    let Some(host) = host else { return false };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.chars().all(|c| c.is_ascii_digit()) => n.to_string(),
        _ => host,
    };
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

fn respond(view: &View, references: &[f64], request: &Request, bound: SocketAddr) -> Reply {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return error(405, "the dashboard is read-only: GET only");
    }
    if !host_allowed(request, bound) {
        return error(
            403,
            "unknown Host: open the dashboard as localhost or 127.0.0.1",
        );
    }
    let path = request.url().split(['?', '#']).next().unwrap_or("");
    match path {
        "/" | "/index.html" => reply(200, "text/html; charset=utf-8", page(None).into_bytes()),
        "/api/study" => match take(view, references) {
            Ok(s) => json(&s),
            Err(e) => error(503, &format!("reading the study: {e}")),
        },
        _ => {
            if let Some(n) = path.strip_prefix("/api/trial/") {
                return match n.parse::<u64>() {
                    Ok(n) => match details(view, n) {
                        Ok(d) => json(&d),
                        Err(e) => error(404, &e.to_string()),
                    },
                    Err(_) => error(400, "a trial number after /api/trial/"),
                };
            }
            if let Some(rel) = path.strip_prefix("/files/") {
                return file(&view.dir, rel);
            }
            error(404, "no such page")
        }
    }
}

/// A plot or table of the run directory; anything else, or anything outside it, is
/// refused.
fn file(dir: &Path, rel: &str) -> Reply {
    let Some(path) = inside(dir, rel) else {
        return error(403, "only the run directory's plots and tables are served");
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let Some((_, kind)) = SERVED.iter().find(|(e, _)| *e == ext) else {
        return error(403, "only .png, .svg, .csv and .md files are served");
    };
    match std::fs::read(&path) {
        Ok(bytes) => reply(200, kind, bytes),
        Err(_) => error(404, "no such file"),
    }
}

/// `dir/rel` when `rel` is plain names (no `..`, no escapes, no absolute path) and the
/// file, links resolved, lies inside `dir`.
fn inside(dir: &Path, rel: &str) -> Option<PathBuf> {
    if rel.contains(['%', '\\']) || rel.is_empty() {
        return None;
    }
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let path = root.join(rel).canonicalize().ok()?;
    path.starts_with(&root).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_inside_the_run_directory_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(run.join("adapters")).unwrap();
        std::fs::write(run.join("pareto_wan.csv"), "x").unwrap();
        std::fs::write(tmp.path().join("secret.csv"), "x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.csv"), run.join("link.csv")).unwrap();
        assert!(inside(&run, "pareto_wan.csv").is_some());
        for bad in [
            "../secret.csv",
            "adapters/../../secret.csv",
            "%2e%2e/secret.csv",
            "/etc/passwd",
            "link.csv",
            "",
            "..\\secret.csv",
        ] {
            assert!(inside(&run, bad).is_none(), "{bad} resolved");
        }
    }

    #[test]
    fn the_data_cannot_close_its_script_element() {
        let p = page(Some(r#"{"name":"</script><script>alert(1)</script>"}"#));
        assert!(!p.contains("</script><script>alert"));
        assert!(p.contains(r#"\u003c/script>"#));
        assert!(page(None).contains("const EMBEDDED = null"));
    }
}
