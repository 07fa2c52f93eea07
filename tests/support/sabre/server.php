<?php
// cloudsync test server: SabreDAV (Debian php-sabre-dav) serving one data directory, started by
// tests/support/webdav.rs as `php -S 127.0.0.1:PORT server.php`. It stands for the Nextcloud /
// ownCloud family, which is built on SabreDAV.
//
// Environment:
//   DAV_ROOT          the data directory (required)
//   DAV_FOLDER_ETAGS  "1": folders get an ETag that changes whenever anything below them
//                     changes, and every item an oc:fileid, as Nextcloud reports them
//   DAV_USER/DAV_PASS require HTTP Basic auth with these credentials
//   DAV_ACCESS_LOG    a file that gets one line per request, "METHOD URI" (`php -S` itself
//                     logs connections, not requests)
//
// The server answers under /dav/.

require_once 'Sabre/autoload.php';

const OC_FILEID = '{http://owncloud.org/ns}fileid';

/** A file that also reports its inode as oc:fileid (stable across edits and renames). */
class IdFile extends \Sabre\DAV\FSExt\File {
    function getProperties($properties) {
        $r = parent::getProperties($properties);
        $r[OC_FILEID] = (string) fileinode($this->path);
        return $r;
    }
}

/** A folder whose ETag sums up its whole subtree: names and contents, recursively. */
class SubtreeEtagDirectory extends \Sabre\DAV\FSExt\Directory {
    public function getChild($name) {
        // The parent validates the name and throws NotFound / Forbidden.
        parent::getChild($name);
        $path = $this->path . '/' . $name;
        return is_dir($path) ? new SubtreeEtagDirectory($path) : new IdFile($path);
    }

    public function subtreeHash() {
        $names = scandir($this->path);
        sort($names, SORT_STRING);
        $parts = array();
        foreach ($names as $name) {
            if ($name === '.' || $name === '..' || $name === '.sabredav') continue;
            $path = $this->path . '/' . $name;
            if (is_dir($path)) {
                $child = new SubtreeEtagDirectory($path);
                $parts[] = $name . '/' . $child->subtreeHash();
            } else {
                $parts[] = $name . ':' . md5_file($path);
            }
        }
        return md5(implode("\n", $parts));
    }

    /** The same tag for If-Match, which SabreDAV asks of the node (as Nextcloud's folders). */
    function getETag() {
        return '"' . $this->subtreeHash() . '"';
    }

    function getProperties($properties) {
        $r = parent::getProperties($properties);
        $r['{DAV:}getetag'] = $this->getETag();
        $r[OC_FILEID] = (string) fileinode($this->path);
        return $r;
    }
}

/**
 * Moves with one rename(2), as Nextcloud does, so an item keeps its identity (inode, and so
 * oc:fileid); SabreDAV 1.8 itself copies and deletes when the folder changes. The server has
 * already checked that the source exists, the target parent exists and the Overwrite header.
 */
class RenamingTree extends \Sabre\DAV\ObjectTree {
    private $rootDir;

    public function __construct(\Sabre\DAV\ICollection $root, $rootDir) {
        parent::__construct($root);
        $this->rootDir = $rootDir;
    }

    public function move($sourcePath, $destinationPath) {
        list($sourceDir) = \Sabre\DAV\URLUtil::splitPath($sourcePath);
        list($destinationDir) = \Sabre\DAV\URLUtil::splitPath($destinationPath);
        $this->getNodeForPath($sourcePath);
        $this->getNodeForPath($destinationDir);
        if (!rename($this->rootDir . '/' . $sourcePath, $this->rootDir . '/' . $destinationPath)) {
            throw new \Sabre\DAV\Exception('rename failed');
        }
        $this->markDirty($sourceDir);
        $this->markDirty($destinationDir);
    }
}

class EnvBasicAuth extends \Sabre\DAV\Auth\Backend\AbstractBasic {
    protected function validateUserPass($username, $password) {
        return $username === getenv('DAV_USER') && $password === getenv('DAV_PASS');
    }
}

if (getenv('DAV_ACCESS_LOG')) {
    error_log($_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI'] . "\n", 3, getenv('DAV_ACCESS_LOG'));
}

$rootDir = getenv('DAV_ROOT');
if (!$rootDir || !is_dir($rootDir)) {
    http_response_code(500);
    echo "DAV_ROOT is not set to a directory\n";
    exit;
}

$root = getenv('DAV_FOLDER_ETAGS') === '1'
    ? new SubtreeEtagDirectory($rootDir)
    : new \Sabre\DAV\FSExt\Directory($rootDir);
$server = new \Sabre\DAV\Server(new RenamingTree($root, $rootDir));
$server->setBaseUri('/dav/');
if (getenv('DAV_USER') !== false && getenv('DAV_USER') !== '') {
    $server->addPlugin(new \Sabre\DAV\Auth\Plugin(new EnvBasicAuth(), 'cloudsync-test'));
}
$server->exec();
