//! `docs/cli.md`: the command-line reference, walked from the clap definitions: every command
//! and subcommand with its flags, their help, allowed values, defaults and environment variables.
//! (clap-markdown prints no environment variables, which are how most deployments configure
//! strata, so the walk is ours; it is short.)

use clap::{Arg, Command, CommandFactory};

use super::spec::{anchor, cell, paragraphs};

/// Every command of the binary, depth first, with its full name (`strata keys create`).
fn commands(cmd: &Command, prefix: &str, out: &mut Vec<(String, Command)>) {
    let name = if prefix.is_empty() { cmd.get_name().to_owned() } else { format!("{prefix} {}", cmd.get_name()) };
    out.push((name.clone(), cmd.clone()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        commands(sub, &name, out);
    }
}

/// The flags a command documents: its own, without `--help`/`--version`, hidden ones, or (below
/// the top) the global ones every command takes.
fn own_args(cmd: &Command, top: bool) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version") && (top || !a.is_global_set()))
        .collect()
}

/// The built command line, as `strata --help` sees it.
pub(super) fn command() -> Command {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    cmd
}

pub(super) fn render(out: &mut String) {
    let root = command();
    let mut all = Vec::new();
    commands(&root, "", &mut all);
    out.push_str("# Command-line reference\n\n");
    out.push_str(
        "One binary, `strata`, serves the API (`strata serve`) and runs the operator commands, which work on the same \
         database as the server without going through HTTP. Every flag that has an environment variable can be set \
         through it instead; a flag given on the command line wins. `strata <command> --help` prints the same text.\n\n",
    );
    for (name, cmd) in all.iter().skip(1) {
        let depth = name.matches(' ').count();
        let about = cmd.get_about().map(|s| s.to_string()).unwrap_or_default();
        out.push_str(&format!("{}- [{name}](#{}): {}\n", "  ".repeat(depth - 1), anchor(name), cell(&sentence(&about))));
    }
    out.push('\n');
    for (i, (name, cmd)) in all.iter().enumerate() {
        let top = i == 0;
        out.push_str(&format!("## {}\n\n", if top { "Global options" } else { name }));
        if top {
            out.push_str("Every command takes these.\n\n");
        } else if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
            out.push_str(&paragraphs(&sentence(&about.to_string())));
            out.push_str("\n\n");
        }
        if cmd.has_subcommands() && !top {
            let subs: Vec<String> = cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .map(|s| {
                    let full = format!("{name} {}", s.get_name());
                    format!("[{}](#{})", s.get_name(), anchor(&full))
                })
                .collect();
            out.push_str(&format!("Subcommands: {}.\n\n", subs.join(", ")));
        }
        let args = own_args(cmd, top);
        if !args.is_empty() {
            out.push_str("| flag | description | default | environment |\n| --- | --- | --- | --- |\n");
            for a in args {
                out.push_str(&format!("| {} | {} | {} | {} |\n", flag(a), cell(&description(a)), default(a), env(a)));
            }
            out.push('\n');
        }
    }
}

/// Text with its final period back (clap drops it from a one-line doc comment).
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() || text.ends_with(['.', ':']) { text.to_owned() } else { format!("{text}.") }
}

/// `--name <VALUE>`, `--json`, `<KIND>` (a positional), with the short form when there is one.
fn flag(a: &Arg) -> String {
    let value = a.get_value_names().and_then(|v| v.first()).map_or_else(|| a.get_id().as_str().to_uppercase(), |v| v.to_string());
    let takes = a.get_action().takes_values();
    let value = if takes { format!(" <{value}>") } else { String::new() };
    match (a.get_long(), a.get_short()) {
        (Some(l), Some(c)) => format!("`-{c}`, `--{l}{value}`"),
        (Some(l), None) => format!("`--{l}{value}`"),
        (None, Some(c)) => format!("`-{c}{value}`"),
        (None, None) => format!("`<{}>`", value.trim().trim_matches(['<', '>'])),
    }
}

