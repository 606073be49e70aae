//! A failing run's picture, opened in a real browser: headless Chromium runs the page's script, and the rendered DOM
//! must hold a lane per session, the runs and inputs, the crash and restart markers and the violation marker.
//!
//! Chromium is a system package (`.ci/run` installs Debian's). Under `CI=true` a missing browser fails the test;
//! elsewhere the test says it was skipped and how to install one.

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_sim::core::{parse_defect, run_core};
use burrow_sim::full::{FullDefect, run_seed};
use burrow_sim::html::Picture;
use burrow_sim::trace::Run;

/// The browser, if one is installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|ci| ci != "true"),
            "CI=true and no Chromium on PATH: .ci/run installs Debian's chromium package"
        );
        eprintln!("skipped: no Chromium on PATH (Debian: apt-get install chromium)");
    }
    found
}

/// The DOM Chromium rendered from `page`, after its script ran.
fn rendered(browser: &Path, page: &Path) -> String {
    let profile = page.with_extension("profile");
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("Chromium runs");
    assert!(out.status.success(), "Chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// Writes `run`'s picture in a folder of the test's own and returns the rendered DOM with the picture's model.
fn render(browser: &Path, run: &Run, name: &str) -> (String, Picture) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let file = run.write_html(&dir).expect("the picture is written");
    let narrated = std::fs::read_to_string(&file).expect("read it back");
    assert!(narrated.contains("<script"), "the page draws itself");
    assert!(!narrated.contains("src=\"http") && !narrated.contains("href=\"http"), "nothing is fetched");
    // The model the page was drawn from, read the same way the page was written.
    let picture = match run.mode {
        burrow_sim::Mode::Core => {
            Picture::of(&burrow_sim::core::run_core_narrated(run.seed, run.defect.and_then(parse_defect)))
        }
        _ => Picture::of(run),
    };
    (rendered(browser, &file), picture)
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
fn a_failing_core_seed_renders_its_lane_runs_inputs_crash_and_violation() {
    let Some(browser) = browser_or_skip() else { return };
    // A planted recovery bug: its failing seeds crash, so the picture has crash and restart markers.
    let defect = parse_defect("reset-attempts-on-recovery").expect("a defect");
    let run = (0..5_000)
        .map(|seed| run_core(seed, Some(defect)))
        .find(|run| !run.verdict.is_clean())
        .expect("the defect is caught within 5,000 seeds");
    let (dom, picture) = render(&browser, &run, "picture-core");
    assert!(!picture.runs.is_empty() && !picture.inputs.is_empty(), "the narration tells runs and inputs");
    assert!(picture.markers.iter().any(|m| m.kind == "crash"), "the failing run crashed");
    assert_eq!(count(&dom, "data-lane=\"s1\""), 1, "one lane for the one session");
    assert_eq!(count(&dom, "class=\"lane\""), picture.lanes.len());
    assert!(count(&dom, "class=\"run") >= picture.runs.len(), "every run is drawn");
    assert!(count(&dom, "class=\"input") >= picture.inputs.len(), "every input is drawn");
    assert!(dom.contains("class=\"marker crash"), "the crash is marked across the lanes");
    assert!(dom.contains("id=\"violation\""), "the violation is marked");
    assert!(dom.contains("class=\"event violated"), "its event row is highlighted");
}

#[test]
fn a_failing_shell_run_renders_a_lane_per_session() {
    let Some(browser) = browser_or_skip() else { return };
    // The shell on real threads with a planted mistake, over seeds with several sessions.
    let run = (0..200)
        .filter(|seed| burrow_sim::scenario::Scenario::generate(*seed).sessions >= 2)
        .map(|seed| run_seed(seed, Some(FullDefect::LyingExecutor)))
        .find(|run| !run.verdict.is_clean())
        .expect("the lying executor is caught within 200 seeds");
    let (dom, picture) = render(&browser, &run, "picture-tokio");
    assert!(picture.lanes.len() >= 2, "{:?}", picture.lanes);
    for lane in &picture.lanes {
        assert_eq!(count(&dom, &format!("data-lane=\"{lane}\"")), 1, "lane {lane} is drawn once");
    }
    assert!(count(&dom, "class=\"run") >= picture.runs.len());
    assert!(dom.contains("id=\"violation\""), "the violation is marked");
}

#[test]
fn a_model_counterexample_renders_through_replay() {
    let Some(browser) = browser_or_skip() else { return };
    // A scenario file as `burrow-model check --scenarios DIR` writes one: a reset that forgets its waiters.
    let text = "burrow-scenario v1\nmodel session/control\nproperty p\nstep Accept(Prompt)\nstep Control(Reset)\n";
    let (bounds, actions) = burrow_sim::core::scenario_actions(text).expect("a session-model scenario");
    let defect = parse_defect("forget-waiters-on-reset");
    let run = burrow_sim::core::replay_core_narrated(0, bounds, defect, &actions);
    assert!(!run.verdict.is_clean(), "the counterexample fails again: {:?}", run.verdict);
    let picture = Picture::of(&run);
    assert_eq!(picture.lanes, ["s1"]);
    assert_eq!(picture.inputs.len(), 1, "the prompt is drawn from its accept");
    let (dom, _) = render(&browser, &run, "picture-model");
    assert_eq!(count(&dom, "class=\"lane\""), 1);
    assert_eq!(count(&dom, "class=\"input"), 1);
    assert!(dom.contains("id=\"violation\""), "the violation is marked");
}
