//! An in-memory cloud, for engine tests: every item is held in a map, with strong ETags,
//! conditions, moves and listings as a careful WebDAV server has them, and faults that tests
//! inject on purpose.
//!
//! A real server is slow to start and cannot be told to fail the third PUT of `a.txt`; this one
//! can. It answers like SabreDAV with content ETags: `If-Match` on a missing item is 404, a
//! mismatch or `If-None-Match: *` on an existing item is 412, a missing parent is 409 and a move
//! onto an existing item is 412. Folder ETags are off by default; [`MemCloud::with_folder_etags`]
//! gives Nextcloud-style ones that change whenever anything below changes.
//!
//! Faults ([`Fault`]) are matched per request by method and path, a given number of times:
//! transient errors, a 412 or 404 from something in between, a 401, an answer lost after the
//! request was carried out, an upload cut short with part of its body stored. Answers can be
//! delayed at random ([`MemCloud::set_delay`]): a read takes its snapshot when the request
//! arrives and answers after the delay, a write waits and then applies, so concurrent requests
//! finish in another order than they started and listings can be stale. Tests change the cloud
//! behind the engine's back through the direct methods ([`MemCloud::write`] and the like),
//! which no fault touches and no request log counts.
//!
//! Nothing in the daemon opens this cloud: no URL names it.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    Cloud, CloudEntry, CloudError, Listing, Precondition, Subtree, Uploaded, check_rel_path,
    is_within,
};

/// The request kinds the engine sends, for matching faults and counting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Cloud::stat`].
    Stat,
    /// [`Cloud::list`].
    List,
    /// [`Cloud::upload`].
    Put,
    /// [`Cloud::get_file`].
    Get,
    /// [`Cloud::mkdir`].
    Mkdir,
    /// [`Cloud::delete`].
    Delete,
    /// [`Cloud::rename`].
    Move,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503; nothing is done.
    Unavailable,
    /// The connection is refused; nothing is done.
    Unreachable,
    /// 412 from something in between (a proxy, a load balancer); nothing is done.
    PreconditionFailed,
    /// 404 from something in between; nothing is done.
    NotFound,
    /// 401; nothing is done.
    Unauthorized,
    /// The request is carried out, then the connection breaks before the answer.
    LostAnswer,
    /// An upload whose condition held stores the first half of its body, then the connection
    /// breaks. On any other request, like [`Fault::Unavailable`].
    PartialUpload,
}

impl Fault {
    fn error(self) -> CloudError {
        match self {
            Fault::Unavailable | Fault::PartialUpload => CloudError::Unavailable { status: 503 },
            Fault::Unreachable => CloudError::Unreachable("connection refused (injected)".into()),
            Fault::PreconditionFailed => CloudError::PreconditionFailed,
            Fault::NotFound => CloudError::NotFound,
            Fault::Unauthorized => CloudError::Unauthorized,
            Fault::LostAnswer => CloudError::Transport("connection reset (injected)".into()),
        }
    }
}

/// A fault for the requests that match it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Only requests of this kind; any when `None`.
    pub method: Option<Method>,
    /// Only requests for this path or below it (a move matches by either end); any when `None`.
    pub path: Option<String>,
    /// What happens to a matching request.
    pub fault: Fault,
    /// How many matching requests it hits; without end when `None`.
    pub times: Option<usize>,
}

impl Rule {
    /// `fault` for every request from now on, until the rules are cleared.
    pub fn always(fault: Fault) -> Rule {
        Rule {
            method: None,
            path: None,
            fault,
            times: None,
        }
    }

    /// `fault` for the next `times` requests of kind `method` at or below `path`.
    pub fn on(method: Method, path: &str, fault: Fault, times: usize) -> Rule {
        Rule {
            method: Some(method),
            path: Some(path.to_string()),
            fault,
            times: Some(times),
        }
    }

    fn matches(&self, m: Method, paths: &[&str]) -> bool {
        self.method.is_none_or(|x| x == m)
            && self
                .path
                .as_deref()
                .is_none_or(|p| paths.iter().any(|q| is_within(q, p)))
            && self.times != Some(0)
    }
}

