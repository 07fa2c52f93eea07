//! Relative paths as the whole program writes them: `/`-separated, no leading or trailing
//! slash, `""` for the root. On-premise paths, cloud paths and sync-set paths all use this one
//! shape, so these helpers sit below every other module and import nothing of the program.

/// True when `path` is a plain relative path: no empty, `.` or `..` component, no NUL, no
/// leading or trailing `/` (`""`, the root, is plain).
pub fn is_plain(path: &str) -> bool {
    path.is_empty()
        || (!path.starts_with('/')
            && !path.ends_with('/')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0')))
}

/// Joins a folder path and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent folder of a relative path (`""` for top-level items).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// True when `path` is `ancestor` or lies below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths() {
        for ok in ["", "a", "a/b.txt", "a b/ü"] {
            assert!(is_plain(ok), "{ok:?}");
        }
        for bad in ["/etc", "a/../b", "..", "a//b", "a/./b", "a\0b", "a/"] {
            assert!(!is_plain(bad), "{bad:?}");
        }
    }

    #[test]
    fn within() {
        assert!(is_within("a/b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
        assert!(is_within("x", ""));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
    }
}
