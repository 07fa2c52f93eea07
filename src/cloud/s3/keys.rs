//! Keys and listings: how a cloud path becomes an S3 key under the synced prefix, and how the
//! pages of a delimited ListObjectsV2 become a [`Listing`] of direct children.
//!
//! No key from the store is trusted. A child is refused (counted in [`Listing::skipped`],
//! with the reason) when its key lies outside the listed prefix, when its name is empty, `.`
//! or `..`, holds NUL or `/`, or is longer than a file system takes; when a file `x` and a
//! folder `x/` are both there, the folder wins and the file is skipped as a name clash. The
//! folder's own marker (`prefix/`) is not a child.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rusty_s3::actions::ListObjectsV2Response;

use super::client::normalize_etag;
use crate::cloud::{CloudEntry, Listing, Subtree};

/// The longest name a component may have: what a Linux file system takes.
pub(super) const MAX_NAME: usize = 255;

/// The longest key S3 takes, in bytes.
pub(super) const MAX_KEY: usize = 1024;

/// Why a child name from the store is refused, if it is.
pub(super) fn refuse_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an empty name (a key with `//`)")
    } else if name == "." || name == ".." {
        Some("a `.` or `..` name")
    } else if name.contains('\0') {
        Some("a name holding NUL")
    } else if name.contains('/') {
        Some("a name holding `/`")
    } else if name.len() > MAX_NAME {
        Some("a name longer than 255 bytes")
    } else {
        None
    }
}

/// Gathers the pages of one delimited listing of the folder `dir` (a checked cloud path),
/// whose keys all start with `prefix` (the folder's key, ending in `/`, or the synced prefix
/// for the root).
pub(super) struct Gather<'a> {
    dir: &'a str,
    prefix: &'a str,
    files: BTreeMap<String, CloudEntry>,
    folders: BTreeMap<String, CloudEntry>,
    skipped: Vec<String>,
    /// The folder's own marker was seen.
    pub(super) marker: bool,
}

impl<'a> Gather<'a> {
    pub(super) fn new(dir: &'a str, prefix: &'a str) -> Gather<'a> {
        Gather {
            dir,
            prefix,
            files: BTreeMap::new(),
            folders: BTreeMap::new(),
            skipped: Vec::new(),
            marker: false,
        }
    }

    fn child_path(&self, name: &str) -> String {
        crate::cloud::join(self.dir, name)
    }

    fn skip(&mut self, raw: &str, why: &str) {
        tracing::warn!(key = raw, reason = why, "refused a key in an S3 listing");
        self.skipped.push(format!("{raw} ({why})"));
    }

    /// Takes one page.
    pub(super) fn page(&mut self, page: ListObjectsV2Response) {
        for o in page.contents {
            let Some(name) = o.key.strip_prefix(self.prefix) else {
                self.skip(&o.key, "outside the listed prefix");
                continue;
            };
            if name.is_empty() || name == super::FOLDER_FILE {
                self.marker = true;
                continue;
            }
            if let Some(why) = refuse_name(name) {
                self.skip(&o.key, why);
                continue;
            }
            let entry = CloudEntry {
                path: self.child_path(name),
                is_dir: false,
                size: o.size.unwrap_or(0),
                mtime: o.last_modified.as_deref().and_then(parse_time),
                etag: o.etag.as_deref().and_then(normalize_etag),
                file_id: None,
            };
            self.files.insert(name.to_string(), entry);
        }
        for p in page.common_prefixes {
            let Some(name) = p
                .prefix
                .strip_prefix(self.prefix)
                .and_then(|n| n.strip_suffix('/'))
            else {
                self.skip(&p.prefix, "outside the listed prefix");
                continue;
            };
            if let Some(why) = refuse_name(name) {
                self.skip(&p.prefix, why);
                continue;
            }
            let entry = CloudEntry {
                path: self.child_path(name),
                is_dir: true,
                size: 0,
                mtime: None,
                etag: None,
                file_id: None,
            };
            self.folders.insert(name.to_string(), entry);
        }
    }

    /// True when the listing saw anything at all under the prefix.
    pub(super) fn saw_anything(&self) -> bool {
        self.marker
            || !self.files.is_empty()
            || !self.folders.is_empty()
            || !self.skipped.is_empty()
    }

    /// The listing: folders win over files of the same name.
    pub(super) fn finish(mut self) -> Listing {
        let clashes: Vec<String> = self
            .files
            .keys()
            .filter(|n| self.folders.contains_key(*n))
            .cloned()
            .collect();
        let mut clashed = Vec::new();
        for n in clashes {
            if let Some(f) = self.files.remove(&n) {
                clashed.push(f.path);
            }
            let key = format!("{}{n}", self.prefix);
            self.skip(
                &key,
                "name clash: a folder of the same name exists, and the folder wins",
            );
        }
        let mut entries: Vec<CloudEntry> = self.folders.into_values().collect();
        entries.extend(self.files.into_values());
        Listing {
            entries,
            skipped: self.skipped,
            clashes: clashed,
        }
    }
}

