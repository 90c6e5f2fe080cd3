//! The FUSE adapter: serves a [`Model`] to the kernel.
//!
//! Every file is opened with `FOPEN_DIRECT_IO`, so reads and writes reach the model instead
//! of the kernel's page cache, and entries and attributes are cached for zero seconds: after
//! a cut the kernel holds nothing the model has forgotten. File handles belong to an epoch; a
//! cut starts a new one, and a request on an older handle (one the killed process had open)
//! fails with EIO and changes nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Attr, FsError, Ino, Kind, Model};

/// How long the kernel may cache an entry or attributes: not at all.
const TTL: Duration = Duration::ZERO;

/// Counters of what the file system was asked to do, for the tests' reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `fsync`/`fdatasync` of files.
    pub file_syncs: u64,
    /// `fsync` of directories.
    pub dir_syncs: u64,
    /// Writes.
    pub writes: u64,
    /// Requests refused because their handle was opened before a cut.
    pub stale_handles: u64,
    /// Requests that change the file system or make something durable (every one of the
    /// above but the refused ones, and creations, removals, renames, links, truncations),
    /// served while the power was on.
    pub changes: u64,
    /// Such requests refused with EIO because the power was off
    /// ([`crate::Mount::power_off_after`]).
    pub unpowered: u64,
}

/// The model and the open handles, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) model: Model,
    /// Open handles of the current epoch: handle → inode.
    handles: HashMap<u64, Ino>,
    next_handle: u64,
    pub(crate) counters: Counters,
    /// How many more changing requests are served before the power goes off (`None`: the
    /// power stays on).
    pub(crate) power_left: Option<u64>,
}

impl State {
    /// Forgets every open handle (a cut: their process is gone).
    pub(crate) fn close_all(&mut self) {
        self.handles.clear();
    }

    /// Admits one request that changes the file system or makes something durable: EIO,
    /// changing nothing, once the power is off.
    fn change(&mut self) -> Result<(), Errno> {
        match self.power_left {
            Some(0) => {
                self.counters.unpowered += 1;
                Err(Errno::EIO)
            }
            left => {
                self.power_left = left.map(|n| n - 1);
                self.counters.changes += 1;
                Ok(())
            }
        }
    }

    fn open(&mut self, ino: Ino) -> FileHandle {
        self.next_handle += 1;
        self.handles.insert(self.next_handle, ino);
        FileHandle(self.next_handle)
    }

    /// The inode of a live handle.
    fn handle(&mut self, fh: FileHandle) -> Result<Ino, Errno> {
        match self.handles.get(&fh.0) {
            Some(ino) => Ok(*ino),
            None => {
                self.counters.stale_handles += 1;
                Err(Errno::EIO)
            }
        }
    }
}

/// The file system the kernel talks to.
#[derive(Debug, Clone)]
pub(crate) struct PowerCutFs {
    pub(crate) state: Arc<Mutex<State>>,
}

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Invalid => Errno::EINVAL,
    }
}

fn file_attr(a: Attr) -> FileAttr {
    let now = SystemTime::now();
    let kind = match a.kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    };
    let nlink = a.links;
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: UNIX_EPOCH,
        kind,
        perm: a.mode,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

impl PowerCutFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the model consistent before it can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `fsync` of the file or directory behind the handle `fh` (`fdatasync` is the same:
    /// the model keeps no times), counted in the counter `count` picks.
    fn sync(&self, fh: FileHandle, count: fn(&mut Counters) -> &mut u64, reply: ReplyEmpty) {
        let mut state = self.lock();
        let ino = match state.handle(fh) {
            Ok(ino) => ino,
            Err(e) => return reply.error(e),
        };
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        *count(&mut state.counters) += 1;
        match state.model.sync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lock().model.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().model.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        if let Some(fh) = fh {
            if let Err(e) = state.handle(fh) {
                return reply.error(e);
            }
        }
        if size.is_some() || mode.is_some() {
            if let Err(e) = state.change() {
                return reply.error(e);
            }
        }
        let result = (|| {
            if let Some(size) = size {
                state.model.truncate(ino.0, size)?;
            }
            if let Some(mode) = mode {
                state.model.chmod(ino.0, (mode & 0o7777) as u16)?;
            }
            state.model.attr(ino.0)
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = (mode & !umask & 0o7777) as u16;
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.model.mkdir(parent.0, name, mode) {
            Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.model.link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.model.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.model.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state
            .model
            .rename(parent.0, name, newparent.0, newname, no_replace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.lock();
        match state.model.attr(ino.0) {
            Ok(a) if a.kind == Kind::File => {
                if flags.0 & libc::O_TRUNC != 0 {
                    if let Err(e) = state.change() {
                        return reply.error(e);
                    }
                    if let Err(e) = state.model.truncate(ino.0, 0) {
                        return reply.error(errno(e));
                    }
                }
                let fh = state.open(ino.0);
                reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO);
            }
            Ok(_) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.lock();
        let ino = match state.handle(fh) {
            Ok(ino) => ino,
            Err(e) => return reply.error(e),
        };
        match state.model.read(ino, offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.lock();
        let ino = match state.handle(fh) {
            Ok(ino) => ino,
            Err(e) => return reply.error(e),
        };
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        state.counters.writes += 1;
        match state.model.write(ino, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(fh, |c| &mut c.file_syncs, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.lock();
        match state.model.attr(ino.0) {
            Ok(a) if a.kind == Kind::Dir => {
                let fh = state.open(ino.0);
                reply.opened(fh, FopenFlags::empty());
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.lock().model.entries(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [
            (OsStr::new(".").to_os_string(), ino.0, Kind::Dir),
            (OsStr::new("..").to_os_string(), ino.0, Kind::Dir),
        ];
        for (i, (name, child, kind)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), i as u64 + 1, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(fh, |c| &mut c.dir_syncs, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 1 TiB free: the server's disk reserve check must pass.
        let blocks = 1u64 << 28;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        let mode = (mode & !umask & 0o7777) as u16;
        match state.model.create(parent.0, name, mode) {
            Ok(a) => {
                let fh = state.open(a.ino);
                reply.created(
                    &TTL,
                    &file_attr(a),
                    Generation(0),
                    fh,
                    FopenFlags::FOPEN_DIRECT_IO,
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}
