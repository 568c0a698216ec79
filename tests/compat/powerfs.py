"""A FUSE filesystem that loses what was not synced when the power is cut (LazyFS-style).

Every file and directory has two states: the one programs see, and the durable one a disk would
still hold after a power loss. Only these make data durable, as POSIX and Linux filesystems
promise and no more:

- `fsync`/`fdatasync` of a file (and `msync` of its mapping, which the kernel turns into writes
  and an fsync): its content and size. Not its name: a new or renamed file's directory entry is
  durable only after
- `fsync` of its directory: that directory's entries (creations, renames, deletions in it).

A power cut (`cut`) puts every file and directory back to its durable state: unsynced writes,
sizes and directory entries vanish, deleted files that were not dir-synced come back. The cut
happens while the filesystem is unmounted, so no page cache of the kernel survives it either.

Data lives in this process's memory (both states), so the filesystem is only for tests. The
kernel's page cache stays on (no direct_io), so programs can `mmap` files, as the broker does
with its indexes.

Run as `python3 powerfs.py MOUNTPOINT`; `POWERFS_FSYNC_DELAY_MS` makes every fsync take that
long (a slow disk), for the paths starting with one of the prefixes listed in the file
`.slow_fsync` at the root, without stalling other operations meanwhile. Creating `.power_off`
at the root turns the power off: from then on every fsync fails (EIO) and makes nothing
durable, until the next cut. It prints `mounted N` each time mount N is ready. When
the mount point is unmounted, it reads one command from stdin: `cut` (drop everything not
durable, print `cut ...` with what was dropped, mount again), `cut SEED` (the same, torn: files
keep a random part of their unsynced appends) or `stop` (exit). `PowerFs` below
drives it from a test.

Disk faults: the file `.faults` at the root lists one fault a line, `KIND PATTERN`, where KIND
is `eio-write`, `eio-fsync`, `eio-read` or `enospc` and PATTERN a shell pattern (`fnmatch`,
`*` crosses `/`) over paths as the filesystem sees them (`/b0/t-0/00000000000000000000.log`).
A matching write (or a truncate that grows the file) fails with EIO or ENOSPC, changing
nothing; a matching fsync fails with EIO and makes nothing durable; a matching read fails with
EIO. Writing `PATH OFFSET BIT` to the file `.flip` at the root flips that bit of the file's
stored bytes (both what programs see and the durable copy), as a disk returning a rotten
sector would; `PowerFs.flip_bit` also drops the kernel's page cache so readers see it.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import random
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


SLOW_PATHS = ".slow_fsync"
# Creating this file at the root turns the power off: every fsync from then on (even one
# already waiting on a slow disk) fails with EIO and makes nothing durable, until the next cut.
POWER_OFF = ".power_off"
FAULTS = ".faults"
FLIP = ".flip"
FAULT_KINDS = ("eio-write", "eio-fsync", "eio-read", "enospc")


class Node:
    """A file or directory: its visible state and its durable state."""

    __slots__ = ("is_dir", "mode", "data", "durable", "dirty_from", "sizes", "children",
                 "durable_children", "mtime_ns", "syncs_begun", "syncs_applied", "writes")

    def __init__(self, is_dir: bool, mode: int):
        self.is_dir = is_dir
        self.mode = mode
        self.mtime_ns = time.time_ns()
        self.syncs_begun = self.syncs_applied = self.writes = 0
        if is_dir:
            self.children: dict[str, Node] = {}
            self.durable_children: dict[str, Node] = {}
        else:
            self.data = bytearray()
            self.durable = bytearray()
            # Lowest offset changed since the last fsync: the bytes below it equal the durable ones.
            self.dirty_from: int | None = None
            # The sizes the file had after each write or truncate since the last fsync: where a
            # torn cut may end it.
            self.sizes: list[int] = []

    def touch(self, offset: int):
        self.writes += 1
        self.mtime_ns = time.time_ns()
        if self.dirty_from is None or offset < self.dirty_from:
            self.dirty_from = offset
        if not self.sizes or self.sizes[-1] != len(self.data):
            self.sizes.append(len(self.data))

    def begin_sync(self):
        """What an fsync called now makes durable: the state as of the call, not what is
        written while a slow fsync waits."""
        self.syncs_begun += 1
        if self.is_dir:
            return self.syncs_begun, dict(self.children)
        if self.dirty_from is None:
            return self.syncs_begun, None
        lo = min(self.dirty_from, len(self.durable))
        return self.syncs_begun, (lo, bytes(self.data[lo:]), self.writes)

    def end_sync(self, snapshot) -> None:
        seq, state = snapshot
        if seq < self.syncs_applied:
            return  # a later fsync already finished
        self.syncs_applied = seq
        if self.is_dir:
            self.durable_children = state
        elif state is not None:
            lo, tail, writes = state
            self.durable[lo:] = tail
            if writes == self.writes:
                # Clean only if nothing was written while the fsync waited; else the file
                # stays dirty from the same place, which still covers every unsynced byte.
                self.dirty_from = None
                self.sizes = []


def cut(root: Node, rng=None) -> dict[str, int]:
    """Puts every node reachable through durable entries back to its durable state.

    With `rng` the cut is torn: a file that grew since its last fsync keeps its unsynced
    appended bytes up to one of the sizes it had after a write (a random one), or up to a random
    byte short of it, as a disk may have written some pages of a file and its new size before
    the power went. Overwrites of synced bytes are still undone."""
    dropped = {"files_reverted": 0, "bytes_lost": 0, "entries_reverted": 0, "torn_files": 0}
    stack = [root]
    while stack:
        d = stack.pop()
        if d.children.keys() != d.durable_children.keys() or any(
            d.children[n] is not d.durable_children[n] for n in d.children
        ):
            dropped["entries_reverted"] += 1
        d.children = dict(d.durable_children)
        for child in d.children.values():
            if child.is_dir:
                stack.append(child)
            elif child.dirty_from is not None:
                dropped["files_reverted"] += 1
                kept = bytearray(child.durable)
                if rng is not None:
                    size = rng.choice([len(kept)] + child.sizes)
                    if size > len(kept) and rng.random() < 0.5:
                        size = rng.randint(len(kept), size)  # within a write: a torn batch
                    if size > len(kept):
                        kept += child.data[len(kept):size]
                        dropped["torn_files"] += 1
                    else:
                        del kept[size:]
                dropped["bytes_lost"] += max(0, len(child.data) - len(kept))
                child.data = kept
                child.durable = bytearray(kept)
                child.dirty_from = None
                child.sizes = []
    return dropped


def serve(mountpoint: str) -> None:
    import mfusepy as fuse

    def fail(code):
        raise fuse.FuseOSError(code)

    class Ops(fuse.Operations):
        use_ns = True

        def __init__(self):
            self.root = Node(True, 0o755)
            self.handles: dict[int, Node] = {}
            self.next_fh = 1
            self.mounts = 0
            self.powered = True

        def _faulty(self, kind: str, path: str) -> bool:
            control = self.root.children.get(FAULTS)
            if control is None or control.is_dir or path.startswith("/."):
                return False
            for line in bytes(control.data).decode(errors="replace").splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and parts[0] == kind and fnmatch.fnmatchcase(path, parts[1]):
                    return True
            return False

        def _write_faults(self, path: str):
            if self._faulty("enospc", path):
                fail(errno.ENOSPC)
            if self._faulty("eio-write", path):
                fail(errno.EIO)

        def _flip(self, command: bytes):
            target, offset, bit = command.decode().split()
            n = self._lookup(target)
            offset, mask = int(offset), 1 << int(bit)
            n.data[offset] ^= mask
            if offset < len(n.durable):
                n.durable[offset] ^= mask

        def init(self, path):
            self.mounts += 1
            print(f"mounted {self.mounts}", flush=True)

        def _lookup(self, path: str) -> Node:
            node = self.root
            for part in path.split("/"):
                if not part:
                    continue
                if not node.is_dir or part not in node.children:
                    fail(errno.ENOENT)
                node = node.children[part]
            return node

        def _parent(self, path: str) -> tuple[Node, str]:
            head, name = path.rstrip("/").rsplit("/", 1)
            parent = self._lookup(head)
            if not parent.is_dir:
                fail(errno.ENOTDIR)
            return parent, name

        def _handle(self, node: Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh

        def _node(self, path, fh) -> Node:
            # A handle keeps reaching its file after the name is unlinked, as on a disk.
            if fh and fh in self.handles:
                return self.handles[fh]
            return self._lookup(path)

        def getattr(self, path, fh=None):
            n = self._node(path, fh)
            t = n.mtime_ns
            if n.is_dir:
                return dict(st_mode=stat.S_IFDIR | n.mode, st_nlink=2, st_size=0,
                            st_mtime=t, st_ctime=t, st_atime=t)
            size = len(n.data)
            return dict(st_mode=stat.S_IFREG | n.mode, st_nlink=1, st_size=size,
                        st_blocks=(size + 511) // 512, st_mtime=t, st_ctime=t, st_atime=t)

        def readdir(self, path, fh):
            return [".", ".."] + list(self._lookup(path).children)

        def opendir(self, path):
            if not self._lookup(path).is_dir:
                fail(errno.ENOTDIR)
            return 0

        def mkdir(self, path, mode):
            parent, name = self._parent(path)
            if name in parent.children:
                fail(errno.EEXIST)
            parent.children[name] = Node(True, mode & 0o7777)
            parent.mtime_ns = time.time_ns()
            return 0

        def rmdir(self, path):
            parent, name = self._parent(path)
            node = parent.children.get(name) or fail(errno.ENOENT)
            if not node.is_dir:
                fail(errno.ENOTDIR)
            if node.children:
                fail(errno.ENOTEMPTY)
            del parent.children[name]
            return 0

        def create(self, path, mode, flags=0):
            if path == "/" + POWER_OFF:
                self.powered = False
            parent, name = self._parent(path)
            node = parent.children.get(name)
            if node is None:
                node = Node(False, mode & 0o7777)
                parent.children[name] = node
                parent.mtime_ns = time.time_ns()
            elif flags & os.O_EXCL:
                fail(errno.EEXIST)
            if flags & os.O_TRUNC:
                self._truncate(node, 0)
            return self._handle(node)

        def open(self, path, flags):
            node = self._lookup(path)
            if node.is_dir:
                fail(errno.EISDIR)
            if flags & os.O_TRUNC:
                self._truncate(node, 0)
            return self._handle(node)

        def release(self, path, fh):
            self.handles.pop(fh, None)
            return 0

        def read(self, path, size, offset, fh):
            if self._faulty("eio-read", path):
                fail(errno.EIO)
            return bytes(self._node(path, fh).data[offset:offset + size])

        def write(self, path, data, offset, fh):
            if path == "/" + FLIP:
                self._flip(data)
                return len(data)
            self._write_faults(path)
            n = self._node(path, fh)
            if offset > len(n.data):
                n.data.extend(bytes(offset - len(n.data)))
            n.data[offset:offset + len(data)] = data
            n.touch(offset)
            return len(data)

        def _truncate(self, n: Node, length: int):
            if length < len(n.data):
                del n.data[length:]
            else:
                n.data.extend(bytes(length - len(n.data)))
            n.touch(length)

        def truncate(self, path, length, fh=None):
            n = self._node(path, fh)
            if n.is_dir:
                fail(errno.EISDIR)
            if length > len(n.data):
                self._write_faults(path)
            self._truncate(n, length)
            return 0

        def fallocate(self, path, mode, offset, size, fh):
            # Reservations are a hint to the broker; it goes on without them.
            fail(errno.EOPNOTSUPP)

        def unlink(self, path):
            parent, name = self._parent(path)
            node = parent.children.get(name) or fail(errno.ENOENT)
            if node.is_dir:
                fail(errno.EISDIR)
            del parent.children[name]
            return 0

        def rename(self, old, new):
            op, oname = self._parent(old)
            np, nname = self._parent(new)
            node = op.children.get(oname) or fail(errno.ENOENT)
            target = np.children.get(nname)
            if target is not None and target.is_dir and target.children:
                fail(errno.ENOTEMPTY)
            del op.children[oname]
            np.children[nname] = node
            return 0

        def fsync(self, path, datasync, fh):
            n = self._node(path, fh)
            if self._faulty("eio-fsync", path):
                # A failed fsync makes nothing durable, and the disk may have dropped the
                # dirty pages: a later fsync that succeeds does not bring them back.
                fail(errno.EIO)
            snapshot = n.begin_sync()
            self._slow_disk(path)
            if not self.powered:
                # A machine without power acknowledges nothing: the caller must not either.
                fail(errno.EIO)
            n.end_sync(snapshot)
            return 0

        def fsyncdir(self, path, datasync, fh):
            n = self._lookup(path)
            if self._faulty("eio-fsync", path):
                fail(errno.EIO)
            snapshot = n.begin_sync()
            self._slow_disk(path)
            if not self.powered:
                # A machine without power acknowledges nothing: the caller must not either.
                fail(errno.EIO)
            n.end_sync(snapshot)
            return 0

        def _slow_disk(self, path):
            pass

        def chmod(self, path, mode):
            self._lookup(path).mode = mode & 0o7777
            return 0

        def chown(self, path, uid, gid):
            return 0

        def utimens(self, path, times=None):
            return 0

        def statfs(self, path):
            return dict(f_bsize=4096, f_frsize=4096, f_blocks=1 << 24, f_bfree=1 << 23,
                        f_bavail=1 << 23, f_files=1 << 20, f_ffree=1 << 19, f_namemax=255)

    # A slow disk: each fsync takes this long, while other operations go on (the filesystem is
    # then multi-threaded, its state under one lock that an fsync does not hold while it waits).
    delay_s = float(os.environ.get("POWERFS_FSYNC_DELAY_MS", "0")) / 1000
    if delay_s:
        lock = threading.Lock()

        def slow(path: str) -> bool:
            control = ops.root.children.get(SLOW_PATHS)
            if control is None:
                return False
            prefixes = bytes(control.data).decode().split()
            return any(path.startswith(p) for p in prefixes)

        def guarded(f):
            @functools.wraps(f)
            def g(*args, **kwargs):
                with lock:
                    return f(*args, **kwargs)

            return g

        def slow_disk(self, path):
            # Called with the lock held, by fsync between taking its snapshot and making it
            # durable: other operations run while it waits.
            if slow(path or ""):
                lock.release()
                try:
                    time.sleep(delay_s)
                finally:
                    lock.acquire()

        for name, f in list(vars(Ops).items()):
            if callable(f) and not name.startswith("_") and name != "init":
                setattr(Ops, name, guarded(f))
        Ops._slow_disk = slow_disk
    ops = Ops()
    while True:
        fuse.FUSE(ops, mountpoint, foreground=True, nothreads=not delay_s, fsname="powerfs")
        command = sys.stdin.readline().split()
        if not command or command[0] != "cut":
            return
        dropped = cut(ops.root, random.Random(int(command[1])) if len(command) > 1 else None)
        ops.handles.clear()
        ops.powered = True
        print("cut " + " ".join(f"{k}={v}" for k, v in dropped.items()), flush=True)


class PowerFs:
    """Drives a `powerfs.py` process from a test: the mount point, power cuts, teardown."""

    def __init__(self, mountpoint: Path, log: Path, fsync_delay_ms: float = 0):
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.cuts: list[dict[str, int]] = []
        from conftest import die_with_parent

        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(mountpoint)],
            env={**os.environ, "POWERFS_FSYNC_DELAY_MS": str(fsync_delay_ms)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log, "wb"),
            text=True,
            preexec_fn=die_with_parent,
        )
        self._expect("mounted 1")

    def _expect(self, prefix: str) -> str:
        line = self.proc.stdout.readline().strip()
        assert line.startswith(prefix), f"powerfs said {line!r}, expected {prefix!r}: {self.log.read_text()[-2000:]}"
        return line

    def _unmount(self):
        for _ in range(100):
            r = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.05)  # a killed process's files close a moment after it is reaped
        raise AssertionError(f"umount {self.mountpoint}: {r.stderr}")

    def power_off(self):
        """From now on nothing more becomes durable, fsyncs in progress included. Then kill
        every process using the mount, and `power_cut`."""
        (self.mountpoint / POWER_OFF).touch()

    def power_cut(self, torn_seed: int | None = None) -> dict[str, int]:
        """Drops everything not durable (with `torn_seed`, keeps a random part of unsynced
        appends: see `cut`). Every process using the mount must be dead already, killed after
        `power_off`."""
        self._unmount()
        self.proc.stdin.write("cut\n" if torn_seed is None else f"cut {torn_seed}\n")
        self.proc.stdin.flush()
        fields = self._expect("cut").split()[1:]
        dropped = {k: int(v) for k, v in (f.split("=") for f in fields)}
        self._expect("mounted")
        self.cuts.append(dropped)
        return dropped

    def set_faults(self, faults: list[tuple[str, str]]):
        """Replaces the injected faults: (kind, pattern) pairs, patterns relative to the mount
        point (`b0/*.log`); an empty list clears them."""
        lines = []
        for kind, pattern in faults:
            assert kind in FAULT_KINDS, kind
            lines.append(f"{kind} /{pattern.lstrip('/')}\n")
        (self.mountpoint / FAULTS).write_text("".join(lines))

    def flip_bit(self, path: Path, offset: int, bit: int = 0):
        """Flips one bit of `path`'s stored bytes (on the mount), then drops the kernel's page
        cache so that the next read of it comes from the filesystem."""
        rel = "/" + str(path.relative_to(self.mountpoint))
        (self.mountpoint / FLIP).write_text(f"{rel} {offset} {bit}")
        self.drop_caches()

    def drop_caches(self):
        """Drops the kernel's clean page cache, so that the next reads reach the filesystem
        (and meet the faults injected for reads)."""
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")

    def sync_tree(self, root: Path):
        """Makes everything under `root` (on the mount) durable, as `sync` would."""
        for d, dirs, files in os.walk(root, topdown=False):
            for name in files:
                with open(os.path.join(d, name), "rb+") as f:
                    os.fsync(f.fileno())
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        fd = os.open(root.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def stop(self):
        if self.proc.poll() is not None:
            return
        if os.path.ismount(self.mountpoint):
            r = subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def cluster_on_powerfs(tmp_path: Path, request, two_dirs: bool = False, sync: bool = False,
                       fsync_delay_ms: float = 0):
    """A three-node `test_cluster.Cluster` (not started) whose data dirs live on one powerfs
    mount, `node<N>` each (with `two_dirs`, log dirs `node<N>/a` and `node<N>/b`); `sync`
    makes the copied dirs durable before any power cut. Yields (cluster, fs); stops both."""
    import shutil

    from test_cluster import Cluster

    c = Cluster(tmp_path, extra={"replica.lag.time.max.ms": "3000"})
    request.node._strata_brokers = c.nodes
    fs = PowerFs(tmp_path / "mnt", tmp_path / "powerfs.log", fsync_delay_ms=fsync_delay_ms)
    try:
        for b in c.nodes:
            on_fs = fs.mountpoint / f"node{b.node_id}"
            data = on_fs / "a" if two_dirs else on_fs
            shutil.copytree(b.data_dir, data)
            b.data_dir = data
            if two_dirs:
                b.extra_sets["log.dirs"] = f"{on_fs / 'a'},{on_fs / 'b'}"
        if sync:
            fs.sync_tree(fs.mountpoint)
        yield c, fs
    finally:
        c.cleanup()
        fs.stop()


def fuse_available() -> bool:
    """Whether this machine can mount powerfs: /dev/fuse, root, and the Python binding."""
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError):
        return False
    return os.path.exists("/dev/fuse") and os.geteuid() == 0


if __name__ == "__main__":
    serve(sys.argv[1])
