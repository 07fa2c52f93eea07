//! Doc tests of another kind: the man pages and docs must stay true to the code.
//!
//! - Every subcommand of `src/cli.rs` (read through clap's `CommandFactory`) has its own
//!   SYNOPSIS block, a COMMANDS section and an OPTIONS section in `man/cloudsync.1`. Each
//!   block names the subcommand's positional arguments and flags, each OPTIONS section has an
//!   entry for every flag, an entry names only flags of its own subcommand, and a flag with a
//!   default documents that default. No flag is named that does not exist.
//! - Every key of `FileConfig` in `src/config.rs`, and every option of a `[[sync_set]]` table
//!   (`SetConfig` in `src/sync/sets.rs`), is read through serde, so a new one cannot be
//!   forgotten: each is documented in `man/cloudsync.toml.5`, everything documented there
//!   exists, the documented types deserialize, the documented defaults are the code's, and
//!   every example file is valid, sync sets included.
//! - The status words, failure codes, status xattrs and built-in ignore patterns appear in the
//!   docs that promise them.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{ArgAction, CommandFactory};
use serde::Deserialize;
use serde::de::{self, Visitor};

use cloudsync::cli::Cli;
use cloudsync::config::{DEFAULT_PULL_INTERVAL, DEFAULT_PUSH_DELAY, DEFAULT_TRANSFERS, FileConfig};
use cloudsync::status::Status;
use cloudsync::sync::reconcile::Winner;
use cloudsync::sync::sets::{SetConfig, SyncSets};

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Roff source with comments dropped and the escapes these pages use turned into plain text,
/// so that `\-\-state\-dir` reads `--state-dir`. Macro lines keep their leading `.`.
fn roff_text(src: &str) -> String {
    let mut out = String::new();
    for line in src.lines().filter(|l| !l.starts_with(".\\\"")) {
        let mut l = line.to_string();
        for (from, to) in [
            ("\\fB", ""),
            ("\\fI", ""),
            ("\\fR", ""),
            ("\\fP", ""),
            ("\\-", "-"),
            ("\\(ti", "~"),
            ("\\(dq", "\""),
            ("\\(aq", "'"),
            ("\\(lq", "\""),
            ("\\(rq", "\""),
            ("\\(bu", "*"),
            ("\\%", ""),
            ("\\&", ""),
            ("\\ ", " "),
            ("\\e", "\\"),
        ] {
            l = l.replace(from, to);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The part of `text` from the line starting with `from` up to the next line starting with
/// any of `to` (or the end).
fn section<'a>(text: &'a str, from: &str, to: &[&str]) -> &'a str {
    let start = text
        .find(&format!("\n{from}"))
        .unwrap_or_else(|| panic!("no {from:?} in the page"))
        + 1;
    let rest = &text[start + from.len()..];
    let end = to
        .iter()
        .filter_map(|t| rest.find(&format!("\n{t}")))
        .min()
        .unwrap_or(rest.len());
    &text[start..start + from.len() + end]
}

/// True when `needle` occurs in `hay` as a whole flag: not followed by a letter, digit or `-`.
fn has_flag(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Every `--long-flag` written in `text`.
fn long_flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        if text[..i].ends_with('-') {
            continue;
        }
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if !name.is_empty() {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// One subcommand as clap defines it, hidden arguments left out.
struct Sub {
    name: String,
    /// Long flags, as `--name`.
    longs: Vec<String>,
    /// Short flags.
    shorts: Vec<char>,
    /// Positional arguments, as the man page writes them: `paths` is `PATH`.
    positionals: Vec<String>,
    /// Flags with a default value: (`--name`, default).
    defaults: Vec<(String, String)>,
}

/// The subcommands of the CLI.
fn cli_subs() -> Vec<Sub> {
    let cmd = Cli::command();
    cmd.get_subcommands()
        .map(|sub| {
            // Hidden arguments, and --help where clap has added it, are left out.
            let args: Vec<_> = sub
                .get_arguments()
                .filter(|a| {
                    !a.is_hide_set()
                        && !matches!(
                            a.get_action(),
                            ArgAction::Help
                                | ArgAction::HelpShort
                                | ArgAction::HelpLong
                                | ArgAction::Version
                        )
                })
                .collect();
            Sub {
                name: sub.get_name().to_string(),
                longs: args
                    .iter()
                    .filter_map(|a| a.get_long())
                    .map(|l| format!("--{l}"))
                    .collect(),
                shorts: args.iter().filter_map(|a| a.get_short()).collect(),
                positionals: args
                    .iter()
                    .filter(|a| a.is_positional())
                    .map(|a| {
                        let id = a.get_id().as_str().to_uppercase();
                        match id.strip_suffix('S') {
                            Some(one) if matches!(a.get_action(), ArgAction::Append) => {
                                one.to_string()
                            }
                            _ => id,
                        }
                    })
                    .collect(),
                defaults: args
                    .iter()
                    .filter(|a| a.get_action().takes_values())
                    .filter_map(|a| {
                        let long = a.get_long()?;
                        let d = a.get_default_values().first()?;
                        Some((format!("--{long}"), d.to_string_lossy().into_owned()))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The SYNOPSIS block of one subcommand: from `.SY cloudsync` / `.B sub` to `.YS`.
fn synopsis_of<'a>(man: &'a str, sub: &str) -> &'a str {
    let synopsis = section(man, ".SH SYNOPSIS", &[".SH "]);
    let head = format!("\n.SY cloudsync\n.B {sub}\n");
    let start = synopsis
        .find(&head)
        .unwrap_or_else(|| panic!("the SYNOPSIS of man/cloudsync.1 lacks `cloudsync {sub}`"));
    let rest = &synopsis[start + 1..];
    &rest[..rest.find("\n.YS").unwrap_or(rest.len())]
}

/// The entries of an OPTIONS section: the header line after each `.TP`, and the entry text.
fn entries(section: &str) -> Vec<(&str, &str)> {
    section
        .split("\n.TP")
        .skip(1)
        .map(|e| {
            let e = e.trim_start_matches(|c: char| c == ' ' || c.is_ascii_digit());
            let e = e.strip_prefix('\n').unwrap_or(e);
            (e.lines().next().unwrap_or_default(), e)
        })
        .collect()
}

#[test]
fn man_page_documents_every_subcommand_and_flag() {
    let man = roff_text(&read("man/cloudsync.1"));
    let subs = cli_subs();
    assert!(
        subs.len() >= 8,
        "clap reported only {} subcommands",
        subs.len()
    );
    for sub in &subs {
        let name = &sub.name;
        assert!(
            man.contains(&format!(".SS \"cloudsync {name}\"")),
            "man/cloudsync.1 has no COMMANDS section for `cloudsync {name}`"
        );
        let synopsis = synopsis_of(&man, name);
        let options = section(
            &man,
            &format!(".SS \"Options of cloudsync {name}\""),
            &[".SS ", ".SH "],
        );
        for p in &sub.positionals {
            assert!(
                synopsis.contains(p.as_str()),
                "the SYNOPSIS of `cloudsync {name}` lacks its argument {p}"
            );
        }
        for l in &sub.longs {
            assert!(
                has_flag(options, l),
                "man/cloudsync.1 does not document `cloudsync {name} {l}` under OPTIONS"
            );
            assert!(
                has_flag(synopsis, l),
                "the SYNOPSIS of `cloudsync {name}` lacks {l}"
            );
        }
        for s in &sub.shorts {
            let f = format!("-{s}");
            assert!(
                has_flag(options, &f) && has_flag(synopsis, &f),
                "man/cloudsync.1 does not document `cloudsync {name} {f}` in SYNOPSIS and OPTIONS"
            );
        }
        // An entry's header names flags of its own subcommand only.
        for (header, _) in entries(options) {
            for f in long_flags_in(header) {
                assert!(
                    sub.longs.contains(&f),
                    "man/cloudsync.1 lists {f} under the options of `cloudsync {name}`, which has no such flag"
                );
            }
        }
        for f in long_flags_in(synopsis) {
            assert!(
                sub.longs.contains(&f),
                "the SYNOPSIS of `cloudsync {name}` names {f}, which it does not have"
            );
        }
        // A flag with a default documents it.
        for (flag, want) in &sub.defaults {
            let (_, e) = entries(options)
                .into_iter()
                .find(|(h, _)| has_flag(h, flag))
                .unwrap_or_else(|| panic!("`cloudsync {name} {flag}` has no entry"));
            let got = default_in(&e.replace('\n', " ")).unwrap_or_else(|| {
                panic!("`cloudsync {name} {flag}` has no default in man/cloudsync.1")
            });
            assert!(
                starts_with_word(&got, want),
                "man/cloudsync.1 gives `cloudsync {name} {flag}` the default {got:?}, the code {want:?}"
            );
        }
    }
}

#[test]
fn man_page_names_no_flag_that_does_not_exist() {
    let man = roff_text(&read("man/cloudsync.1"));
    let mut known: BTreeSet<String> = ["--help", "--version"].map(String::from).into();
    for sub in cli_subs() {
        known.extend(sub.longs);
    }
    for (name, part) in [
        ("SYNOPSIS", section(&man, ".SH SYNOPSIS", &[".SH "])),
        ("DESCRIPTION", section(&man, ".SH DESCRIPTION", &[".SH "])),
        ("COMMANDS", section(&man, ".SH COMMANDS", &[".SH "])),
        ("OPTIONS", section(&man, ".SH OPTIONS", &[".SH "])),
        ("EXIT STATUS", section(&man, ".SH EXIT STATUS", &[".SH "])),
    ] {
        for f in long_flags_in(part) {
            assert!(
                known.contains(&f),
                "man/cloudsync.1 names {f} in {name}, which cloudsync does not have"
            );
        }
    }
    // The examples also run other tools; each `cloudsync SUB ...` command in them (with its
    // continuation lines) uses flags of SUB only.
    let subs = cli_subs();
    let examples = section(&man, ".SH EXAMPLES", &[".SH "]).replace("\\\n", " ");
    let mut commands = 0;
    for line in examples.lines() {
        for (at, _) in line.match_indices("cloudsync ") {
            let rest = &line[at + "cloudsync ".len()..];
            let word = rest.split_whitespace().next().unwrap_or_default();
            let Some(sub) = subs.iter().find(|s| s.name == word) else {
                continue;
            };
            commands += 1;
            // Up to the end of the command: a pipe, `;`, `)` or the end of the line.
            let end = rest.find(['|', ';', ')']).unwrap_or(rest.len());
            for f in long_flags_in(&rest[..end]) {
                assert!(
                    sub.longs.contains(&f),
                    "an example in man/cloudsync.1 runs `cloudsync {word} {f}`, which it does not have"
                );
            }
        }
    }
    assert!(
        commands > 5,
        "the EXAMPLES of man/cloudsync.1 run cloudsync only {commands} times"
    );
}

/// A deserializer that answers nothing but records the field names serde asks it for.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs are read here"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("field names taken"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys of the config file, as serde sees `FileConfig`.
fn config_keys() -> Vec<&'static str> {
    let mut keys = Vec::new();
    let _ = FileConfig::deserialize(FieldNames(&mut keys));
    assert!(!keys.is_empty(), "serde reported no fields of FileConfig");
    keys
}

/// The options of a `[[sync_set]]` table, as serde sees `SetConfig`.
fn set_keys() -> Vec<&'static str> {
    let mut keys = Vec::new();
    let _ = SetConfig::deserialize(FieldNames(&mut keys));
    assert!(!keys.is_empty(), "serde reported no fields of SetConfig");
    keys
}

/// The entries of a section of cloudsync.toml(5) (`.SH KEYS` or `.SH SYNC SETS`): each key
/// with its documented type and its entry text.
fn documented_keys(man: &str, heading: &str) -> Vec<(String, String, String)> {
    let keys = section(man, heading, &[".SH "]);
    let mut out = Vec::new();
    let entries: Vec<&str> = keys.split("\n.TP\n").skip(1).collect();
    for e in entries {
        let first = e.lines().next().unwrap_or_default();
        let Some(rest) = first.strip_prefix(".BR ") else {
            panic!(
                "an entry under {heading} of man/cloudsync.toml.5 does not start with `.BR key \"(type)\"`: {first}"
            );
        };
        let (key, ty) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("no type after the key in {first:?}"));
        let ty = ty.trim().trim_matches('"').trim();
        let ty = ty
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("the type of {key} is not in parentheses: {ty:?}"));
        out.push((key.to_string(), ty.to_string(), e.to_string()));
    }
    out
}

/// A TOML value of the documented type.
fn sample(ty: &str) -> &'static str {
    match ty {
        "string, a path" => "\"srv/x\"",
        "string, a URL" => "\"file:///srv/cloud\"",
        "string, a duration" => "\"2s\"",
        "string" => "\"x\"",
        "array of strings" => "[\"rw\"]",
        "array of tables" => "[{ path = \"x\" }]",
        "integer" => "4",
        "boolean" => "true",
        other => panic!("man/cloudsync.toml.5 uses a type this test does not know: {other:?}"),
    }
}

/// Checks that the documented keys are exactly the code's.
fn same_keys(what: &str, code: &[&str], docs: &[(String, String, String)]) {
    let code: BTreeSet<&str> = code.iter().copied().collect();
    let documented: BTreeSet<&str> = docs.iter().map(|(k, _, _)| k.as_str()).collect();
    for k in &code {
        assert!(
            documented.contains(k),
            "man/cloudsync.toml.5 does not document the {what} `{k}`"
        );
    }
    for k in &documented {
        assert!(
            code.contains(k),
            "man/cloudsync.toml.5 documents the {what} `{k}`, which the code does not have"
        );
    }
}

#[test]
fn config_man_page_documents_every_key_with_its_type() {
    let man = roff_text(&read("man/cloudsync.toml.5"));
    let docs = documented_keys(&man, ".SH KEYS");
    same_keys("key", &config_keys(), &docs);
    // A file setting every key to a value of its documented type is accepted, with unknown
    // keys denied: so the names and the types are right.
    let toml_text: String = docs
        .iter()
        .map(|(k, ty, _)| format!("{k} = {}\n", sample(ty)))
        .collect();
    if let Err(e) = toml::from_str::<FileConfig>(&toml_text) {
        panic!("the documented keys and types do not load:\n{toml_text}\n{e}");
    }
}

#[test]
fn config_man_page_documents_every_sync_set_option_with_its_type() {
    let man = roff_text(&read("man/cloudsync.toml.5"));
    let docs = documented_keys(&man, ".SH SYNC SETS");
    same_keys("sync_set option", &set_keys(), &docs);
    let table: String = docs
        .iter()
        .map(|(k, ty, _)| format!("{k} = {}\n", sample(ty)))
        .collect();
    let toml_text = format!("[[sync_set]]\n{table}");
    if let Err(e) = toml::from_str::<FileConfig>(&toml_text) {
        panic!("the documented sync_set options and types do not load:\n{toml_text}\n{e}");
    }
}

/// The words after `Default` (or `Default:`) in an entry, with macro names dropped.
fn default_in(entry: &str) -> Option<String> {
    let after = entry.split_once("Default")?.1.trim_start_matches(':');
    Some(
        after
            .split_whitespace()
            .filter(|w| !w.starts_with('.'))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// True when `text` starts with `word` and no letter or digit follows it.
fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
}

#[test]
fn documented_defaults_are_the_code_defaults() {
    let man5 = roff_text(&read("man/cloudsync.toml.5"));
    let docs = documented_keys(&man5, ".SH KEYS");
    let entry = |key: &str| {
        docs.iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, e)| e.replace('\n', " "))
            .unwrap_or_else(|| panic!("{key} is not documented"))
    };
    let push = humantime::format_duration(DEFAULT_PUSH_DELAY).to_string();
    let pull = humantime::format_duration(DEFAULT_PULL_INTERVAL).to_string();
    for (key, want) in [
        ("push_delay", format!("\"{push}\"")),
        ("pull_interval", format!("\"{pull}\"")),
        ("transfers", DEFAULT_TRANSFERS.to_string()),
        ("passthrough", "true".to_string()),
        ("log_level", "\"info\"".to_string()),
    ] {
        let e = entry(key);
        let got = default_in(&e)
            .unwrap_or_else(|| panic!("{key} has no `Default:` in man/cloudsync.toml.5"));
        assert!(
            starts_with_word(&got, &want),
            "man/cloudsync.toml.5 gives {key} the default {got:?}, the code {want}"
        );
    }
    let man1 = roff_text(&read("man/cloudsync.1"));
    let options = section(
        &man1,
        ".SS \"Options of cloudsync mount\"",
        &[".SS ", ".SH "],
    );
    for (flag, want) in [
        ("--push-delay", push),
        ("--pull-interval", pull),
        ("--transfers", DEFAULT_TRANSFERS.to_string()),
    ] {
        let at = options
            .find(&format!(".BI {flag} "))
            .unwrap_or_else(|| panic!("{flag} has no entry in man/cloudsync.1"));
        let e = &options[at..];
        let e = &e[..e[1..].find("\n.TP").map_or(e.len(), |i| i + 1)];
        let got =
            default_in(e).unwrap_or_else(|| panic!("{flag} has no default in man/cloudsync.1"));
        assert!(
            starts_with_word(&got, &want),
            "man/cloudsync.1 gives {flag} the default {got:?}, the code {want}"
        );
    }
}

#[test]
fn documented_sync_set_defaults_are_the_code_defaults() {
    let man5 = roff_text(&read("man/cloudsync.toml.5"));
    let docs = documented_keys(&man5, ".SH SYNC SETS");
    let entry = |key: &str| {
        docs.iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, e)| e.replace('\n', " "))
            .unwrap_or_else(|| panic!("the sync_set option {key} is not documented"))
    };
    // A table with nothing but a path gets the code's defaults.
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("a")).unwrap();
    let only_path: FileConfig = toml::from_str("[[sync_set]]\npath = \"a\"\n").unwrap();
    let sets = SyncSets::from_config(&only_path.sync_set.unwrap(), d.path()).unwrap();
    let set = sets.iter().next().unwrap().clone();
    let winner = match set.conflict {
        Winner::Cloud => "\"cloud-wins\"",
        Winner::Onprem => "\"onprem-wins\"",
    };
    for (key, want) in [
        ("include_subfolders", set.include_subfolders.to_string()),
        ("lock_onprem", set.lock_onprem.to_string()),
        ("cloud_delete", set.cloud_delete.to_string()),
        ("onprem_delete", set.onprem_delete.to_string()),
        ("conflict", winner.to_string()),
    ] {
        let e = entry(key);
        let got = default_in(&e)
            .unwrap_or_else(|| panic!("sync_set {key} has no `Default:` in man/cloudsync.toml.5"));
        assert!(
            starts_with_word(&got, &want),
            "man/cloudsync.toml.5 gives sync_set {key} the default {got:?}, the code {want}"
        );
    }
    assert_eq!(
        set.cloud, set.local,
        "the code's default cloud is no longer the path"
    );
    let got = default_in(&entry("cloud")).unwrap_or_default();
    assert!(
        got.starts_with("the same as path"),
        "man/cloudsync.toml.5 gives sync_set cloud the default {got:?}, the code the path"
    );
    // The whole mount as one set has the same defaults.
    let whole = SyncSets::whole();
    let w = whole.iter().next().unwrap();
    assert_eq!(
        (
            w.include_subfolders,
            w.lock_onprem,
            w.cloud_delete,
            w.onprem_delete,
            w.conflict
        ),
        (
            set.include_subfolders,
            set.lock_onprem,
            set.cloud_delete,
            set.onprem_delete,
            set.conflict
        ),
        "the whole-mount set no longer has the documented defaults"
    );
}

