//! README.md's configuration table is generated from the clap definitions; this test fails when
//! they drift and prints the table to paste.

use image_scanner::config::flag_env_table;

const README: &str = include_str!("../README.md");
const BEGIN: &str = "<!-- config-table:begin -->";
const END: &str = "<!-- config-table:end -->";

fn expected_table() -> String {
    let mut out = String::from("| flag | env var | default | meaning |\n|---|---|---|---|\n");
    for (flag, env, default, help) in flag_env_table() {
        let default = if default.is_empty() {
            "\"\"".to_string()
        } else {
            format!("`{default}`")
        };
        let help = help.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!("| `{flag}` | `{env}` | {default} | {help} |\n"));
    }
    out
}

#[test]
fn readme_config_table_matches_the_flags() {
    let start = README
        .find(BEGIN)
        .expect("README has the config-table markers")
        + BEGIN.len();
    let end = README
        .find(END)
        .expect("README has the config-table end marker");
    let actual = README[start..end].trim();
    let expected = expected_table();
    assert!(
        actual == expected.trim(),
        "README config table is stale; replace it with:\n{expected}"
    );
}
