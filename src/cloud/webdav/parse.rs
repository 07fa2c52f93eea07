//! What a WebDAV server says, checked: the PROPFIND (`207 Multi-Status`) parser, entity tags
//! and dates, and the href checks that turn a server's names into safe relative paths.
//!
//! Nothing a server names reaches the engine without passing [`Root::href_to_rel`]: an href is
//! decoded segment by segment and refused when it names another origin, lies outside the
//! synced root, has a `.`/`..`/empty segment, or decodes to a name holding `/` or NUL. This
//! module does no I/O, so all of it is tested with canned answers.

use std::fmt;
use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use url::Url;

use super::DavEntry;
use crate::cloud::{CloudEntry, CloudError, check_rel_path, join};

/// The namespace of the WebDAV elements.
const DAV_NS: &str = "DAV:";
/// The ownCloud / Nextcloud namespace, for `oc:fileid`.
const OC_NS: &str = "http://owncloud.org/ns";
/// The longest `oc:fileid` taken, in bytes (Nextcloud's are a number and an instance id).
const MAX_FILE_ID: usize = 128;

/// What every PROPFIND asks for. Servers answer unknown properties with a 404 propstat.
pub(super) const PROPFIND_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>"#,
    r#"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:fileid/>"#,
    r#"</d:prop></d:propfind>"#
);

/// Bytes left alone in a path segment: RFC 3986 "unreserved". Everything else is escaped,
/// which every server decodes.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an href was refused.
pub(super) type Refusal = String;

/// Decodes one raw path segment of an href; refuses anything that could escape a folder.
pub(super) fn decode_segment(raw: &str) -> Result<String, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("segment {raw:?} is not UTF-8"))?;
    if decoded.is_empty() || decoded == "." || decoded == ".." {
        return Err(format!("segment {raw:?} is empty, . or .."));
    }
    if decoded.contains('/') || decoded.contains('\0') {
        return Err(format!(
            "segment {raw:?} decodes to a name holding / or NUL"
        ));
    }
    Ok(decoded.into_owned())
}

/// Compares a decoded server name with one of ours: exactly, or ignoring case (SharePoint and
/// IIS answer with the case they store, not the case asked for).
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Makes an entity tag well-formed: trimmed and quoted, keeping a weak `W/` prefix.
pub(super) fn normalize_etag(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    let (weak, opaque) = match t.strip_prefix("W/") {
        Some(rest) => (true, rest.trim()),
        None => (false, t),
    };
    // `""` names no version (SabreDAV sends it when its write failed): no tag at all.
    if opaque.trim_matches('"').is_empty() {
        return None;
    }
    let quoted = if opaque.len() >= 2 && opaque.starts_with('"') && opaque.ends_with('"') {
        opaque.to_string()
    } else {
        format!("\"{}\"", opaque.trim_matches('"'))
    };
    Some(if weak { format!("W/{quoted}") } else { quoted })
}

/// True for a weak entity tag.
pub(super) fn is_weak(tag: &str) -> bool {
    tag.starts_with("W/")
}

/// The tag without its weak prefix, for weak comparison (RFC 9110 section 8.8.3.2).
pub(super) fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Parses `getlastmodified`: RFC 1123 as the standard says, RFC 3339 as some servers send.
pub(super) fn parse_http_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    httpdate::parse_http_date(s)
        .ok()
        .or_else(|| humantime::parse_rfc3339_weak(s).ok())
}

/// The properties of one `response`, merged from its 2xx propstats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Props {
    etag: Option<String>,
    length: Option<u64>,
    modified: Option<SystemTime>,
    is_dir: bool,
    file_id: Option<String>,
}

/// One `response` element of a multistatus, before its href is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RawResponse {
    hrefs: Vec<String>,
    /// The response-level status, for answers without propstat (`404` for a whole href).
    status: Option<u16>,
    /// The merged properties when at least one propstat had a 2xx status.
    props: Option<Props>,
}

/// Parses the status line `HTTP/1.1 200 OK` into its code.
fn parse_status_line(s: &str) -> Option<u16> {
    s.split_whitespace().nth(1)?.parse().ok()
}

/// The elements the parser cares about; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    MultiStatus,
    Response,
    Href,
    PropStat,
    Prop,
    Status,
    ETag,
    Length,
    Modified,
    ResourceType,
    Collection,
    FileId,
    Other,
}