#[test]
fn config_examples_are_valid_files() {
    let man = roff_text(&read("man/cloudsync.toml.5"));
    let mut rest = section(&man, ".SH EXAMPLES", &[".SH "]);
    let mut n = 0;
    while let Some((_, b)) = rest.split_once("\n.EX\n") {
        let (body, after) = b.split_once("\n.EE").expect("an .EX without .EE");
        rest = after;
        n += 1;
        let file = toml::from_str::<FileConfig>(body).unwrap_or_else(|e| {
            panic!("an example in man/cloudsync.toml.5 is not a valid config file:\n{body}\n{e}")
        });
        let d = tempfile::tempdir().unwrap();
        // Set paths must exist: a name with an extension is a file, others are folders.
        for set in file.sync_set.as_deref().unwrap_or_default() {
            let p = d.path().join(set.path.trim_start_matches('/'));
            if p.extension().is_some() {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"x").unwrap();
            } else {
                std::fs::create_dir_all(&p).unwrap();
            }
        }
        if let Err(e) =
            SyncSets::from_config(file.sync_set.as_deref().unwrap_or_default(), d.path())
        {
            panic!(
                "the sync sets of an example in man/cloudsync.toml.5 are invalid:\n{body}\n{e:#}"
            );
        }
    }
    assert!(n >= 4, "man/cloudsync.toml.5 has only {n} examples");
}

