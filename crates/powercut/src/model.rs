//! The file system as the disk would see it: every file's and directory's current state, and
//! the state it would come back with after a power cut.
//!
//! The rule is POSIX's, taken strictly (as LazyFS does): a file's contents and size become
//! durable when the file is `fsync`'d or `fdatasync`'d; a name (created, removed or renamed)
//! becomes durable when its parent directory is `fsync`'d. Nothing else makes anything
//! durable: not closing a file, not `sync_file_range`, not an `fsync` of the file a name
//! points to. [`Model::cut`] forgets what was not made durable and keeps, per file and per
//! directory, one of the outcomes a real disk may leave (see [`Outcome`]).
//!
//! This module is plain data, no I/O: the FUSE adapter (`crate::fs`) calls it, and its unit
//! tests check the rule directly.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};

pub use crate::rng::Rng;

/// An inode number. 1 is the root directory; numbers are never reused, so a handle the kernel
/// kept from before a cut can never reach a different file.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT: Ino = 1;

/// What a power cut leaves of one file's or directory's changes made since it was last synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing unsynced reached the disk: the state of the last sync.
    Lost,
    /// The size reached the disk but not the data: the synced contents, then zeros up to the
    /// current size (ext4 with delayed allocation after a metadata commit). Directories treat
    /// this as [`Outcome::Lost`].
    Zeroed,
    /// The unsynced bytes reached the disk in order but only partly: the synced contents
    /// with a prefix of the changed range written over them (a torn write). Directories treat
    /// this as [`Outcome::Lost`].
    Torn,
    /// Some pages of the unsynced range reached the disk and others did not, in no order
    /// (writeback and the disk's cache reorder writes): each 4 KiB page of the changed range
    /// is the new one or the old one, and the size is the new or the old. Directories treat
    /// this as [`Outcome::Lost`].
    Scattered,
    /// Everything reached the disk (the kernel had written it back before the cut).
    Kept,
}

/// The page size for [`Outcome::Scattered`].
const PAGE: usize = 4096;

/// A regular file.
#[derive(Debug, Clone, Default)]
struct File {
    data: Vec<u8>,
    /// The contents and size as of the last fsync.
    durable: Vec<u8>,
    /// The byte range changed since the last fsync (`lo..hi`), if any.
    dirty: Option<(usize, usize)>,
}

impl File {
    fn touch(&mut self, lo: usize, hi: usize) {
        self.dirty = Some(match self.dirty {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }

    fn sync(&mut self) {
        if let Some((lo, hi)) = self.dirty.take() {
            self.durable.resize(self.data.len(), 0);
            let hi = hi.min(self.data.len());
            if lo < hi {
                self.durable[lo..hi].copy_from_slice(&self.data[lo..hi]);
            }
        }
    }

    fn cut(&mut self, outcome: Outcome, rng: &mut Rng) {
        let Some((lo, hi)) = self.dirty.take() else {
            return;
        };
        match outcome {
            Outcome::Lost => self.data = self.durable.clone(),
            Outcome::Zeroed => {
                let len = self.data.len().max(self.durable.len());
                self.data = self.durable.clone();
                self.data.resize(len, 0);
            }
            Outcome::Torn => {
                let mut next = self.durable.clone();
                let hi = hi.min(self.data.len());
                if lo < hi {
                    let upto = lo + rng.below((hi - lo) as u64 + 1) as usize;
                    if next.len() < upto {
                        next.resize(upto, 0);
                    }
                    next[lo..upto].copy_from_slice(&self.data[lo..upto]);
                }
                self.data = next;
            }
            Outcome::Scattered => {
                let len = if rng.below(2) == 0 {
                    self.data.len()
                } else {
                    self.durable.len()
                };
                let mut next = self.durable.clone();
                next.resize(len.max(next.len()), 0);
                let hi = hi.min(self.data.len());
                let mut page = lo - lo % PAGE;
                while page < hi {
                    let (a, b) = (page.max(lo), (page + PAGE).min(hi));
                    if rng.below(2) == 0 && b <= next.len() {
                        next[a..b].copy_from_slice(&self.data[a..b]);
                    }
                    page += PAGE;
                }
                next.truncate(len);
                self.data = next;
            }
            Outcome::Kept => {}
        }
        self.durable = self.data.clone();
    }
}

/// A directory: names to inodes.
#[derive(Debug, Clone, Default)]
struct Dir {
    entries: BTreeMap<OsString, Ino>,
    /// The entries as of the last fsync of this directory.
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug, Clone)]
enum Node {
    File(File),
    Dir(Dir),
}

/// The kind of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Attributes the adapter reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Its inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (files) or number of entries (directories).
    pub size: u64,
    /// Permission bits.
    pub mode: u16,
    /// The names that reach it now (files; 2 for a directory, as its own `.` and its name).
    pub links: u32,
}

