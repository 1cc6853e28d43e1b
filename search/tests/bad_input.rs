//! Bad input fails with an error naming the key or path, and leaves an existing study
//! as it was.

mod common;

use std::path::Path;

use common::*;

/// A finished tiny study, and a snapshot of its trials.
fn existing_study(tmp: &Path) -> (std::path::PathBuf, String) {
    let space = write_space(tmp, &tiny_space(5, 3, 1));
    let out = tmp.join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    (out.clone(), format!("{:?}", trials(&out)))
}

/// Runs `space_text` against the existing study; expects failure whose message holds
/// every string of `want`; checks the study is unchanged.
fn fails(space_text: &str, want: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (out, before) = existing_study(tmp.path());
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, space_text).unwrap();
    let o = search(&bad, &out, None);
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted: {space_text}");
    for w in want {
        assert!(err.contains(w), "error lacks `{w}`: {err}");
    }
    assert_eq!(format!("{:?}", trials(&out)), before, "the study changed");
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = tiny_space(5, 3, 1).replace("genes:\n", "genes:\n  hedas: [1]\n");
    fails(&text, &["hedas", "line 9"]);
}

#[test]
fn bad_choice_names_value_and_line() {
    let text = tiny_space(5, 3, 1).replace(
        "  scope: [1, 2]\n",
        "  scope: [1, 2]\n  norm: [affine, bogus]\n",
    );
    fails(&text, &["bogus", "line 12"]);
    let text = tiny_space(5, 3, 1).replace("heads: [1, 2]", "heads: [0, 2]");
    fails(&text, &["`genes.heads`", "line 9"]);
}

#[test]
fn missing_dataset_path_is_named() {
    let text = tiny_space(5, 3, 1).replace(
        "  dataset: digits\n",
        "  dataset: digits\n  path: /nonexistent/digits.csv.gz\n",
    );
    fails(&text, &["`data.path`", "/nonexistent/digits.csv.gz"]);
}

#[test]
fn unreadable_backbone_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let text = tiny_space(5, 3, 1).replace(
        "backbone: vit-mini",
        &format!("backbone: {}", junk.display()),
    );
    fails(&text, &["backbone", &junk.display().to_string()]);
    let text = tiny_space(5, 3, 1).replace(
        "backbone: vit-mini",
        "backbone: /nonexistent/vit.safetensors",
    );
    fails(&text, &["`backbone`", "/nonexistent/vit.safetensors"]);
}

#[test]
fn another_space_on_an_existing_study_is_refused() {
    fails(&tiny_space(6, 3, 1), &["different space"]);
}

#[test]
fn unwritable_run_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &tiny_space(5, 3, 1));
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let o = search(&space, &out, None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&out.display().to_string())
            || stderr(&o).contains(&file.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &tiny_space(5, 3, 1));
    let run = |storage: &str| {
        std::process::Command::new(BIN)
            .arg("--space")
            .arg(&space)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .args(["--storage", storage, "-q"])
            .output()
            .unwrap()
    };
    let o = run("postgresql://u:hunter2@127.0.0.1:1/db");
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("cannot connect") && e.contains("postgresql://u@127.0.0.1:1/db"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    let o = run("mysql://u:hunter2@h/db");
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("--storage"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