#[derive(Debug, Clone)]
enum Item {
    File {
        data: Arc<Vec<u8>>,
        etag: String,
        mtime: SystemTime,
        id: u64,
    },
    Dir {
        etag: String,
        mtime: SystemTime,
        id: u64,
    },
}

impl Item {
    fn id(&self) -> u64 {
        match self {
            Item::File { id, .. } | Item::Dir { id, .. } => *id,
        }
    }
}

/// The longest name the in-memory cloud stores, in bytes, as a file system would.
const NAME_MAX: usize = 255;

/// `InvalidName` when a component of `path` is longer than [`NAME_MAX`].
fn check_name(path: &str) -> Result<(), CloudError> {
    match path.split('/').find(|c| c.len() > NAME_MAX) {
        Some(c) => Err(CloudError::InvalidName(format!(
            "a name of {} bytes (at most {NAME_MAX})",
            c.len()
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Default)]
struct State {
    /// Every item but the root, by path.
    items: BTreeMap<String, Item>,
    /// The root folder's ETag.
    root_etag: String,
    next_tag: u64,
    /// The last item id given out: ids stay with an item through moves and edits.
    next_id: u64,
    /// Items report their ids ([`MemCloud::with_file_ids`]).
    ids: bool,
    /// A file's ETag is a hash of its content ([`MemCloud::with_content_etags`]), so files of
    /// the same bytes share it.
    content_etags: bool,
    rules: Vec<Rule>,
    /// Requests that reached the cloud, faulted or not.
    log: Vec<(Method, String)>,
    rng: Option<fastrand::Rng>,
    delay: Duration,
    /// Chance, per request, of a random transient fault.
    chaos: f64,
    /// Items that exist but that no listing can show (as a name that is not UTF-8 is on a
    /// real server): listed as skipped, deleted with their folder.
    unshowable: std::collections::BTreeSet<String>,
    /// Reads held back after taking their snapshot, by method and path.
    holds: Vec<(Method, String, Arc<Hold>)>,
}

/// A read held back between its snapshot and its answer ([`MemCloud::hold`]), so that a test
/// can change the cloud or run the pusher while a pull's listing is on its way.
#[derive(Debug, Default)]
pub struct Hold {
    reached: std::sync::atomic::AtomicBool,
    open: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl Hold {
    /// True once the held read has taken its snapshot and waits.
    pub fn reached(&self) -> bool {
        self.reached.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets the held read answer.
    pub fn release(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    async fn wait(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.reached.store(true, SeqCst);
        while !self.open.load(SeqCst) {
            let woken = self.wake.notified();
            if self.open.load(SeqCst) {
                break;
            }
            woken.await;
        }
    }
}

impl State {
    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("\"m{}\"", self.next_tag)
    }

    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || matches!(self.items.get(path), Some(Item::Dir { .. }))
    }

    /// A change at `path`: every folder above it gets a new ETag.
    fn touched(&mut self, path: &str) {
        let mut p = path;
        while !p.is_empty() {
            p = super::parent(p);
            let tag = self.tag();
            if p.is_empty() {
                self.root_etag = tag;
            } else if let Some(Item::Dir { etag, .. }) = self.items.get_mut(p) {
                *etag = tag;
            }
        }
    }

    fn entry(&self, path: &str, folder_etags: bool) -> Option<CloudEntry> {
        if path.is_empty() {
            return Some(CloudEntry {
                path: String::new(),
                is_dir: true,
                size: 0,
                mtime: None,
                etag: folder_etags.then(|| self.root_etag.clone()),
                file_id: self.ids.then(|| "root".to_string()),
            });
        }
        let item = self.items.get(path)?;
        let file_id = self.ids.then(|| format!("id{}", item.id()));
        Some(match item {
            Item::File {
                data, etag, mtime, ..
            } => CloudEntry {
                path: path.to_string(),
                is_dir: false,
                size: data.len() as u64,
                mtime: Some(*mtime),
                etag: Some(etag.clone()),
                file_id,
            },
            Item::Dir { etag, mtime, .. } => CloudEntry {
                path: path.to_string(),
                is_dir: true,
                size: 0,
                mtime: Some(*mtime),
                etag: folder_etags.then(|| etag.clone()),
                file_id,
            },
        })
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A listing needs a folder: a file there is 409, nothing there 404.
    fn folder_to_list(&self, path: &str) -> Result<(), CloudError> {
        if self.is_dir(path) {
            Ok(())
        } else if self.items.contains_key(path) {
            Err(CloudError::Status {
                status: 409,
                detail: format!("{path} is a file"),
            })
        } else {
            Err(CloudError::NotFound)
        }
    }

    fn children(&self, path: &str) -> impl Iterator<Item = &String> {
        let lo = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        self.items
            .range(lo.clone()..)
            .take_while(move |(k, _)| k.starts_with(&lo))
            .map(|(k, _)| k)
            .filter(move |k| super::parent(k) == path && !k.is_empty())
    }

    fn check(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        let current = self.items.get(path);
        match (cond, current) {
            (Precondition::None, _) | (Precondition::IfNoneMatch, None) => Ok(()),
            (Precondition::IfNoneMatch, Some(_)) => Err(CloudError::PreconditionFailed),
            (Precondition::IfMatch(_), None) => Err(CloudError::NotFound),
            (Precondition::IfMatch(t), Some(Item::File { etag, .. })) if etag == t => Ok(()),
            (Precondition::IfMatch(_), Some(_)) => Err(CloudError::PreconditionFailed),
        }
    }

    fn store(&mut self, path: &str, data: Vec<u8>) -> Result<String, CloudError> {
        if path.is_empty() || matches!(self.items.get(path), Some(Item::Dir { .. })) {
            return Err(CloudError::Status {
                status: 405,
                detail: format!("{path:?} is a folder"),
            });
        }
        if !self.is_dir(super::parent(path)) {
            return Err(CloudError::MissingParent);
        }
        let etag = if self.content_etags {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data.hash(&mut h);
            format!("\"c{:016x}\"", h.finish())
        } else {
            self.tag()
        };
        // An edit keeps the item's id, as Nextcloud keeps a file's.
        let id = match self.items.get(path) {
            Some(item) => item.id(),
            None => self.new_id(),
        };
        self.items.insert(
            path.to_string(),
            Item::File {
                data: Arc::new(data),
                etag: etag.clone(),
                mtime: SystemTime::now(),
                id,
            },
        );
        self.touched(path);
        Ok(etag)
    }

    fn mkdirs(&mut self, path: &str) -> Result<(), CloudError> {
        let mut at = String::new();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            at = super::join(&at, seg);
            match self.items.get(&at) {
                Some(Item::Dir { .. }) => {}
                Some(Item::File { .. }) => return Err(CloudError::PreconditionFailed),
                None => {
                    let etag = self.tag();
                    let id = self.new_id();
                    self.items.insert(
                        at.clone(),
                        Item::Dir {
                            etag,
                            mtime: SystemTime::now(),
                            id,
                        },
                    );
                    self.touched(&at);
                }
            }
        }
        Ok(())
    }

    fn remove(&mut self, path: &str) -> bool {
        let below: Vec<String> = self
            .items
            .keys()
            .filter(|k| is_within(k, path))
            .cloned()
            .collect();
        for k in &below {
            self.items.remove(k);
        }
        self.unshowable.retain(|u| !is_within(u, path));
        if !below.is_empty() {
            self.touched(path);
        }
        !below.is_empty()
    }

    fn move_tree(&mut self, from: &str, to: &str) {
        let below: Vec<String> = self
            .items
            .keys()
            .filter(|k| is_within(k, from))
            .cloned()
            .collect();
        for k in below {
            if let Some(item) = self.items.remove(&k) {
                self.items.insert(format!("{to}{}", &k[from.len()..]), item);
            }
        }
        let hidden: Vec<String> = self
            .unshowable
            .iter()
            .filter(|u| is_within(u, from))
            .cloned()
            .collect();
        for u in hidden {
            self.unshowable.remove(&u);
            self.unshowable.insert(format!("{to}{}", &u[from.len()..]));
        }
        self.touched(from);
        self.touched(to);
    }
}

/// A cloud held in memory, with injected faults and delays. See the module doc.
#[derive(Debug)]
pub struct MemCloud {
    state: Mutex<State>,
    folder_etags: bool,
    /// Lists whole trees in one pass ([`Cloud::list_tree`]), as an object store does.
    trees: bool,
}

impl Default for MemCloud {
    fn default() -> Self {
        MemCloud::new()
    }
}

impl MemCloud {
    /// An empty cloud without folder ETags.
    pub fn new() -> MemCloud {
        MemCloud {
            state: Mutex::new(State {
                root_etag: "\"m0\"".into(),
                ..State::default()
            }),
            folder_etags: false,
            trees: false,
        }
    }

    /// An empty cloud without folder ETags that lists a whole tree in one request
    /// ([`Cloud::list_tree`], logged as a [`Method::List`] of the folder), as an object
    /// store's flat listing does.
    pub fn listing_trees() -> MemCloud {
        MemCloud {
            trees: true,
            ..MemCloud::new()
        }
    }

    /// An empty cloud whose folder ETags change whenever anything below them changes.
    pub fn with_folder_etags() -> MemCloud {
        MemCloud {
            folder_etags: true,
            ..MemCloud::new()
        }
    }

    /// The same cloud, with every item reporting a stable id ([`CloudEntry::file_id`]) that
    /// stays with it through moves and edits, as Nextcloud's `oc:fileid` does.
    pub fn with_file_ids(self) -> MemCloud {
        self.st().ids = true;
        self
    }

    /// The same cloud, with file ETags that are a hash of the content (as SabreDAV's are), so
    /// that files of the same bytes share one.
    pub fn with_content_etags(self) -> MemCloud {
        self.st().content_etags = true;
        self
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a fault rule; the first matching rule decides a request's fate.
    pub fn inject(&self, rule: Rule) {
        self.st().rules.push(rule);
    }

    /// Drops every fault rule (and the random faults of [`MemCloud::set_chaos`]).
    pub fn clear_faults(&self) {
        let mut s = self.st();
        s.rules.clear();
        s.chaos = 0.0;
    }

    /// While `on`, every request finds the server unreachable.
    pub fn set_offline(&self, on: bool) {
        let mut s = self.st();
        s.rules
            .retain(|r| r.fault != Fault::Unreachable || r.times.is_some());
        if on {
            s.rules.insert(0, Rule::always(Fault::Unreachable));
        }
    }

    /// Seeds the randomness of delays and random faults, so a failing case runs again alike.
    pub fn seed(&self, seed: u64) {
        self.st().rng = Some(fastrand::Rng::with_seed(seed));
    }

    /// Delays every answer by a random time up to `max`.
    pub fn set_delay(&self, max: Duration) {
        self.st().delay = max;
    }

    /// Gives every request the chance `p` of a random transient fault: a 503, or an answer
    /// lost after the request was carried out.
    pub fn set_chaos(&self, p: f64) {
        self.st().chaos = p;
    }

    /// Holds the next read of kind `method` of exactly `path` after it took its snapshot,
    /// until [`Hold::release`].
    pub fn hold(&self, method: Method, path: &str) -> Arc<Hold> {
        let h = Arc::new(Hold::default());
        self.st().holds.push((method, path.to_string(), h.clone()));
        h
    }

    /// The requests that reached the cloud so far, in order.
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.st().log.clone()
    }

    /// Writes a file behind the engine's back, making its folders.
    pub fn write(&self, path: &str, data: &[u8]) {
        let mut s = self.st();
        s.mkdirs(super::parent(path)).expect("a file is in the way");
        s.store(path, data.to_vec()).expect("cannot write");
    }

    /// Puts into the folder `dir` (made if missing) an item that a listing cannot show, as a
    /// name that is not UTF-8 would be on a real server.
    pub fn plant_unshowable(&self, dir: &str, name: &str) {
        let mut s = self.st();
        s.mkdirs(dir).expect("a file is in the way");
        s.unshowable.insert(super::join(dir, name));
    }

    /// Makes a folder (and its parents) behind the engine's back.
    pub fn mkdir_direct(&self, path: &str) {
        self.st().mkdirs(path).expect("a file is in the way");
    }

    /// Deletes an item (a folder with everything in it) behind the engine's back; false when
    /// there was nothing.
    pub fn remove(&self, path: &str) -> bool {
        self.st().remove(path)
    }

    /// Moves an item behind the engine's back, over whatever is at `to` (like `rename(2)`);
    /// false when `from` does not exist.
    pub fn rename_direct(&self, from: &str, to: &str) -> bool {
        let mut s = self.st();
        if !s.items.contains_key(from) || is_within(to, from) {
            return false;
        }
        if from == to {
            return true;
        }
        s.remove(to);
        if s.mkdirs(super::parent(to)).is_err() {
            return false;
        }
        s.move_tree(from, to);
        true
    }

    /// The content of the file at `path`.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.st().items.get(path)? {
            Item::File { data, .. } => Some(data.to_vec()),
            Item::Dir { .. } => None,
        }
    }

    /// Every item: files with their content, folders with `None`.
    pub fn snapshot(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.st()
            .items
            .iter()
            .map(|(k, v)| {
                let c = match v {
                    Item::File { data, .. } => Some(data.to_vec()),
                    Item::Dir { .. } => None,
                };
                (k.clone(), c)
            })
            .collect()
    }

    /// Logs the request, picks its fault and its delay.
    fn arrive(&self, m: Method, paths: &[&str]) -> (Option<Fault>, Duration) {
        let mut s = self.st();
        s.log.push((m, paths.join(" -> ")));
        let mut fault = None;
        for r in s.rules.iter_mut() {
            if r.matches(m, paths) {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                fault = Some(r.fault);
                break;
            }
        }
        let (chaos, delay) = (s.chaos, s.delay);
        let rng = s.rng.get_or_insert_with(fastrand::Rng::new);
        if fault.is_none() && chaos > 0.0 && rng.f64() < chaos {
            fault = Some(if rng.bool() {
                Fault::Unavailable
            } else {
                Fault::LostAnswer
            });
        }
        let wait = if delay.is_zero() {
            Duration::ZERO
        } else {
            delay.mul_f64(rng.f64())
        };
        (fault, wait)
    }

    /// Runs one request: its fault before, the delay, `apply`, its fault after.
    async fn request<T>(
        &self,
        m: Method,
        paths: &[&str],
        read: bool,
        apply: impl FnOnce(&mut State) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        for p in paths {
            check_rel_path(p)?;
        }
        let (fault, wait) = self.arrive(m, paths);
        match fault {
            None | Some(Fault::LostAnswer) => {}
            Some(Fault::PartialUpload) if m == Method::Put => {}
            Some(f) => {
                sleep(wait).await;
                return Err(f.error());
            }
        }
        let r = if read {
            // A read answers what was there when it arrived.
            let (r, hold) = {
                let mut s = self.st();
                let r = apply(&mut s);
                let i = s
                    .holds
                    .iter()
                    .position(|(hm, hp, _)| *hm == m && paths.first() == Some(&hp.as_str()));
                (r, i.map(|i| s.holds.remove(i).2))
            };
            if let Some(h) = hold {
                h.wait().await;
            }
            sleep(wait).await;
            r
        } else {
            sleep(wait).await;
            apply(&mut self.st())
        };
        match fault {
            Some(f @ Fault::LostAnswer) => r.and(Err(f.error())),
            _ => r,
        }
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// The whole content of an open file, from its start.
fn read_all(f: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read_at(&mut buf, out.len() as u64)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

impl MemCloud {
    /// [`Cloud::upload`], answering only the new ETag, as tests mostly want.
    pub async fn put_file(
        &self,
        path: &str,
        src: &std::fs::File,
        cond: &Precondition,
    ) -> Result<Option<String>, CloudError> {
        Ok(self.upload(path, src, cond).await?.etag)
    }
}

#[async_trait]
impl Cloud for MemCloud {
    fn describe(&self) -> String {
        "mem://".into()
    }

    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError> {
        let fe = self.folder_etags;
        self.request(Method::Stat, &[path], true, |s| Ok(s.entry(path, fe)))
            .await
    }

    async fn list(&self, path: &str) -> Result<Listing, CloudError> {
        let fe = self.folder_etags;
        self.request(Method::List, &[path], true, |s| {
            s.folder_to_list(path)?;
            let entries = s.children(path).filter_map(|k| s.entry(k, fe)).collect();
            let skipped = s
                .unshowable
                .iter()
                .filter(|u| super::parent(u) == path)
                .cloned()
                .collect();
            Ok(Listing {
                entries,
                skipped,
                clashes: Vec::new(),
            })
        })
        .await
    }

    async fn list_tree(&self, path: &str) -> Option<Result<Subtree, CloudError>> {
        if !self.trees {
            return None;
        }
        let below = |p: &str| p != path && is_within(p, path);
        Some(
            self.request(Method::List, &[path], true, |s| {
                s.folder_to_list(path)?;
                let entries = s
                    .items
                    .keys()
                    .filter(|k| below(k))
                    .filter_map(|k| s.entry(k, false))
                    .collect();
                let skipped = s.unshowable.iter().filter(|u| below(u)).cloned().collect();
                Ok(Subtree {
                    entries,
                    skipped,
                    clashes: Vec::new(),
                    requests: 1,
                })
            })
            .await,
        )
    }

    async fn upload(
        &self,
        path: &str,
        src: &std::fs::File,
        cond: &Precondition,
    ) -> Result<Uploaded, CloudError> {
        let data = read_all(src)?;
        let (fault, wait) = {
            check_rel_path(path)?;
            check_name(path)?;
            self.arrive(Method::Put, &[path])
        };
        sleep(wait).await;
        let mut s = self.st();
        match fault {
            None | Some(Fault::LostAnswer) => {}
            Some(Fault::PartialUpload) => {
                s.check(path, cond)?;
                let half = data[..data.len() / 2].to_vec();
                s.store(path, half)?;
                return Err(Fault::LostAnswer.error());
            }
            Some(f) => return Err(f.error()),
        }
        s.check(path, cond)?;
        if !matches!(cond, Precondition::IfMatch(_)) {
            // As every backend does: missing folders on the way are made.
            s.mkdirs(super::parent(path))?;
        }
        let etag = s.store(path, data)?;
        match fault {
            Some(f @ Fault::LostAnswer) => Err(f.error()),
            _ => Ok(Uploaded {
                etag: Some(etag),
                hash: None,
            }),
        }
    }

    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError> {
        let fe = self.folder_etags;
        let (data, entry) = self
            .request(Method::Get, &[path], true, |s| match s.items.get(path) {
                Some(Item::File { data, .. }) => {
                    Ok((data.clone(), s.entry(path, fe).expect("just seen")))
                }
                Some(Item::Dir { .. }) => Err(CloudError::Status {
                    status: 409,
                    detail: format!("{path} is a folder"),
                }),
                None => Err(CloudError::NotFound),
            })
            .await?;
        // Streamed like a real download: from the start, the file position after the data.
        dest.set_len(0)?;
        let mut out = dest;
        std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(0))?;
        std::io::Write::write_all(&mut out, &data)?;
        Ok(entry)
    }

    async fn mkdir(&self, path: &str) -> Result<(), CloudError> {
        check_name(path)?;
        self.request(Method::Mkdir, &[path], false, |s| s.mkdirs(path))
            .await
    }

    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        if path.is_empty() {
            return Err(CloudError::Protocol(
                "refusing to delete the cloud root".into(),
            ));
        }
        let fe = self.folder_etags;
        self.request(Method::Delete, &[path], false, |s| {
            match (s.items.get(path), cond) {
                (None, _) => return Err(CloudError::NotFound),
                (Some(Item::File { .. }), _) => s.check(path, cond)?,
                (Some(Item::Dir { .. }), Precondition::IfNoneMatch) => {
                    return Err(CloudError::PreconditionFailed);
                }
                // A folder's tag is compared only where folder tags are reported.
                (Some(Item::Dir { etag, .. }), Precondition::IfMatch(t)) if fe && etag != t => {
                    return Err(CloudError::PreconditionFailed);
                }
                (Some(Item::Dir { .. }), _) => {}
            }
            s.remove(path);
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError> {
        if from.is_empty() || to.is_empty() {
            return Err(CloudError::Protocol(
                "refusing to move the cloud root".into(),
            ));
        }
        check_name(to)?;
        self.request(Method::Move, &[from, to], false, |s| {
            if !s.items.contains_key(from) {
                return Err(CloudError::NotFound);
            }
            if s.items.contains_key(to) {
                return Err(CloudError::PreconditionFailed);
            }
            if is_within(to, from) {
                return Err(CloudError::Forbidden);
            }
            if !s.is_dir(super::parent(to)) {
                return Err(CloudError::MissingParent);
            }
            s.move_tree(from, to);
            Ok(())
        })
        .await
    }

    fn folder_etags_cover_subtree(&self) -> bool {
        self.folder_etags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), data).unwrap();
        f
    }

    #[tokio::test]
    async fn conditions_moves_and_listings() {
        let c = MemCloud::with_folder_etags();
        let one = file(b"one");
        let tag = c
            .put_file("a.txt", one.as_file(), &Precondition::IfNoneMatch)
            .await
            .unwrap()
            .unwrap();
        let again = c
            .put_file("a.txt", one.as_file(), &Precondition::IfNoneMatch)
            .await;
        assert!(matches!(again, Err(CloudError::PreconditionFailed)));
        let stale = Precondition::IfMatch("\"x\"".into());
        let r = c.put_file("a.txt", one.as_file(), &stale).await;
        assert!(matches!(r, Err(CloudError::PreconditionFailed)));
        let r = c.put_file("b.txt", one.as_file(), &stale).await;
        assert!(matches!(r, Err(CloudError::NotFound)));
        // Missing folders on the way are made, as on every backend (the contract suite).
        c.put_file("x/b.txt", one.as_file(), &Precondition::None)
            .await
            .unwrap();
        assert!(c.stat("x").await.unwrap().unwrap().is_dir);
        assert!(c.remove("x"));
        let root = c.stat("").await.unwrap().unwrap().etag;
        let two = file(b"two");
        c.put_file("a.txt", two.as_file(), &Precondition::IfMatch(tag))
            .await
            .unwrap();
        assert_ne!(c.stat("").await.unwrap().unwrap().etag, root);
        c.mkdir("x/y").await.unwrap();
        c.rename("a.txt", "x/y/b.txt").await.unwrap();
        assert_eq!(c.read("x/y/b.txt").unwrap(), b"two");
        let r = c.rename("x", "x/y/z").await;
        assert!(r.is_err());
        let l = c.list("x/y").await.unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].path, "x/y/b.txt");
        assert!(
            c.list("")
                .await
                .unwrap()
                .entries
                .iter()
                .all(|e| e.path == "x")
        );
        c.delete("x", &Precondition::None).await.unwrap();
        assert!(c.snapshot().is_empty());
        assert!(c.stat("../etc").await.is_err());
    }

    #[tokio::test]
    async fn faults_hit_what_they_match() {
        let c = MemCloud::new();
        let f = file(b"abcd");
        c.inject(Rule::on(Method::Put, "a.txt", Fault::PartialUpload, 1));
        let r = c
            .put_file("a.txt", f.as_file(), &Precondition::IfNoneMatch)
            .await;
        assert!(r.is_err_and(|e| e.is_transient()));
        assert_eq!(c.read("a.txt").unwrap(), b"ab");
        c.inject(Rule::on(Method::Put, "b.txt", Fault::LostAnswer, 1));
        let r = c
            .put_file("b.txt", f.as_file(), &Precondition::IfNoneMatch)
            .await;
        assert!(r.is_err_and(|e| e.is_transient()));
        assert_eq!(c.read("b.txt").unwrap(), b"abcd");
        c.set_offline(true);
        assert!(c.stat("").await.is_err_and(|e| e.is_transient()));
        c.set_offline(false);
        c.inject(Rule::always(Fault::Unauthorized));
        assert!(matches!(c.list("").await, Err(CloudError::Unauthorized)));
        c.clear_faults();
        assert_eq!(c.list("").await.unwrap().entries.len(), 2);
        assert_eq!(c.requests().len(), 5);
    }
}