impl Elem {
    /// True for elements whose text content is kept.
    fn keeps_text(self) -> bool {
        matches!(
            self,
            Elem::Href | Elem::Status | Elem::ETag | Elem::Length | Elem::Modified | Elem::FileId
        )
    }
}

/// Deeper nesting than this is not a real multistatus.
const MAX_XML_DEPTH: usize = 64;

/// Parses a `207 Multi-Status` body. Namespace prefixes are resolved (any prefix may stand for
/// `DAV:`), entities are decoded, and properties from non-2xx propstats are ignored.
pub(super) fn parse_multistatus(xml: &str) -> Result<Vec<RawResponse>, CloudError> {
    let bad = |e: &dyn fmt::Display| CloudError::Protocol(format!("invalid PROPFIND answer: {e}"));
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut out = Vec::new();
    let mut seen_root = false;
    let mut cur: Option<RawResponse> = None;
    // The current propstat: its status and properties.
    let mut ps: Option<(Option<u16>, Props)> = None;
    let mut text = String::new();
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(|e| bad(&e))?;
        let ns_is = |want: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want);
        match ev {
            Event::Start(e) => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                let dav = ns_is(DAV_NS);
                let top = stack.last().copied();
                let tag = match (top, dav, local) {
                    (None, true, "multistatus") => Elem::MultiStatus,
                    (None, _, _) => {
                        return Err(CloudError::Protocol(format!(
                            "the answer is not a WebDAV multistatus (root element {local:?})"
                        )));
                    }
                    (Some(Elem::MultiStatus), true, "response") => Elem::Response,
                    (Some(Elem::Response), true, "href") => Elem::Href,
                    (Some(Elem::Response), true, "propstat") => Elem::PropStat,
                    (Some(Elem::Response), true, "status") => Elem::Status,
                    (Some(Elem::PropStat), true, "status") => Elem::Status,
                    (Some(Elem::PropStat), true, "prop") => Elem::Prop,
                    (Some(Elem::Prop), true, "getetag") => Elem::ETag,
                    (Some(Elem::Prop), true, "getcontentlength") => Elem::Length,
                    (Some(Elem::Prop), true, "getlastmodified") => Elem::Modified,
                    (Some(Elem::Prop), true, "resourcetype") => Elem::ResourceType,
                    (Some(Elem::Prop), false, "fileid") if ns_is(OC_NS) => Elem::FileId,
                    (Some(Elem::ResourceType), true, "collection") => Elem::Collection,
                    _ => Elem::Other,
                };
                match tag {
                    Elem::MultiStatus => seen_root = true,
                    Elem::Response => cur = Some(RawResponse::default()),
                    Elem::PropStat => ps = Some((None, Props::default())),
                    Elem::Collection => {
                        if let Some((_, p)) = ps.as_mut() {
                            p.is_dir = true;
                        }
                    }
                    _ => {}
                }
                text.clear();
                stack.push(tag);
                if stack.len() > MAX_XML_DEPTH {
                    return Err(CloudError::Protocol(
                        "PROPFIND answer nested too deeply".into(),
                    ));
                }
            }
            Event::Text(t) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    let raw = format!("&{};", r.xml10_content());
                    let s = quick_xml::escape::unescape(&raw).map_err(|e| bad(&e))?;
                    text.push_str(&s);
                }
            }
            Event::End(_) => {
                let tag = stack.pop().ok_or_else(|| bad(&"unbalanced end tag"))?;
                let value = std::mem::take(&mut text);
                match tag {
                    Elem::Href => {
                        if let Some(r) = cur.as_mut() {
                            r.hrefs.push(value.trim().to_string());
                        }
                    }
                    Elem::Status => match (stack.last(), ps.as_mut(), cur.as_mut()) {
                        (Some(Elem::PropStat), Some((st, _)), _) => *st = parse_status_line(&value),
                        (Some(Elem::Response), _, Some(r)) => r.status = parse_status_line(&value),
                        _ => {}
                    },
                    Elem::ETag | Elem::Length | Elem::Modified | Elem::FileId => {
                        if let Some((_, p)) = ps.as_mut() {
                            match tag {
                                Elem::ETag => p.etag = normalize_etag(&value),
                                Elem::Length => p.length = value.trim().parse().ok(),
                                Elem::Modified => p.modified = parse_http_time(&value),
                                _ => {
                                    // An id is only ever compared, never used as a name;
                                    // one longer than any server's is no id at all.
                                    let v = value.trim();
                                    p.file_id = (!v.is_empty() && v.len() <= MAX_FILE_ID)
                                        .then(|| v.to_string());
                                }
                            }
                        }
                    }
                    Elem::PropStat => {
                        if let (Some((st, p)), Some(r)) = (ps.take(), cur.as_mut())
                            && st.is_some_and(|s| (200..300).contains(&s))
                        {
                            let m = r.props.get_or_insert_with(Props::default);
                            m.is_dir |= p.is_dir;
                            m.etag = m.etag.take().or(p.etag);
                            m.length = m.length.or(p.length);
                            m.modified = m.modified.or(p.modified);
                            m.file_id = m.file_id.take().or(p.file_id);
                        }
                    }
                    Elem::Response => {
                        if let Some(r) = cur.take() {
                            out.push(r);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            Event::Empty(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_)
            | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(CloudError::Protocol(
            "the answer is not a WebDAV multistatus".into(),
        ));
    }
    if !stack.is_empty() {
        return Err(bad(&"the answer ends in the middle of an element"));
    }
    Ok(out)
}

/// A PROPFIND answer sorted by [`Root::sort_responses`].
#[derive(Debug, Default)]
pub(super) struct Sorted {
    /// The item asked for.
    pub(super) me: Option<DavEntry>,
    /// Its direct children.
    pub(super) children: Vec<DavEntry>,
    /// What the answer held that could not be taken, other than the item itself: refused
    /// hrefs, responses without a 2xx propstat, items deeper down. Raw hrefs (or a note).
    pub(super) skipped: Vec<String>,
    /// The server said, inside the multistatus, that the item asked for does not exist.
    pub(super) gone: bool,
    /// Some item came with a server id (`oc:fileid`).
    pub(super) file_ids: bool,
}

/// The synced root of a server: its URL, and the decoded path segments of that URL, to build
/// request URLs from relative paths and to recognise hrefs inside the root.
#[derive(Debug, Clone)]
pub(super) struct Root {
    /// The synced root: no user info, no query, always ending in `/`.
    pub(super) base: Url,
    /// The decoded path segments of `base`.
    base_segments: Vec<String>,
}

impl Root {
    /// The root at `base`, which ends in `/`; refused when its path does not decode.
    pub(super) fn new(base: Url) -> Result<Root, Refusal> {
        let mut base_segments = Vec::new();
        for raw in base.path().split('/').filter(|s| !s.is_empty()) {
            base_segments.push(decode_segment(raw)?);
        }
        Ok(Root {
            base,
            base_segments,
        })
    }

    /// The URL of `path` (checked), with a trailing slash when `folder` is set.
    pub(super) fn url_of(&self, path: &str, folder: bool) -> Result<Url, CloudError> {
        check_rel_path(path)?;
        let mut s = self.base.as_str().to_string();
        for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.extend(utf8_percent_encode(seg, SEGMENT));
        }
        if folder && !s.ends_with('/') {
            s.push('/');
        }
        Url::parse(&s).map_err(|e| CloudError::InvalidName(format!("{path:?}: {e}")))
    }

    /// Checks an href and turns it into a path relative to the synced root.
    pub(super) fn href_to_rel(&self, href: &str) -> Result<String, Refusal> {
        let href = href.trim();
        if href.contains(['?', '#']) {
            return Err("it has a query or fragment".into());
        }
        let raw_path = if href.starts_with('/') {
            if href.starts_with("//") {
                return Err("it is a network-path reference".into());
            }
            href
        } else if let Some(i) = href.find("://") {
            let u = Url::parse(href).map_err(|e| format!("it does not parse: {e}"))?;
            if u.scheme() != self.base.scheme()
                || u.host_str() != self.base.host_str()
                || u.port_or_known_default() != self.base.port_or_known_default()
            {
                return Err("it names another server".into());
            }
            let after = &href[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        } else {
            return Err("it is neither absolute nor path-absolute".into());
        };
        let mut raw: Vec<&str> = raw_path[1..].split('/').collect();
        if raw.last() == Some(&"") {
            raw.pop();
        }
        let segs = raw
            .iter()
            .map(|s| decode_segment(s))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.base_segments.len();
        if segs.len() < n
            || !segs
                .iter()
                .zip(&self.base_segments)
                .all(|(a, b)| same_name(a, b))
        {
            return Err("it lies outside the synced root".into());
        }
        let rel = segs[n..].join("/");
        check_rel_path(&rel).map_err(|e| e.to_string())?;
        Ok(rel)
    }

    /// Sorts checked responses into the item at `path` itself and its direct children.
    /// Anything else the server sent (refused names, items deeper down or elsewhere,
    /// duplicates) is skipped with a warning; all but duplicates and the item's own answer are
    /// counted in [`Sorted::skipped`], since they may be items inside the folder.
    pub(super) fn sort_responses(&self, path: &str, responses: Vec<RawResponse>) -> Sorted {
        let mut out = Sorted::default();
        let want: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for r in responses {
            let Some(href) = r.hrefs.first() else {
                tracing::warn!(cloud = %self.base, "skipping a PROPFIND response without href");
                out.skipped.push("(a response without href)".into());
                continue;
            };
            let rel = match self.href_to_rel(href) {
                Ok(rel) => rel,
                Err(why) => {
                    tracing::warn!(cloud = %self.base, href = ?href, "refusing a server name: {why}");
                    out.skipped.push(href.clone());
                    continue;
                }
            };
            let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
            let under =
                segs.len() >= want.len() && segs.iter().zip(&want).all(|(a, b)| same_name(a, b));
            let is_self = under && segs.len() == want.len();
            let is_child = under && segs.len() == want.len() + 1;
            let Some(props) = r.props else {
                // A status-only response may name several hrefs; only the first can be the
                // item itself.
                let first = if r.status == Some(404) && is_self {
                    out.gone = true;
                    1
                } else if is_self {
                    1
                } else {
                    tracing::warn!(cloud = %self.base, href = ?href, "skipping a response without properties");
                    0
                };
                out.skipped.extend(r.hrefs[first..].iter().cloned());
                continue;
            };
            let entry_path = if is_self {
                path.to_string()
            } else if is_child {
                // Our own folder path plus the server's (checked) name.
                join(path, segs[segs.len() - 1])
            } else {
                tracing::warn!(cloud = %self.base, href = ?href, path, "refusing an answer that is not the item asked for or a direct child of it");
                out.skipped.push(href.clone());
                continue;
            };
            if check_rel_path(&entry_path).is_err() {
                out.skipped.push(href.clone());
                continue;
            }
            let entry = DavEntry {
                entry: CloudEntry {
                    path: entry_path,
                    is_dir: props.is_dir,
                    size: if props.is_dir {
                        0
                    } else {
                        props.length.unwrap_or(0)
                    },
                    mtime: props.modified,
                    etag: props.etag,
                    file_id: props.file_id.clone(),
                },
                file_id: props.file_id,
            };
            out.file_ids |= entry.file_id.is_some();
            if is_self {
                if out.me.is_none() {
                    out.me = Some(entry);
                }
            } else if out
                .children
                .iter()
                .any(|e| e.entry.path == entry.entry.path)
            {
                tracing::warn!(cloud = %self.base, href = ?href, "skipping a duplicate listed item");
            } else {
                out.children.push(entry);
            }
        }
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::super::WebDav;
    use super::super::client::strip_userinfo;
    use super::*;
    use crate::cloud::parent;
    use crate::config::CloudOptions;

    fn dav(url: &str) -> WebDav {
        WebDav::new(url, &CloudOptions::default()).unwrap()
    }

    pub(crate) fn ms(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:">{body}</d:multistatus>"#
        )
    }

    pub(crate) fn resp(href: &str, dir: bool) -> String {
        let rt = if dir { "<d:collection/>" } else { "" };
        format!(
            "<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:resourcetype>{rt}</d:resourcetype>\
             <d:getcontentlength>3</d:getcontentlength><d:getetag>\"e\"</d:getetag></d:prop>\
             <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
        )
    }

    #[test]
    fn hrefs_are_checked() {
        let d = dav("http://h.example:8080/dav/sub%20dir");
        assert_eq!(d.base_url(), "http://h.example:8080/dav/sub%20dir/");
        let ok = |h: &str| d.root.href_to_rel(h).unwrap();
        assert_eq!(ok("/dav/sub%20dir/"), "");
        assert_eq!(ok("/dav/sub dir/a%23b.txt"), "a#b.txt");
        assert_eq!(ok("http://h.example:8080/dav/sub%20dir/x/y/"), "x/y");
        assert_eq!(ok("/DAV/Sub%20Dir/x"), "x");
        assert_eq!(ok("/dav/sub%20dir/%C3%BCber%25"), "über%");
        for bad in [
            "/dav/sub%20dir/../../etc/passwd",
            "/dav/sub%20dir/a/%2e%2e/b",
            "/dav/sub%20dir/./x",
            "/dav/sub%20dir/a%2Fb",
            "/dav/sub%20dir/a%00b",
            "/dav/sub%20dir//x",
            "/dav/other/x",
            "/dav/",
            "/etc/passwd",
            "http://evil.example:8080/dav/sub%20dir/x",
            "https://h.example:8080/dav/sub%20dir/x",
            "http://h.example:9999/dav/sub%20dir/x",
            "//h.example:8080/dav/sub%20dir/x",
            "x.txt",
            "/dav/sub%20dir/x?y",
            "/dav/sub%20dir/%FF",
        ] {
            assert!(d.root.href_to_rel(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_any_prefix_entities_and_404_propstats() {
        let xml = r#"<?xml version="1.0"?>
<X:multistatus xmlns:X="DAV:" xmlns:lp1="DAV:" xmlns:oc="http://owncloud.org/ns">
 <X:response>
  <X:href>/dav/a%20b.txt</X:href>
  <X:propstat><X:prop>
    <lp1:getetag>&quot;abc&amp;1&quot;</lp1:getetag>
    <lp1:getcontentlength> 12 </lp1:getcontentlength>
    <lp1:getlastmodified>Wed, 25 Nov 2026 22:39:14 GMT</lp1:getlastmodified>
    <lp1:resourcetype/>
    <oc:fileid>00000042oc</oc:fileid>
  </X:prop><X:status>HTTP/1.1 200 OK</X:status></X:propstat>
  <X:propstat><X:prop><X:getetag>"bogus"</X:getetag><X:resourcetype><X:collection/></X:resourcetype></X:prop>
   <X:status>HTTP/1.1 404 Not Found</X:status></X:propstat>
 </X:response>
 <X:response><X:href>/dav/gone</X:href><X:status>HTTP/1.1 404 Not Found</X:status></X:response>
 <X:response><X:href>/dav/d/</X:href><X:propstat><X:prop><X:resourcetype><X:collection/></X:resourcetype>
   <X:getetag>W/"7"</X:getetag></X:prop><X:status>HTTP/1.1 200 OK</X:status></X:propstat></X:response>
</X:multistatus>"#;
        let r = parse_multistatus(xml).unwrap();
        assert_eq!(r.len(), 3);
        let p = r[0].props.as_ref().unwrap();
        assert_eq!(p.etag.as_deref(), Some("\"abc&1\""));
        assert_eq!(p.length, Some(12));
        assert!(!p.is_dir);
        assert_eq!(p.file_id.as_deref(), Some("00000042oc"));
        assert_eq!(
            p.modified,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_646_354))
        );
        assert!(r[1].props.is_none());
        assert_eq!(r[1].status, Some(404));
        assert!(r[2].props.as_ref().unwrap().is_dir);
        let d = dav("http://h/dav");
        let l = d.sort("", r).children;
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].entry.path, "a b.txt");
        assert_eq!(l[0].file_id.as_deref(), Some("00000042oc"));
        assert_eq!(l[1].entry.path, "d");
        assert_eq!(l[1].entry.etag.as_deref(), Some("W/\"7\""));
    }

    #[test]
    fn a_dav_element_in_another_namespace_is_not_dav() {
        let xml = r#"<m:multistatus xmlns:m="urn:not-dav"><m:response/></m:multistatus>"#;
        assert!(matches!(
            parse_multistatus(xml),
            Err(CloudError::Protocol(_))
        ));
        let xml = ms(
            r#"<d:response xmlns:e="urn:x"><d:href>/a</d:href><d:propstat><d:prop>
            <e:getetag>"no"</e:getetag><d:resourcetype><e:collection/></d:resourcetype></d:prop>
            <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"#,
        );
        let r = parse_multistatus(&xml).unwrap();
        let p = r[0].props.as_ref().unwrap();
        assert_eq!(p.etag, None);
        assert!(!p.is_dir);
        for broken in [
            "<d:multistatus xmlns:d=\"DAV:\"><d:response>",
            "not xml at all <",
            "<html><body>hi</body></html>",
        ] {
            assert!(parse_multistatus(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn hostile_listing_keeps_only_direct_children() {
        let d = dav("http://h/dav/root/");
        let body = ms(&[
            resp("/dav/root/f/", true),
            resp("/dav/root/f/ok.txt", false),
            resp("/dav/root/f/../../../etc/passwd", false),
            resp("/dav/root/f/a%2Fb", false),
            resp("/dav/root/f/nul%00", false),
            resp("/dav/root/f/deep/er.txt", false),
            resp("/dav/root/g/x.txt", false),
            resp("/dav/elsewhere/x.txt", false),
            resp("http://evil/dav/root/f/x.txt", false),
            resp("/dav/root/f/ok.txt", false),
            resp("/dav/root/f/%C3%A9t%C3%A9", true),
        ]
        .concat());
        let sorted = d.sort("f", parse_multistatus(&body).unwrap());
        assert!(
            sorted
                .me
                .as_ref()
                .is_some_and(|m| m.entry.is_dir && m.entry.path == "f")
        );
        let l = sorted.children;
        let paths: Vec<_> = l.iter().map(|e| e.entry.path.as_str()).collect();
        assert_eq!(paths, ["f/ok.txt", "f/été"]);
        for e in &l {
            check_rel_path(&e.entry.path).unwrap();
            assert_eq!(parent(&e.entry.path), "f");
        }
        // Everything refused is counted; the duplicate is not.
        assert_eq!(sorted.skipped.len(), 7, "{:?}", sorted.skipped);
    }

    /// A member without a 2xx propstat, or with a status only, cannot be represented: it is
    /// counted as skipped, while the folder's own answer is not.
    #[test]
    fn members_without_properties_are_counted() {
        let d = dav("http://h/dav/");
        let body = ms(&[
            resp("/dav/f/", true),
            "<d:response><d:href>/dav/f/secret.txt</d:href><d:propstat><d:prop><d:getetag>\"1\"</d:getetag></d:prop>\
             <d:status>HTTP/1.1 403 Forbidden</d:status></d:propstat></d:response>"
                .to_string(),
            "<d:response><d:href>/dav/f/a</d:href><d:href>/dav/f/b</d:href>\
             <d:status>HTTP/1.1 423 Locked</d:status></d:response>"
                .to_string(),
            resp("/dav/f/ok.txt", false),
        ]
        .concat());
        let sorted = d.sort("f", parse_multistatus(&body).unwrap());
        assert_eq!(sorted.children.len(), 1);
        assert_eq!(
            sorted.skipped,
            ["/dav/f/secret.txt", "/dav/f/a", "/dav/f/b"]
        );
        assert!(!sorted.gone);
    }

    #[test]
    fn etags_and_helpers() {
        assert_eq!(normalize_etag(" \"a\" ").as_deref(), Some("\"a\""));
        assert_eq!(normalize_etag("a").as_deref(), Some("\"a\""));
        assert_eq!(normalize_etag("W/\"a\"").as_deref(), Some("W/\"a\""));
        assert_eq!(normalize_etag("  "), None);
        assert_eq!(normalize_etag("\"\""), None);
        assert_eq!(normalize_etag("W/\"\""), None);
        assert_eq!(strip_weak("W/\"a\""), "\"a\"");
        assert!(is_weak("W/\"a\""));
        assert_eq!(
            strip_userinfo("https://bob:s3cret@host/x@y"),
            "https://host/x@y"
        );
        let d = dav("https://host/a b/ü/");
        assert_eq!(
            d.root.url_of("x y/#1?/100%/é", false).unwrap().as_str(),
            "https://host/a%20b/%C3%BC/x%20y/%231%3F/100%25/%C3%A9"
        );
        assert!(d.root.url_of("../x", false).is_err());
        assert_eq!(
            d.root.url_of("", false).unwrap().as_str(),
            "https://host/a%20b/%C3%BC/"
        );
        assert_eq!(parse_status_line("HTTP/1.1 404 Not Found"), Some(404));
    }
}