/// Why an operation failed (each maps to one errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory.
    NotFound,
    /// The name exists.
    Exists,
    /// A directory was expected.
    NotDir,
    /// A file was expected.
    IsDir,
    /// The directory is not empty.
    NotEmpty,
    /// Not supported by this model.
    Invalid,
}

/// What a cut did, for the test's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose unsynced changes were dropped, zeroed, torn or kept.
    pub files_changed: usize,
    /// Directories whose unsynced entries were dropped.
    pub dirs_reverted: usize,
    /// Inodes no durable name reaches any more (gone).
    pub inodes_lost: usize,
}

/// The whole file system.
#[derive(Debug, Clone)]
pub struct Model {
    nodes: HashMap<Ino, (Node, u16)>,
    next: Ino,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty file system: a root directory, itself durable.
    pub fn new() -> Model {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, (Node::Dir(Dir::default()), 0o755));
        Model {
            nodes,
            next: ROOT + 1,
        }
    }

    fn dir(&self, ino: Ino) -> Result<&Dir, FsError> {
        match self.nodes.get(&ino) {
            Some((Node::Dir(d), _)) => Ok(d),
            Some(_) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir, FsError> {
        match self.nodes.get_mut(&ino) {
            Some((Node::Dir(d), _)) => Ok(d),
            Some(_) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut File, FsError> {
        match self.nodes.get_mut(&ino) {
            Some((Node::File(f), _)) => Ok(f),
            Some(_) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// The attributes of `ino`.
    pub fn attr(&self, ino: Ino) -> Result<Attr, FsError> {
        let (node, mode) = self.nodes.get(&ino).ok_or(FsError::NotFound)?;
        Ok(match node {
            Node::File(f) => Attr {
                ino,
                kind: Kind::File,
                size: f.data.len() as u64,
                mode: *mode,
                links: self.names_of(ino),
            },
            Node::Dir(d) => Attr {
                ino,
                kind: Kind::Dir,
                size: d.entries.len() as u64,
                mode: *mode,
                links: 2,
            },
        })
    }

    /// How many directory entries name `ino` now (a scan: the file systems of the tests hold
    /// tens of files).
    fn names_of(&self, ino: Ino) -> u32 {
        let named = self.nodes.values().map(|(node, _)| match node {
            Node::Dir(d) => d.entries.values().filter(|&&e| e == ino).count(),
            Node::File(_) => 0,
        });
        named.sum::<usize>() as u32
    }

    /// The inode `name` in `parent` names.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError> {
        let ino = *self
            .dir(parent)?
            .entries
            .get(name)
            .ok_or(FsError::NotFound)?;
        self.attr(ino)
    }

    /// The entries of a directory, in name order.
    pub fn entries(&self, dir: Ino) -> Result<Vec<(OsString, Ino, Kind)>, FsError> {
        let d = self.dir(dir)?;
        Ok(d.entries
            .iter()
            .map(|(name, ino)| {
                let kind = match self.nodes.get(ino) {
                    Some((Node::Dir(_), _)) => Kind::Dir,
                    _ => Kind::File,
                };
                (name.clone(), *ino, kind)
            })
            .collect())
    }

    fn insert(
        &mut self,
        parent: Ino,
        name: &OsStr,
        node: Node,
        mode: u16,
    ) -> Result<Attr, FsError> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, (node, mode));
        self.dir_mut(parent)?
            .entries
            .insert(name.to_os_string(), ino);
        self.attr(ino)
    }

    /// Creates an empty file (not yet durable: neither its name nor its contents).
    pub fn create(&mut self, parent: Ino, name: &OsStr, mode: u16) -> Result<Attr, FsError> {
        self.insert(parent, name, Node::File(File::default()), mode)
    }

    /// Creates an empty directory (its name durable once `parent` is synced).
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, mode: u16) -> Result<Attr, FsError> {
        self.insert(parent, name, Node::Dir(Dir::default()), mode)
    }

    /// Removes the file `name` (the inode lives on while a durable name still reaches it).
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = *self
            .dir(parent)?
            .entries
            .get(name)
            .ok_or(FsError::NotFound)?;
        if matches!(self.nodes.get(&ino), Some((Node::Dir(_), _))) {
            return Err(FsError::IsDir);
        }
        self.dir_mut(parent)?.entries.remove(name);
        Ok(())
    }

    /// Gives the file `ino` one more name, `new_name` in `parent` (a hard link; the name is
    /// durable once `parent` is synced, like any other).
    pub fn link(&mut self, ino: Ino, parent: Ino, new_name: &OsStr) -> Result<Attr, FsError> {
        match self.nodes.get(&ino) {
            Some((Node::File(_), _)) => {}
            Some(_) => return Err(FsError::IsDir),
            None => return Err(FsError::NotFound),
        }
        if self.dir(parent)?.entries.contains_key(new_name) {
            return Err(FsError::Exists);
        }
        self.dir_mut(parent)?
            .entries
            .insert(new_name.to_os_string(), ino);
        self.attr(ino)
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = *self
            .dir(parent)?
            .entries
            .get(name)
            .ok_or(FsError::NotFound)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.dir_mut(parent)?.entries.remove(name);
        Ok(())
    }

    /// Renames `from/name` to `to/new_name`, replacing a file there (`no_replace`: refusing).
    pub fn rename(
        &mut self,
        from: Ino,
        name: &OsStr,
        to: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let ino = *self.dir(from)?.entries.get(name).ok_or(FsError::NotFound)?;
        if let Some(&there) = self.dir(to)?.entries.get(new_name) {
            if there == ino {
                return Ok(());
            }
            if no_replace {
                return Err(FsError::Exists);
            }
            match (
                &self.nodes[&ino].0,
                &self.nodes.get(&there).ok_or(FsError::NotFound)?.0,
            ) {
                (Node::File(_), Node::Dir(_)) => return Err(FsError::IsDir),
                (Node::Dir(_), Node::File(_)) => return Err(FsError::NotDir),
                (Node::Dir(_), Node::Dir(d)) if !d.entries.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        self.dir_mut(from)?.entries.remove(name);
        self.dir_mut(to)?
            .entries
            .insert(new_name.to_os_string(), ino);
        Ok(())
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        match self.nodes.get(&ino) {
            Some((Node::File(f), _)) => {
                let start = (offset as usize).min(f.data.len());
                let end = start.saturating_add(size).min(f.data.len());
                Ok(f.data[start..end].to_vec())
            }
            Some(_) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Writes `bytes` at `offset` (a gap before it reads as zeros).
    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<(), FsError> {
        let f = self.file_mut(ino)?;
        let start = offset as usize;
        let end = start + bytes.len();
        let old_len = f.data.len();
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[start..end].copy_from_slice(bytes);
        f.touch(start.min(old_len), end);
        Ok(())
    }

    /// Sets the size (truncating or extending with zeros).
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), FsError> {
        let f = self.file_mut(ino)?;
        let size = size as usize;
        let old = f.data.len();
        f.data.resize(size, 0);
        f.touch(size.min(old), size.max(old));
        Ok(())
    }

    /// Sets the permission bits.
    pub fn chmod(&mut self, ino: Ino, mode: u16) -> Result<(), FsError> {
        let (_, m) = self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
        *m = mode;
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: makes its contents (a
    /// file's bytes and size, a directory's names) durable.
    pub fn sync(&mut self, ino: Ino) -> Result<(), FsError> {
        match self.nodes.get_mut(&ino) {
            Some((Node::File(f), _)) => f.sync(),
            Some((Node::Dir(d), _)) => d.durable = d.entries.clone(),
            None => return Err(FsError::NotFound),
        }
        Ok(())
    }

    /// The power cut: every file and directory keeps only what `rng` lets survive of its
    /// unsynced changes (see [`Outcome`]), and inodes that no durable name reaches any more
    /// are gone.
    pub fn cut(&mut self, rng: &mut Rng) -> CutReport {
        self.cut_with(rng, false)
    }

    /// The strictest power cut: nothing unsynced survives anywhere ([`Outcome::Lost`]).
    pub fn cut_strict(&mut self) -> CutReport {
        self.cut_with(&mut Rng::new(0), true)
    }

    fn cut_with(&mut self, rng: &mut Rng, strict: bool) -> CutReport {
        let mut report = CutReport::default();
        let mut inos: Vec<Ino> = self.nodes.keys().copied().collect();
        inos.sort_unstable(); // deterministic for a seed
        for ino in inos {
            let outcome = if strict { Outcome::Lost } else { rng.outcome() };
            match self.nodes.get_mut(&ino) {
                Some((Node::File(f), _)) => {
                    if f.dirty.is_some() {
                        report.files_changed += 1;
                    }
                    f.cut(outcome, rng);
                }
                Some((Node::Dir(d), _)) => {
                    if outcome == Outcome::Kept {
                        d.durable = d.entries.clone();
                    } else {
                        if d.entries != d.durable {
                            report.dirs_reverted += 1;
                        }
                        d.entries = d.durable.clone();
                    }
                }
                None => {}
            }
        }
        // Keep what the root reaches.
        let mut reached = std::collections::HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !reached.insert(ino) {
                continue;
            }
            if let Some((Node::Dir(d), _)) = self.nodes.get(&ino) {
                stack.extend(d.entries.values().copied());
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reached.contains(ino));
        report.inodes_lost = before - self.nodes.len();
        report
    }
}

#[cfg(test)]
mod tests;
