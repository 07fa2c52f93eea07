//! Which paths are taken: by queue entries being pushed, or by changes not pushed yet. A path
//! overlaps a taken one when it is the same, above it or below it.

use std::collections::HashSet;

use crate::paths::parent;

/// Paths taken by earlier or running entries; a later entry that touches one of them, an
/// ancestor or a descendant, waits. Each check costs the depth of the path.
#[derive(Default)]
pub(crate) struct Busy {
    exact: HashSet<String>,
    ancestors: HashSet<String>,
}

impl Busy {
    pub(crate) fn add(&mut self, path: &str, dest: Option<&str>) {
        for p in std::iter::once(path).chain(dest) {
            let mut a = p;
            while !a.is_empty() {
                a = parent(a);
                if !self.ancestors.insert(a.to_string()) {
                    break; // the rest of the chain is there already
                }
            }
            self.exact.insert(p.to_string());
        }
    }

    pub(crate) fn overlaps(&self, path: &str) -> bool {
        if self.exact.contains(path) || self.ancestors.contains(path) {
            return true;
        }
        let mut a = path;
        while !a.is_empty() {
            a = parent(a);
            if self.exact.contains(a) {
                return true;
            }
        }
        false
    }
}
