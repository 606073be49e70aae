//! `cargo xtask` must act on the checkout it is invoked in, even when that checkout shares its target directory with
//! another one (a copy of the repository, a second worktree, a CI cache).
//!
//! Building the real simulator twice would take minutes, so each checkout here is a small workspace holding this
//! repository's own xtask crate (copied verbatim, with the `.cargo/config.toml` alias) beside a stand-in
//! `burrow-sim` package that prints which checkout it was built from. `cargo xtask sim ...` runs that package, so
//! its output names the code xtask actually built and ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The repository's root (this crate lives in `ci/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("ci/ is inside the repository").to_path_buf()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("make the folder");
    std::fs::write(path, text).expect("write the file");
}

/// A checkout at `root` whose stand-in simulator says `who`.
fn checkout(root: &Path, who: &str) {
    let repo = repository();
    write(
        &root.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"ci\", \"probe\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n\
         edition = \"2024\"\nrust-version = \"1.85\"\nlicense = \"MIT OR Apache-2.0\"\npublish = false\n\n\
         [workspace.lints.rust]\n",
    );
    for file in [".cargo/config.toml", "ci/Cargo.toml", "ci/src/main.rs"] {
        let text = std::fs::read_to_string(repo.join(file)).expect("read the xtask crate");
        write(&root.join(file), &text);
    }
    write(
        &root.join("probe/Cargo.toml"),
        "[package]\nname = \"burrow-sim\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n",
    );
    say(root, who);
}

fn say(root: &Path, who: &str) {
    write(
        &root.join("probe/src/main.rs"),
        &format!(
            "fn main() {{ println!(\"built from {who}: {{:?}}\", std::env::args().skip(1).collect::<Vec<_>>()); }}\n"
        ),
    );
}

/// Copies the folder `from` to `to`, every file keeping its modification time (as `cp -a`, a git worktree checked
/// out earlier, or a restored cache would), so that cargo judges the copy's unchanged files by their age alone.
fn copy_keeping_times(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("make the copy's folder");
    for entry in std::fs::read_dir(from).expect("list the folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_keeping_times(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy the file");
            let modified: SystemTime = entry.metadata().and_then(|m| m.modified()).expect("its time");
            std::fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(modified)).expect("set it");
        }
    }
}

/// `cargo xtask sim <word>` in `root` with the shared target directory; its standard output.
fn xtask_sim(root: &Path, target: &Path, word: &str) -> String {
    xtask_sim_with_stderr(root, target, word).0
}

/// `cargo xtask sim <word>` in `root` with the shared target directory; its standard output and error.
fn xtask_sim_with_stderr(root: &Path, target: &Path, word: &str) -> (String, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["xtask", "sim", word])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo xtask");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "cargo xtask sim {word} in {} failed: {stderr}\n{stdout}", root.display());
    (stdout, stderr)
}

#[test]
fn xtask_in_a_copy_sharing_the_target_directory_runs_the_copys_code() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-shared-target");
    let _ = std::fs::remove_dir_all(&base);
    let (first, copy, target) = (base.join("first"), base.join("copy"), base.join("target"));
    checkout(&first, "the first checkout");
    assert_eq!(xtask_sim(&first, &target, "hello"), "built from the first checkout: [\"hello\"]\n");

    // The copy changes only its simulator; its xtask sources are as old as the first checkout's, so cargo finds the
    // xtask binary already built in the shared target directory up to date and runs it as it is.
    copy_keeping_times(&first, &copy);
    say(&copy, "the copy");
    assert_eq!(
        xtask_sim(&copy, &target, "again"),
        "built from the copy: [\"again\"]\n",
        "xtask in the copy must build and run the copy's code"
    );
    // Back in the first checkout, whose files are all older than what the copy built: cargo alone would find the
    // copy's simulator up to date and run it.
    assert_eq!(xtask_sim(&first, &target, "back"), "built from the first checkout: [\"back\"]\n");

    // The copy's xtask itself changes: the first checkout, whose xtask sources are older than the copy's xtask
    // binary, must not run the copy's xtask either.
    let main = copy.join("ci/src/main.rs");
    let text = std::fs::read_to_string(&main).expect("read the copy's xtask");
    write(&main, &format!("{text}\n// The copy's own change.\n"));
    assert_eq!(xtask_sim(&copy, &target, "changed"), "built from the copy: [\"changed\"]\n");
    let (first_says, stderr) = xtask_sim_with_stderr(&first, &target, "last");
    assert_eq!(first_says, "built from the first checkout: [\"last\"]\n");
    assert!(stderr.contains("built from another checkout's sources"), "the rebuild is said: {stderr}");
}
