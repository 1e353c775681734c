//! The portable state file: sorted key-value entries in a flat, checksummed format that
//! depends on no backend's file layout. Heap snapshots and savepoints are written in it,
//! and any backend can be loaded from it.
//!
//! ```text
//! "SLKV1\n" | entries: (key length u32 LE | key | value length u32 LE | value)* |
//! entry count u64 LE | xxh3-64 of everything before it, u64 LE
//! ```

use super::backend::StateError;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 6] = b"SLKV1\n";

/// Writes entries to a new file at `path`, which it creates (or truncates). Every error
/// names the file.
pub struct KvFileWriter {
    out: BufWriter<std::fs::File>,
    hasher: xxhash_rust::xxh3::Xxh3,
    count: u64,
    path: String,
}

impl KvFileWriter {
    /// Creates `path`. Errors name the path.
    pub fn create(path: &Path) -> Result<Self, StateError> {
        let name = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|e| StateError::new(&name, e))?;
        let mut w = KvFileWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            count: 0,
            path: name,
        };
        w.write_all(MAGIC)?;
        Ok(w)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.hasher.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(|e| StateError::new(&self.path, e))
    }

    /// Appends one entry.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.write_all(&(key.len() as u32).to_le_bytes())?;
        self.write_all(key)?;
        self.write_all(&(value.len() as u32).to_le_bytes())?;
        self.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer, flushes and syncs. Returns the number of entries.
    pub fn finish(mut self) -> Result<u64, StateError> {
        let count = self.count;
        self.write_all(&count.to_le_bytes())?;
        let sum = self.hasher.digest();
        self.out
            .write_all(&sum.to_le_bytes())
            .and_then(|_| self.out.flush())
            .and_then(|_| self.out.get_ref().sync_all())
            .map_err(|e| StateError::new(&self.path, e))?;
        Ok(count)
    }
}

/// Reads every entry of the file at `path` in order, calling `f(key, value)`. The
/// checksum is verified before `f` sees anything, so a corrupted or truncated file is an
/// error that names it and nothing is loaded from it.
pub fn read_kv_file(
    path: &Path,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<u64, StateError> {
    let name = path.display().to_string();
    let corrupt = |what: &str| StateError(format!("state file {name} is corrupted: {what}"));
    let mut bytes = Vec::new();
    BufReader::new(std::fs::File::open(path).map_err(|e| StateError::new(&name, e))?)
        .read_to_end(&mut bytes)
        .map_err(|e| StateError::new(&name, e))?;
    if bytes.len() < MAGIC.len() + 16 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a Sluice state file, or truncated"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let expected = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != expected {
        return Err(corrupt("checksum mismatch"));
    }
    let (entries, count) = body[MAGIC.len()..].split_at(body.len() - MAGIC.len() - 8);
    let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
    let mut at = 0;
    let next = |at: &mut usize| -> Result<&[u8], StateError> {
        let len = entries
            .get(*at..*at + 4)
            .ok_or_else(|| corrupt("entry cut short"))?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let data = entries
            .get(*at + 4..*at + 4 + len)
            .ok_or_else(|| corrupt("entry cut short"))?;
        *at += 4 + len;
        Ok(data)
    };
    let mut seen = 0u64;
    while at < entries.len() {
        let key = next(&mut at)?;
        let value = next(&mut at)?;
        f(key, value)?;
        seen += 1;
    }
    if seen != count {
        return Err(corrupt("entry count mismatch"));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kv");
        let mut w = KvFileWriter::create(&path).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; i as usize]))
            .collect();
        for (k, v) in &entries {
            w.put(k, v).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 100);
        let mut read = Vec::new();
        read_kv_file(&path, |k, v| {
            read.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(read, entries);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_kv_file(&path, |_, _| Ok(())).unwrap_err();
        assert!(
            e.0.contains("checksum mismatch") && e.0.contains("s.kv"),
            "{e}"
        );
        std::fs::write(&path, &bytes[..10]).unwrap();
        let e = read_kv_file(&path, |_, _| Ok(())).unwrap_err();
        assert!(e.0.contains("truncated"), "{e}");
    }
}