/// Every status word. The match has no wildcard arm, so a new status fails to compile here
/// until it is added, and then the docs must name it.
fn all_statuses() -> Vec<Status> {
    use Status::*;
    let all = vec![
        Synced,
        Pending,
        Uploading,
        Downloading,
        Offline,
        Failed,
        Conflict,
        Locked,
        Excluded,
        Unsynced,
    ];
    for s in &all {
        match s {
            Synced | Pending | Uploading | Downloading | Offline | Failed | Conflict | Locked
            | Excluded | Unsynced => {}
        }
    }
    all
}

#[test]
fn vocabulary_appears_where_it_is_promised() {
    let man1 = roff_text(&read("man/cloudsync.1"));
    let man5 = roff_text(&read("man/cloudsync.toml.5"));
    let semantics = read("doc/SEMANTICS.md");
    let readme = read("README.md");
    for code in cloudsync::status::FailureCode::ALL {
        for (name, text) in [("man/cloudsync.1", &man1), ("doc/SEMANTICS.md", &semantics)] {
            assert!(
                text.contains(code.as_str()),
                "{name} does not mention the failure code {code}"
            );
        }
    }
    for s in all_statuses() {
        let word = format!("{s}");
        for (name, text) in [
            ("man/cloudsync.1", &man1),
            ("doc/SEMANTICS.md", &semantics),
            ("README.md", &readme),
        ] {
            assert!(
                has_flag(text, &word),
                "{name} does not mention the status word {word}"
            );
        }
    }
    use cloudsync::control::XATTR_CONTROL;
    use cloudsync::status::{XATTR_ERROR, XATTR_ETAG, XATTR_STATUS, XATTR_SYNCED_AT};
    for x in [
        XATTR_STATUS,
        XATTR_ERROR,
        XATTR_SYNCED_AT,
        XATTR_ETAG,
        XATTR_CONTROL,
    ] {
        for (name, text) in [
            ("man/cloudsync.1", &man1),
            ("README.md", &readme),
            ("doc/SEMANTICS.md", &semantics),
        ] {
            assert!(text.contains(x), "{name} does not mention {x}");
        }
    }
    for p in cloudsync::ignore::DEFAULT_PATTERNS {
        for (name, text) in [
            ("man/cloudsync.toml.5", &man5),
            ("doc/SEMANTICS.md", &semantics),
        ] {
            assert!(
                text.contains(p),
                "{name} does not list the built-in ignore pattern {p:?}"
            );
        }
    }
}