/// Gathers the pages of one flat (undelimited) listing of everything below the folder `dir`
/// (a checked cloud path), whose keys all start with `prefix`. Folders come from the keys:
/// each component before the last of a key is a folder, a key ending in `/` is a folder's
/// marker, and so is a [`super::FOLDER_FILE`] object. A key is refused (skipped, with the
/// reason) as a delimited listing would refuse it: outside the prefix, longer than S3 takes,
/// or with a component that [`refuse_name`] refuses; the folders above the bad component
/// still show, as they do in delimited listings.
pub(super) struct Flat<'a> {
    dir: &'a str,
    prefix: &'a str,
    /// Files by path below `dir`.
    files: BTreeMap<String, CloudEntry>,
    /// Folders by path below `dir`.
    folders: std::collections::BTreeSet<String>,
    skipped: Vec<String>,
    saw: bool,
}

impl<'a> Flat<'a> {
    pub(super) fn new(dir: &'a str, prefix: &'a str) -> Flat<'a> {
        Flat {
            dir,
            prefix,
            files: BTreeMap::new(),
            folders: std::collections::BTreeSet::new(),
            skipped: Vec::new(),
            saw: false,
        }
    }

    fn skip(&mut self, raw: &str, why: &str) {
        tracing::warn!(key = raw, reason = why, "refused a key in an S3 listing");
        self.skipped.push(format!("{raw} ({why})"));
    }

    /// Takes one page.
    pub(super) fn page(&mut self, page: ListObjectsV2Response) {
        for o in page.contents {
            let Some(rest) = o.key.strip_prefix(self.prefix) else {
                self.skip(&o.key, "outside the listed prefix");
                continue;
            };
            self.saw = true;
            if rest.is_empty() {
                // The folder's own marker.
                continue;
            }
            if o.key.len() > MAX_KEY {
                self.skip(&o.key, "a key longer than S3's 1024 bytes");
                continue;
            }
            // The folders the key lies in, and its own name (none for a `name/` marker).
            let (dirs, name) = match rest.strip_suffix('/') {
                Some(d) => (d, None),
                None => match rest.rsplit_once('/') {
                    Some((d, n)) => (d, Some(n)),
                    None => ("", Some(rest)),
                },
            };
            let mut refused = None;
            if !dirs.is_empty() {
                let mut end = 0;
                for comp in dirs.split('/') {
                    if let Some(why) = refuse_name(comp) {
                        refused = Some(why);
                        break;
                    }
                    end += comp.len();
                    if !self.folders.contains(&dirs[..end]) {
                        self.folders.insert(dirs[..end].to_string());
                    }
                    end += 1;
                }
            }
            if let Some(why) = refused {
                self.skip(&o.key, why);
                continue;
            }
            let Some(name) = name.filter(|n| *n != super::FOLDER_FILE) else {
                continue;
            };
            if let Some(why) = refuse_name(name) {
                self.skip(&o.key, why);
                continue;
            }
            let entry = CloudEntry {
                path: crate::cloud::join(self.dir, rest),
                is_dir: false,
                size: o.size.unwrap_or(0),
                mtime: o.last_modified.as_deref().and_then(parse_time),
                etag: o.etag.as_deref().and_then(normalize_etag),
                file_id: None,
            };
            self.files.insert(rest.to_string(), entry);
        }
    }

    /// True when the listing saw anything at all under the prefix.
    pub(super) fn saw_anything(&self) -> bool {
        self.saw
    }

    /// Everything found: folders win over files of the same path.
    pub(super) fn finish(mut self, requests: u64) -> Subtree {
        let clashes: Vec<String> = self
            .files
            .keys()
            .filter(|p| self.folders.contains(*p))
            .cloned()
            .collect();
        let mut clashed = Vec::new();
        for p in clashes {
            self.files.remove(&p);
            clashed.push(crate::cloud::join(self.dir, &p));
            let key = format!("{}{p}", self.prefix);
            self.skip(
                &key,
                "name clash: a folder of the same name exists, and the folder wins",
            );
        }
        let dir = self.dir;
        let mut entries: Vec<CloudEntry> = self
            .folders
            .into_iter()
            .map(|p| CloudEntry {
                path: crate::cloud::join(dir, &p),
                is_dir: true,
                size: 0,
                mtime: None,
                etag: None,
                file_id: None,
            })
            .collect();
        entries.extend(self.files.into_values());
        Subtree {
            entries,
            skipped: self.skipped,
            clashes: clashed,
            requests,
        }
    }
}

