//! What `sipedge check` can tell about the store without changing it.
//!
//! Start creates `data_dir` and opens the store in it, and fails if it
//! cannot: the directory cannot be made, the store is not a redb file, or it
//! was written by a newer sipedge. `check` must refuse the same configs, but
//! an edge may be running on that directory, so nothing here writes:
//!
//! * the directory is looked at, not created: its nearest existing ancestor
//!   must be a directory we may write into;
//! * the store is opened through [`CopyOnWrite`], a view of the file that
//!   keeps redb's writes (its open marks the header, a format-1 store is
//!   re-marked 2) in memory, so the real open path and version rule run and
//!   the file is left byte for byte as it was;
//! * a store another process holds (redb takes an exclusive `flock`) belongs
//!   to a running edge, which opened it already: it is not probed.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::store::Store;
use super::{InventoryError, STORE_FILE};

/// What the probe found (every case start would accept).
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// No store yet: start will create `data_dir` (if needed) and the store.
    Fresh,
    /// The store opens and its format is one this build reads.
    Opens,
    /// The store was not closed cleanly; start repairs it before serving.
    NeedsRepair,
    /// Another process holds the store: an edge runs on this `data_dir`.
    InUse(PathBuf),
}

/// Looks at `data_dir` and the store in it as start would use them, without
/// creating or writing anything.
pub fn probe(data_dir: &Path) -> Result<Probe, InventoryError> {
    let store = data_dir.join(STORE_FILE);
    match std::fs::metadata(&store) {
        Ok(m) if m.is_file() => probe_store(&store),
        Ok(_) => Err(unusable(&store, "exists and is not a regular file")),
        Err(e) if missing(&e) => {
            creatable(data_dir)?;
            Ok(Probe::Fresh)
        }
        Err(e) => Err(InventoryError::DataDir { path: store, source: e }),
    }
}

/// Not there, or under something that is not a directory (`ENOTDIR`; its
/// `ErrorKind` needs a newer toolchain than ours).
fn missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Whether `create_dir_all(dir)` and creating a file in it can succeed: the
/// nearest existing ancestor is a directory we may write into.
fn creatable(dir: &Path) -> Result<(), InventoryError> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                return writable(at, libc::W_OK | libc::X_OK)
                    .map_err(|e| dir_error(dir, &format!("{}: {e}", at.display())))
            }
            Ok(_) => return Err(dir_error(dir, &format!("{} is not a directory", at.display()))),
            // A relative path's first component is created in the current
            // directory (a deleted current directory ends in the arm below).
            Err(e) if missing(&e) && at != Path::new(".") => {
                at = at.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            }
            Err(e) => return Err(InventoryError::DataDir { path: dir.to_owned(), source: e }),
        }
    }
}

/// `access(2)`: asks the kernel with the real user's rights, so a read-only
/// file system or a missing permission is found without trying a write.
fn writable(path: &Path, mode: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn unusable(path: &Path, why: impl ToString) -> InventoryError {
    InventoryError::Unusable { path: path.to_owned(), why: why.to_string() }
}

fn dir_error(path: &Path, why: &str) -> InventoryError {
    InventoryError::DataDir { path: path.to_owned(), source: io::Error::other(why.to_owned()) }
}

fn probe_store(path: &Path) -> Result<Probe, InventoryError> {
    writable(path, libc::R_OK | libc::W_OK).map_err(|e| unusable(path, e))?;
    let file = File::open(path).map_err(|e| unusable(path, e))?;
    // A shared lock: refused while an edge holds redb's exclusive one, and
    // held while we read so no edge starts writing under us meanwhile.
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(Probe::InUse(path.to_owned()));
        }
        return Err(unusable(path, e));
    }
    let view = CopyOnWrite::new(file).map_err(|e| unusable(path, e))?;
    // redb asserts on some malformed headers instead of returning an error;
    // a panic here is a corrupt file, not a crash of `check`.
    match std::panic::catch_unwind(move || Store::open_probe(view).map(drop)) {
        Ok(Ok(())) => Ok(Probe::Opens),
        Ok(Err(InventoryError::Store(e))) if matches!(*e, redb::Error::RepairAborted) => Ok(Probe::NeedsRepair),
        Ok(Err(e)) => Err(unusable(path, e)),
        Err(_) => Err(unusable(path, "not a sipedge store (redb could not read its header)")),
    }
}

/// Page size of the in-memory overlay; redb writes whole pages or headers.
const PAGE: u64 = 4096;
/// The most the overlay keeps; a clean open writes a few pages.
const MAX_OVERLAY_PAGES: usize = 4096;

/// A read-only file seen as a writable redb backend: writes land in memory
/// pages over the file's bytes, and are gone when it is dropped.
#[derive(Debug)]
struct CopyOnWrite {
    file: File,
    inner: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// The view's length (redb may grow it).
    len: u64,
    /// How much of the file is still visible (a shrink hides the rest).
    file_len: u64,
    pages: HashMap<u64, Vec<u8>>,
}

impl CopyOnWrite {
    fn new(file: File) -> io::Result<CopyOnWrite> {
        let len = file.metadata()?.len();
        Ok(CopyOnWrite { file, inner: Mutex::new(Overlay { len, file_len: len, pages: HashMap::new() }) })
    }