/// The help text, then the allowed values when clap knows them.
fn description(a: &Arg) -> String {
    let mut text = sentence(&a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default());
    let values: Vec<String> = a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| format!("`{}`", v.get_name())).collect();
    if !values.is_empty() && a.get_action().takes_values() {
        text.push_str(&format!(" Allowed: {}.", values.join(", ")));
    }
    if matches!(a.get_action(), clap::ArgAction::Append) {
        text.push_str(" May repeat.");
    }
    text
}

fn default(a: &Arg) -> String {
    if !a.get_action().takes_values() {
        return String::new();
    }
    let values: Vec<String> = a.get_default_values().iter().map(|v| format!("`{}`", v.to_string_lossy())).collect();
    values.join(", ")
}

fn env(a: &Arg) -> String {
    a.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_flag_has_a_description() {
        let mut all = Vec::new();
        commands(&command(), "", &mut all);
        let mut missing = Vec::new();
        for (name, cmd) in &all {
            if cmd.get_about().is_none() {
                missing.push(name.clone());
            }
            for a in own_args(cmd, name == "strata") {
                if a.get_help().is_none() {
                    missing.push(format!("{name} {}", flag(a)));
                }
            }
        }
        assert!(missing.is_empty(), "give these a doc comment: {missing:#?}");
    }

    /// The backticked words of a README table cell (`--data-dir`, `serve --listen`, `./strata-data`).
    fn ticked(cell: &str) -> Vec<String> {
        cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }

    /// README's configuration table restates the server's flags for operators (the full list is
    /// the generated docs/cli.md): each row's flags exist where it says (`serve --listen` under
    /// `serve`, the others global), take the environment variables the row names and no others,
    /// and default to what the row says where clap has a default; and every environment variable
    /// of a global or `serve` flag has a row. So the table cannot drift from the binary.
    #[test]
    fn the_readme_configuration_table_says_what_the_binary_takes() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let section = readme.split("\n## Configuration\n").nth(1).expect("README has a Configuration section");
        let rows: Vec<Vec<&str>> = section
            .lines()
            .take_while(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with("| `") || l.starts_with("| —"))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        assert!(rows.len() > 10, "the configuration table was not found: {rows:?}");
        let root = command();
        let serve = root.find_subcommand("serve").expect("a serve command").clone();
        let mut problems = Vec::new();
        let mut listed_envs = Vec::new();
        for row in &rows {
            let (flags, envs, defaults) = (ticked(row[0]), ticked(row[1]), row[2]);
            listed_envs.extend(envs.iter().cloned());
            let mut row_envs = Vec::new();
            for f in &flags {
                let (cmd, long) = match f.strip_prefix("serve ") {
                    Some(l) => (&serve, l),
                    None => (&root, f.as_str()),
                };
                let Some(arg) = cmd.get_arguments().find(|a| a.get_long().is_some_and(|l| format!("--{l}") == long)) else {
                    problems.push(format!("{f}: no such flag"));
                    continue;
                };
                row_envs.extend(arg.get_env().map(|e| e.to_string_lossy().into_owned()));
                // A switch's default (`false`) is its absence; the row says "off".
                let defaults_of_value = if arg.get_action().takes_values() { arg.get_default_values() } else { &[] };
                for d in defaults_of_value {
                    let d = d.to_string_lossy();
                    if !defaults.contains(&format!("`{d}`")) {
                        problems.push(format!("{f}: the binary's default is `{d}`, the row says {defaults}"));
                    }
                }
            }
            if !flags.is_empty() {
                let (mut a, mut b) = (row_envs.clone(), envs.clone());
                a.sort();
                b.sort();
                if a != b {
                    problems.push(format!("{}: the binary reads {row_envs:?}, the row says {envs:?}", flags.join(", ")));
                }
            }
        }
        for cmd in [&root, &serve] {
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(e) = a.get_env().map(|e| e.to_string_lossy().into_owned())
                    && !listed_envs.contains(&e)
                {
                    problems.push(format!("{} --{} ({e}) has no row", cmd.get_name(), a.get_long().unwrap_or_default()));
                }
            }
        }
        assert!(problems.is_empty(), "README's configuration table and the binary disagree: {problems:#?}");
    }
}
