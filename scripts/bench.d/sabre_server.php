<?php
// SabreDAV (Debian php-sabre-dav) for scripts/bench.d/sync_bench.py, started as
// `php -S 127.0.0.1:PORT sabre_server.php`. The WebDAV root is /dav/.
//
// Environment:
//   DAV_ROOT          the data directory (required)
//   DAV_FOLDER_ETAGS  "1": Nextcloud-style folders. Every item reports oc:fileid (its inode),
//                     and every folder an ETag that changes whenever anything below it changes.
//   DAV_ETAG_DIR      with DAV_FOLDER_ETAGS: where the folder ETags are kept (required then;
//                     must be outside DAV_ROOT)
//   DAV_REQUEST_LOG   a file to append one line per request to: "METHOD STATUS PATH"
//
// Why not tests/support/sabre/server.php: its folder ETag is a hash over the content of the
// whole subtree, computed on every request. That is exact but costs a full read of the tree for
// every PROPFIND of the root (about a second per 10k files here), so a benchmark of an idle
// pull against it measures the server. Nextcloud instead keeps folder ETags in its file cache
// and gives every ancestor a new one when something changes; this server does the same:
//   - a folder's ETag is read from DAV_ETAG_DIR, keyed by its path and inode, and made up
//     (random) the first time the folder is seen;
//   - after every request that can change the tree (PUT, DELETE, MKCOL, MOVE, COPY, PROPPATCH)
//     the touched folders and all their ancestors get new random ETags.
// Changes made straight in DAV_ROOT behind the server's back are not seen, exactly as with
// Nextcloud until `occ files:scan`: whoever makes them must delete the cached ETags of the
// changed folders and their ancestors (all files in DAV_ETAG_DIR, for simplicity).

require_once 'Sabre/autoload.php';

const OC_FILEID = '{http://owncloud.org/ns}fileid';

$rootDir = rtrim((string) getenv('DAV_ROOT'), '/');
$etagDir = rtrim((string) getenv('DAV_ETAG_DIR'), '/');
$folderEtags = getenv('DAV_FOLDER_ETAGS') === '1';

if ($rootDir === '' || !is_dir($rootDir) || ($folderEtags && ($etagDir === '' || !is_dir($etagDir)))) {
    http_response_code(500);
    echo "DAV_ROOT (and, with DAV_FOLDER_ETAGS, DAV_ETAG_DIR) must name directories\n";
    exit;
}

/** The cache file holding the ETag of the folder at absolute path $abs. */
function etag_file($abs) {
    global $rootDir, $etagDir;
    $rel = substr($abs, strlen($rootDir));
    $ino = @fileinode($abs);
    return $etagDir . '/' . md5($rel . "\0" . $ino);
}

function new_etag() {
    return '"' . bin2hex(random_bytes(10)) . '"';
}

function store_etag($file, $tag) {
    $tmp = $file . '.' . getmypid() . '.' . bin2hex(random_bytes(4));
    if (@file_put_contents($tmp, $tag) !== false) {
        @rename($tmp, $file);
    }
}

function folder_etag($abs) {
    $file = etag_file($abs);
    $tag = @file_get_contents($file);
    if ($tag === false || $tag === '') {
        $tag = new_etag();
        store_etag($file, $tag);
    }
    return $tag;
}

/** Gives $abs (when it is a folder) and every folder above it up to the root a new ETag. */
function bump_upwards($abs) {
    global $rootDir;
    $p = $abs;
    while (strlen($p) >= strlen($rootDir)) {
        if (is_dir($p)) {
            store_etag(etag_file($p), new_etag());
        }
        if ($p === $rootDir) break;
        $p = dirname($p);
    }
}

/** A file that reports its inode as oc:fileid. */
class IdFile extends \Sabre\DAV\FSExt\File {
    function getProperties($properties) {
        $r = parent::getProperties($properties);
        $r[OC_FILEID] = (string) fileinode($this->path);
        return $r;
    }
}

/** A folder with a cached ETag that changes with anything below it, and an oc:fileid. */
class CachedEtagDirectory extends \Sabre\DAV\FSExt\Directory {
    public function getChild($name) {
        parent::getChild($name); // validates the name; throws NotFound / Forbidden
        $path = $this->path . '/' . $name;
        return is_dir($path) ? new CachedEtagDirectory($path) : new IdFile($path);
    }

    function getProperties($properties) {
        $r = parent::getProperties($properties);
        $r['{DAV:}getetag'] = folder_etag($this->path);
        $r[OC_FILEID] = (string) fileinode($this->path);
        return $r;
    }
}

/** The absolute on-disk path a request URI (or Destination URL) names, or null. */
function disk_path_of($uri) {
    global $rootDir;
    $path = parse_url($uri, PHP_URL_PATH);
    if (!is_string($path) || strpos($path, '/dav') !== 0) return null;
    $rel = trim(rawurldecode(substr($path, 4)), '/');
    foreach (explode('/', $rel) as $seg) {
        if ($seg === '.' || $seg === '..') return null;
    }
    return $rel === '' ? $rootDir : $rootDir . '/' . $rel;
}

$root = $folderEtags
    ? new CachedEtagDirectory($rootDir)
    : new \Sabre\DAV\FSExt\Directory($rootDir);
$server = new \Sabre\DAV\Server($root);
$server->setBaseUri('/dav/');

$method = isset($_SERVER['REQUEST_METHOD']) ? strtoupper($_SERVER['REQUEST_METHOD']) : 'GET';
$writes = in_array($method, array('PUT', 'DELETE', 'MKCOL', 'MOVE', 'COPY', 'PROPPATCH'), true);
$touched = array();
if ($folderEtags && $writes) {
    $touched[] = disk_path_of(isset($_SERVER['REQUEST_URI']) ? $_SERVER['REQUEST_URI'] : '');
    if (isset($_SERVER['HTTP_DESTINATION'])) {
        $touched[] = disk_path_of($_SERVER['HTTP_DESTINATION']);
    }
}

$server->exec();

$requestLog = getenv('DAV_REQUEST_LOG');
if ($requestLog) {
    $uri = isset($_SERVER['REQUEST_URI']) ? $_SERVER['REQUEST_URI'] : '';
    @file_put_contents($requestLog, $method . ' ' . http_response_code() . ' '
        . parse_url($uri, PHP_URL_PATH) . "\n", FILE_APPEND | LOCK_EX);
}

// After the change, so a listing that raced with it cannot keep an old ETag alive.
foreach ($touched as $abs) {
    if ($abs !== null) {
        clearstatcache();
        bump_upwards(is_dir($abs) ? $abs : dirname($abs));
    }
}