    fn lock(&self) -> MutexGuard<'_, Overlay> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current content of page `n` (overlay, else file, zero past its end).
    fn page(&self, o: &Overlay, n: u64) -> io::Result<Vec<u8>> {
        if let Some(p) = o.pages.get(&n) {
            return Ok(p.clone());
        }
        let mut buf = vec![0u8; PAGE as usize];
        let start = n * PAGE;
        if start < o.file_len {
            let take = (o.file_len - start).min(PAGE) as usize;
            let dst = buf.get_mut(..take).ok_or_else(|| io::Error::other("page bounds"))?;
            self.file.read_exact_at(dst, start)?;
        }
        Ok(buf)
    }
}

/// Calls `each(page, offset in page, offset in buffer, bytes)` for every
/// page piece of `offset..offset + len`.
fn pieces(offset: u64, len: usize, mut each: impl FnMut(u64, usize, usize, usize) -> io::Result<()>) -> io::Result<()> {
    let end = offset + len as u64;
    let mut pos = offset;
    while pos < end {
        let in_page = pos % PAGE;
        let n = (PAGE - in_page).min(end - pos);
        each(pos / PAGE, in_page as usize, (pos - offset) as usize, n as usize)?;
        pos += n;
    }
    Ok(())
}

fn out_of_bounds() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the store")
}

impl redb::StorageBackend for CopyOnWrite {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let o = self.lock();
        if offset.checked_add(len as u64).map_or(true, |end| end > o.len) {
            return Err(out_of_bounds());
        }
        let mut out = vec![0u8; len];
        pieces(offset, len, |page, at, into, n| {
            let src = self.page(&o, page)?;
            let from = src.get(at..at + n).ok_or_else(out_of_bounds)?;
            out.get_mut(into..into + n).ok_or_else(out_of_bounds)?.copy_from_slice(from);
            Ok(())
        })?;
        Ok(out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut o = self.lock();
        if len < o.len {
            // Bytes past a shrink read as zeros if the view grows again.
            o.file_len = o.file_len.min(len);
            let keep = len.div_ceil(PAGE);
            o.pages.retain(|&n, _| n < keep);
            if let Some(last) = o.pages.get_mut(&(len / PAGE)) {
                last.iter_mut().skip((len % PAGE) as usize).for_each(|b| *b = 0);
            }
        }
        o.len = len;
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut o = self.lock();
        if offset.checked_add(data.len() as u64).map_or(true, |end| end > o.len) {
            return Err(out_of_bounds());
        }
        pieces(offset, data.len(), |page, at, from, n| {
            let mut p = self.page(&o, page)?;
            let src = data.get(from..from + n).ok_or_else(out_of_bounds)?;
            p.get_mut(at..at + n).ok_or_else(out_of_bounds)?.copy_from_slice(src);
            if o.pages.len() >= MAX_OVERLAY_PAGES && !o.pages.contains_key(&page) {
                return Err(io::Error::other("the store's open wrote more than the probe keeps in memory"));
            }
            o.pages.insert(page, p);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::Store;

    fn bytes(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn a_missing_store_under_a_creatable_directory_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(&dir.path().join("a/b/c")).unwrap(), Probe::Fresh);
        assert!(!dir.path().join("a").exists(), "the probe must not create anything");
    }

    #[test]
    fn a_data_dir_under_a_file_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let e = probe(&dir.path().join("f/data")).unwrap_err().to_string();
        assert!(e.contains("is not a directory") && e.contains("/f"), "{e}");
    }

    #[test]
    fn a_closed_store_opens_and_is_left_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        drop(Store::open(&path).unwrap());
        let before = bytes(&path);
        assert_eq!(probe(dir.path()).unwrap(), Probe::Opens);
        assert_eq!(bytes(&path), before);
    }

    #[test]
    fn a_store_held_by_an_open_database_is_in_use_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let held = Store::open(&path).unwrap();
        assert_eq!(probe(dir.path()).unwrap(), Probe::InUse(path));
        drop(held);
        assert_eq!(probe(dir.path()).unwrap(), Probe::Opens);
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap().insert("version", 99).unwrap();
            txn.commit().unwrap();
        }
        let before = bytes(&path);
        let e = probe(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format version 99"), "{e}");
        assert_eq!(bytes(&path), before);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for garbage in [&b"not a database"[..], &[0xA5u8; 8192][..]] {
            std::fs::write(dir.path().join(STORE_FILE), garbage).unwrap();
            let e = probe(dir.path()).unwrap_err().to_string();
            assert!(e.contains(STORE_FILE), "{e}");
        }
        // An empty file is where start makes a new store: accepted.
        std::fs::write(dir.path().join(STORE_FILE), b"").unwrap();
        assert_eq!(probe(dir.path()).unwrap(), Probe::Opens);
    }

    #[test]
    fn the_overlay_reads_back_writes_and_zeros_past_a_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let v = CopyOnWrite::new(File::open(&path).unwrap()).unwrap();
        use redb::StorageBackend;
        v.write(4090, &[9; 12]).unwrap();
        assert_eq!(v.read(4088, 16).unwrap(), [&[1u8, 1][..], &[9; 12], &[1, 1]].concat());
        v.set_len(5000).unwrap();
        v.set_len(12_000).unwrap();
        assert_eq!(v.read(4998, 4).unwrap(), [1, 1, 0, 0]);
        assert_eq!(v.read(11_000, 1000).unwrap(), vec![0; 1000]);
        assert!(v.read(11_999, 2).is_err());
        assert_eq!(bytes(&path), vec![1u8; 10_000]);
    }
}
