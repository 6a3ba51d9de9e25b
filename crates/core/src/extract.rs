//! Extracting named files under a directory without ever leaving it: `extra --out-dir`.
//!
//! Every path component is opened relative to the handle of the one before, with
//! `O_NOFOLLOW | O_DIRECTORY` (a planted link or file in the way is an error, never
//! followed), and missing ones are made with `mkdirat`; files are written through
//! [`atomic_file`](crate::atomic_file) relative to their directory's handle. No path is
//! resolved from a string after a check, so there is nothing to race.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::check::name_problem;

/// Writes files under one directory.
pub struct Extractor {
    root: OwnedFd,
    /// `(device, inode)` of each file written, with its name: a later name that lands on
    /// one of them (a case-folding or normalizing file system) is refused.
    written: HashMap<(u64, u64), String>,
    /// The last parent directory used, by name (extracted names come sorted by folder).
    cache: Option<(String, OwnedFd)>,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

impl Extractor {
    /// Extracts under `dir`, which is made if missing (the path to it is the caller's:
    /// links in it are followed).
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Extractor {
            root: crate::atomic_file::open_dir(dir)?,
            written: HashMap::new(),
            cache: None,
        })
    }

    /// Writes `data` at `name` (a name that passes the rule of [`name_problem`]) atomically.
    /// On an error nothing of it is left: no file, no directory made for it.
    pub fn write(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        if let Some(why) = name_problem(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("name {why}"),
            ));
        }
        let (parent, file) = match name.rsplit_once('/') {
            Some((p, f)) => (p, f),
            None => ("", name),
        };
        let mut created: Vec<(Option<OwnedFd>, &str)> = Vec::new();
        let dir = match self.dir(parent, &mut created) {
            Ok(d) => d,
            Err(e) => {
                remove_made(&self.root, &created);
                return Err(e);
            }
        };
        let result = self.write_file(dir.as_fd(), name, file, data);
        match result {
            Ok(()) => {
                self.cache = Some((parent.to_string(), dir));
                Ok(())
            }
            Err(e) => {
                remove_made(&self.root, &created);
                self.cache = None;
                Err(e)
            }
        }
    }

    fn write_file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &str,
        file: &str,
        data: &[u8],
    ) -> io::Result<()> {
        // The field types vary by platform.
        #[allow(clippy::unnecessary_cast)]
        let identity = |st: &rustix::fs::Stat| (st.st_dev as u64, st.st_ino as u64);
        if let Ok(st) = rustix::fs::statat(dir, file, AtFlags::SYMLINK_NOFOLLOW)
            && let Some(first) = self.written.get(&identity(&st))
        {
            return Err(other(format!(
                "the file system already holds {first:?}, written just before, under this name \
                 (it folds case or normalizes Unicode): not replaced"
            )));
        }
        let dup = dir.try_clone_to_owned()?;
        crate::atomic_file::write_at(dup, OsStr::new(file), data).map_err(|e| {
            if e.raw_os_error() == Some(libc::EISDIR) {
                other(format!("{file:?} is a directory here: not replaced"))
            } else {
                e
            }
        })?;
        if let Ok(st) = rustix::fs::statat(dir, file, AtFlags::SYMLINK_NOFOLLOW) {
            self.written.insert(identity(&st), name.to_string());
        }
        Ok(())
    }

    /// The directory `path` (`/`-separated, relative to the root), made as needed; each
    /// one made is pushed on `created` with the handle of its parent.
    fn dir<'n>(
        &mut self,
        path: &'n str,
        created: &mut Vec<(Option<OwnedFd>, &'n str)>,
    ) -> io::Result<OwnedFd> {
        if let Some((p, fd)) = &self.cache
            && p == path
        {
            return fd.try_clone();
        }
        let mut cur: OwnedFd = self.root.try_clone()?;
        if path.is_empty() {
            return Ok(cur);
        }
        let mut walked = 0;
        for comp in path.split('/') {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let shown = &path[..walked + comp.len()];
            walked += comp.len() + 1;
            let next = match rustix::fs::openat(&cur, comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o777)) {
                        Ok(()) => created.push((Some(cur.try_clone()?), comp)),
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(errno(e)),
                    }
                    rustix::fs::openat(&cur, comp, flags, Mode::empty()).map_err(errno)?
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(other(format!(
                        "{shown:?} is a link or a file, not a directory: not followed"
                    )));
                }
                Err(e) => return Err(errno(e)),
            };
            cur = next;
        }
        Ok(cur)
    }
}

/// Removes the (empty) directories made for a name that could not be written, last first.
fn remove_made(_root: &OwnedFd, created: &[(Option<OwnedFd>, &str)]) {
    for (parent, comp) in created.iter().rev() {
        if let Some(p) = parent {
            let _ = rustix::fs::unlinkat(p, *comp, AtFlags::REMOVEDIR);
        }
    }
}
