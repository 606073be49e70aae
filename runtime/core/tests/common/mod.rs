//! Shared by the spec-table tests: keeps each `specs/<machine>.md` page in step
//! with the table rendered from the real transition function.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

const BEGIN: &str = "<!-- generated-table:begin (rendered by runtime/core/tests; do not edit by hand) -->";
const END: &str = "<!-- generated-table:end -->";

fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../specs")
}

/// Snapshots `table` with insta under `specs/tables/` and checks that the
/// generated region of `specs/<machine>.md` holds exactly the same text.
///
/// With `BURROW_UPDATE_SPECS=1` the page's generated region is rewritten
/// instead (review the diff, then commit it with the code change).
pub fn check_spec_page(machine: &str, table: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(specs_dir().join("tables"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(machine, table));

    let page_path = specs_dir().join(format!("{machine}.md"));
    let page = std::fs::read_to_string(&page_path)
        .unwrap_or_else(|e| panic!("spec page {} is missing: {e}", page_path.display()));
    let begin = page.find(BEGIN).unwrap_or_else(|| panic!("{machine}.md has no begin marker"));
    let end = page.find(END).unwrap_or_else(|| panic!("{machine}.md has no end marker"));
    assert!(begin < end, "{machine}.md markers are out of order");
    let current = &page[begin + BEGIN.len()..end];
    let wanted = format!("\n\n{table}\n");
    if current == wanted {
        return;
    }
    if std::env::var_os("BURROW_UPDATE_SPECS").is_some() {
        let updated = format!("{}{BEGIN}{wanted}{}", &page[..begin], &page[end..]);
        std::fs::write(&page_path, updated).expect("rewrite spec page");
        return;
    }
    panic!(
        "specs/{machine}.md is out of date with the transition table; \
         rerun with BURROW_UPDATE_SPECS=1 and review the diff"
    );
}