/// An ISO 8601 time of a listing (`2026-12-01T12:00:00.000Z`).
pub(super) fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(xml_keys: &[&str], prefixes: &[&str]) -> ListObjectsV2Response {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>",
        );
        for k in xml_keys {
            xml.push_str(&format!(
                "<Contents><Key>{k}</Key><LastModified>2026-12-01T12:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size></Contents>"
            ));
        }
        for p in prefixes {
            xml.push_str(&format!(
                "<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>"
            ));
        }
        xml.push_str("</ListBucketResult>");
        rusty_s3::actions::ListObjectsV2::parse_response(&xml).unwrap()
    }

    #[test]
    fn hostile_keys_are_skipped_and_folders_win() {
        let mut g = Gather::new("d", "pre/d/");
        g.page(page(
            &[
                "pre/d/",
                "pre/d/ok.txt",
                "pre/d/x",
                "other/evil",
                "pre/d/..",
                "pre/d/nul%00",
            ],
            &["pre/d/x/", "pre/d//", "pre/d/../", "pre/d/sub/"],
        ));
        assert!(g.marker);
        let l = g.finish();
        let paths: Vec<_> = l
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.is_dir))
            .collect();
        assert_eq!(paths, [("d/sub", true), ("d/x", true), ("d/ok.txt", false)]);
        assert_eq!(l.skipped.len(), 6, "{:?}", l.skipped);
        assert!(l.skipped.iter().any(|s| s.contains("name clash")));
        assert_eq!(l.clashes, ["d/x"]);
        let f = &l.entries[2];
        assert_eq!(f.etag.as_deref(), Some("\"abc\""));
        assert_eq!(f.size, 3);
        assert!(f.mtime.is_some());
    }

    #[test]
    fn flat_listings_refuse_hostile_keys_and_make_folders_of_keys() {
        let mut f = Flat::new("d", "pre/d/");
        let long = format!("pre/d/{}", "y/".repeat(520));
        f.page(page(
            &[
                "pre/d/",
                "pre/d/top.txt",
                "pre/d/a/b/c.txt",
                "pre/d/empty/",
                "pre/d/s3s/.cloudsync-folder",
                "pre/d/x",
                "pre/d/x/in",
                "other/evil",
                "pre/d/bad/../up",
                "pre/d/two//slashes",
                "pre/d/..",
                "pre/d/nul%00/f",
                &long,
            ],
            &[],
        ));
        assert!(f.saw_anything());
        let t = f.finish(1);
        let mut shown: Vec<_> = t
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.is_dir))
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                ("d/a", true),
                ("d/a/b", true),
                ("d/a/b/c.txt", false),
                ("d/bad", true),
                ("d/empty", true),
                ("d/s3s", true),
                ("d/top.txt", false),
                ("d/two", true),
                ("d/x", true),
                ("d/x/in", false),
            ]
        );
        // outside, `..` below bad, `//`, `..`, NUL, too long, and the clash of x.
        assert_eq!(t.skipped.len(), 7, "{:?}", t.skipped);
        assert!(t.skipped.iter().any(|s| s.contains("name clash")));
        assert_eq!(t.clashes, ["d/x"]);
        assert!(t.skipped.iter().any(|s| s.starts_with("other/evil")));
        assert_eq!(t.requests, 1);
    }

    #[test]
    fn names() {
        assert!(refuse_name("a").is_none());
        for bad in ["", ".", "..", "a\0b", "a/b"] {
            assert!(refuse_name(bad).is_some(), "{bad:?}");
        }
        assert!(refuse_name(&"x".repeat(256)).is_some());
    }
}
