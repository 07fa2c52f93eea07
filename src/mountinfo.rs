//! The mount table, as `/proc/self/mountinfo` gives it: where each mount is, its type and its
//! source. A cloudsync mount is a FUSE mount whose source is `cloudsync:ONPREM`.

use std::path::{Path, PathBuf};

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The filesystem type, `fuse` or `fuse.NAME` for FUSE.
    pub fstype: String,
    /// The source, `cloudsync:ONPREM` for a cloudsync mount.
    pub source: String,
}

impl MountEntry {
    /// True for the mount of a cloudsync daemon.
    pub fn is_cloudsync(&self) -> bool {
        self.fstype.starts_with("fuse") && self.source.starts_with("cloudsync:")
    }
}

/// Every mount this process sees; none when the table cannot be read.
pub fn entries() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse).collect()
}

/// True when `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    entries().iter().any(|e| e.mountpoint == path)
}

/// The mount points of the cloudsync mounts.
pub fn cloudsync_mounts() -> Vec<PathBuf> {
    entries()
        .into_iter()
        .filter(MountEntry::is_cloudsync)
        .map(|e| e.mountpoint)
        .collect()
}

/// One mountinfo line: the mount point is the fifth field; the type and the source follow the
/// ` - ` separator.
fn parse(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let mut it = post.split(' ');
    let (fstype, source) = (it.next()?, it.next()?);
    Some(MountEntry {
        mountpoint: PathBuf::from(unescape(pre.split(' ').nth(4)?)),
        fstype: unescape(fstype),
        source: unescape(source),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) if b[i] == b'\\' => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_escapes() {
        let l = r"36 25 0:45 / /mnt/my\040docs\134x rw,nosuid shared:1 - fuse cloudsync:/srv/a\040b rw,user_id=0";
        let e = parse(l).unwrap();
        assert_eq!(e.mountpoint, PathBuf::from("/mnt/my docs\\x"));
        assert_eq!(e.source, "cloudsync:/srv/a b");
        assert!(e.is_cloudsync());
        let other = parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw").unwrap();
        assert!(!other.is_cloudsync());
        assert_eq!(other.mountpoint, PathBuf::from("/"));
        assert!(parse("garbage").is_none());
    }
}
