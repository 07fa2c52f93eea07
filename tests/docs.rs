//! Doc tests of another kind: the man pages and docs must stay true to the code.
//!
//! - Every flag of every subcommand in `src/cli.rs` (read through clap's `CommandFactory`) is
//!   documented in `man/cloudsync.1`, and every flag the man page's SYNOPSIS and OPTIONS name
//!   exists.
//! - Every key of `FileConfig` in `src/config.rs` (read through serde, so a new key cannot be
//!   forgotten) is documented in `man/cloudsync.toml.5`, every key documented there exists,
//!   the documented types deserialize, the documented defaults are the code's, and the example
//!   file is valid.
//! - The failure codes, the status xattrs and the built-in ignore patterns appear in the docs
//!   that promise them.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory;
use serde::Deserialize;
use serde::de::{self, Visitor};

use cloudsync::cli::Cli;
use cloudsync::config::{DEFAULT_PULL_INTERVAL, DEFAULT_PUSH_DELAY, DEFAULT_TRANSFERS, FileConfig};

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

/// The flags of the CLI, per subcommand: (subcommand, long flags, short flags), hidden ones left
/// out.
fn cli_flags() -> Vec<(String, Vec<String>, Vec<char>)> {
    let cmd = Cli::command();
    cmd.get_subcommands()
        .map(|sub| {
            let args: Vec<_> = sub.get_arguments().filter(|a| !a.is_hide_set()).collect();
            (
                sub.get_name().to_string(),
                args.iter()
                    .filter_map(|a| a.get_long())
                    .map(|l| format!("--{l}"))
                    .collect(),
                args.iter().filter_map(|a| a.get_short()).collect(),
            )
        })
        .collect()
}

#[test]
fn man_page_documents_every_flag() {
    let man = roff_text(&read("man/cloudsync.1"));
    let subs = cli_flags();
    assert!(!subs.is_empty());
    for (sub, longs, shorts) in &subs {
        assert!(
            man.contains(&format!(".SS \"cloudsync {sub}\"")),
            "man/cloudsync.1 has no section for `cloudsync {sub}`"
        );
        let synopsis = section(&man, ".SH SYNOPSIS", &[".SH "]);
        assert!(
            synopsis.contains(&format!(".B {sub}\n")),
            "the SYNOPSIS of man/cloudsync.1 lacks `cloudsync {sub}`"
        );
        let options = section(
            &man,
            &format!(".SS \"Options of cloudsync {sub}\""),
            &[".SS ", ".SH "],
        );
        for l in longs {
            assert!(
                has_flag(options, l),
                "man/cloudsync.1 does not document `cloudsync {sub} {l}` under OPTIONS"
            );
            assert!(
                has_flag(synopsis, l),
                "the SYNOPSIS of man/cloudsync.1 lacks `cloudsync {sub} {l}`"
            );
        }
        for s in shorts {
            let f = format!("-{s}");
            assert!(
                has_flag(options, &f) && has_flag(synopsis, &f),
                "man/cloudsync.1 does not document `cloudsync {sub} {f}` in SYNOPSIS and OPTIONS"
            );
        }
    }
}

#[test]
fn man_page_names_no_flag_that_does_not_exist() {
    let man = roff_text(&read("man/cloudsync.1"));
    let mut known: BTreeSet<String> = ["--help", "--version"].map(String::from).into();
    for (_, longs, _) in cli_flags() {
        known.extend(longs);
    }
    for part in [
        section(&man, ".SH SYNOPSIS", &[".SH "]),
        section(&man, ".SH OPTIONS", &[".SH "]),
    ] {
        for f in long_flags_in(part) {
            assert!(
                known.contains(&f),
                "man/cloudsync.1 documents {f}, which cloudsync does not have"
            );
        }
    }
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

/// The KEYS section of cloudsync.toml(5): each key with its documented type and its entry text.
fn documented_keys(man: &str) -> Vec<(String, String, String)> {
    let keys = section(man, ".SH KEYS", &[".SH "]);
    let mut out = Vec::new();
    let entries: Vec<&str> = keys.split("\n.TP\n").skip(1).collect();
    for e in entries {
        let first = e.lines().next().unwrap_or_default();
        let Some(rest) = first.strip_prefix(".BR ") else {
            panic!(
                "a KEYS entry of man/cloudsync.toml.5 does not start with `.BR key \"(type)\"`: {first}"
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
        "string, a path" => "\"/srv/x\"",
        "string, a URL" => "\"file:///srv/cloud\"",
        "string, a duration" => "\"2s\"",
        "string" => "\"x\"",
        "array of strings" => "[\"rw\"]",
        "integer" => "4",
        "boolean" => "true",
        other => panic!("man/cloudsync.toml.5 uses a type this test does not know: {other:?}"),
    }
}

#[test]
fn config_man_page_documents_every_key_with_its_type() {
    let man = roff_text(&read("man/cloudsync.toml.5"));
    let code: BTreeSet<&str> = config_keys().into_iter().collect();
    let docs = documented_keys(&man);
    let documented: BTreeSet<&str> = docs.iter().map(|(k, _, _)| k.as_str()).collect();
    for k in &code {
        assert!(
            documented.contains(k),
            "man/cloudsync.toml.5 does not document the key `{k}`"
        );
    }
    for k in &documented {
        assert!(
            code.contains(k),
            "man/cloudsync.toml.5 documents `{k}`, which FileConfig does not have"
        );
    }
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
    let docs = documented_keys(&man5);
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
fn config_example_is_a_valid_file() {
    let man = roff_text(&read("man/cloudsync.toml.5"));
    let example = section(&man, ".SH EXAMPLE", &[".SH "]);
    let body = example
        .split_once("\n.EX\n")
        .and_then(|(_, b)| b.split_once("\n.EE"))
        .map(|(b, _)| b)
        .expect("an .EX/.EE block under EXAMPLE");
    if let Err(e) = toml::from_str::<FileConfig>(body) {
        panic!("the example in man/cloudsync.toml.5 is not a valid config file:\n{body}\n{e}");
    }
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
    use cloudsync::status::{XATTR_ERROR, XATTR_ETAG, XATTR_STATUS, XATTR_SYNCED_AT};
    for x in [XATTR_STATUS, XATTR_ERROR, XATTR_SYNCED_AT, XATTR_ETAG] {
        for (name, text) in [("README.md", &readme), ("doc/SEMANTICS.md", &semantics)] {
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
