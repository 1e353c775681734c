//! Checkpoint storage for Sluice over the `object_store` crate: a local folder (the
//! default), or S3-compatible object storage with the `s3` feature. It implements
//! [`sluice_core::checkpoint::CheckpointStorage`], whose calls block; they run on a small
//! Tokio runtime owned by the storage.
//!
//! Locations: a path (`checkpoints`, `/var/sluice/checkpoints`) or `file:///…` for a local
//! folder (created if missing); `s3://bucket/prefix` for S3, configured from the
//! environment as the AWS tools are (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible services such as MinIO,
//! `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_core::checkpoint::{CheckpointStorage, StorageError};
use std::path::Path;
use std::sync::Arc;

/// A [`CheckpointStorage`] over any `object_store` store.
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    describe: String,
    runtime: tokio::runtime::Runtime,
}

impl ObjectStorage {
    /// The storage at `location`: a local path (relative ones against `base`),
    /// `file:///abs/path`, or `s3://bucket/prefix` (feature `s3`).
    ///
    /// Errors: an unknown scheme, a folder that cannot be created, S3 without the
    /// feature or with incomplete configuration.
    pub fn open(location: &str, base: &Path) -> Result<ObjectStorage, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-storage")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the storage runtime: {e}"))?;
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::s3(rest, runtime);
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(format!(
                "checkpoint storage '{location}': unknown scheme (use a path, file:///…, or s3://bucket/prefix)"
            ));
        }
        let path = base.join(location.strip_prefix("file://").unwrap_or(location));
        std::fs::create_dir_all(&path).map_err(|e| {
            format!(
                "checkpoint storage {}: cannot create it: {e}",
                path.display()
            )
        })?;
        let path = path
            .canonicalize()
            .map_err(|e| format!("checkpoint storage {}: {e}", path.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| format!("checkpoint storage {}: {e}", path.display()))?;
        Ok(ObjectStorage {
            store: Arc::new(store),
            describe: format!("file://{}", path.display()),
            runtime,
        })
    }

    #[cfg(feature = "s3")]
    fn s3(rest: &str, runtime: tokio::runtime::Runtime) -> Result<ObjectStorage, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("checkpoint storage s3://{rest}: {e}"))?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(ObjectStorage {
            store,
            describe: format!("s3://{rest}"),
            runtime,
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(rest: &str, _: tokio::runtime::Runtime) -> Result<ObjectStorage, String> {
        Err(format!(
            "checkpoint storage s3://{rest}: this build has no S3 support (build sluice with the `s3` feature)"
        ))
    }

    fn path(&self, p: &str) -> Result<ObjectPath, StorageError> {
        ObjectPath::parse(p)
            .map_err(|e| StorageError::Other(format!("{}: bad path {p:?}: {e}", self.describe)))
    }

    fn error(&self, p: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => {
                StorageError::NotFound(format!("{}/{p}", self.describe))
            }
            e => StorageError::Other(format!("{}/{p}: {e}", self.describe)),
        }
    }
}

impl CheckpointStorage for ObjectStorage {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let p = self.path(path)?;
        self.runtime
            .block_on(self.store.put(&p, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.error(path, e))
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let p = self.path(path)?;
        self.runtime
            .block_on(async { self.store.get(&p).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error(path, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let p = self.path(prefix.trim_end_matches('/'))?;
        self.runtime
            .block_on(async {
                self.store
                    .list(Some(&p))
                    .map_ok(|m| m.location.to_string())
                    .try_collect::<Vec<String>>()
                    .await
            })
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(self.error(prefix, e)),
            })
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        let p = self.path(path)?;
        match self.runtime.block_on(self.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path, e)),
        }
    }
}

/// What every storage must do: store, read, list under a folder, delete (twice is fine),
/// and report a missing object as [`StorageError::NotFound`].
#[cfg(test)]
pub(crate) fn contract(s: &ObjectStorage) {
    s.put("job/chk-1/_metadata", b"{}".to_vec()).unwrap();
    s.put("job/chk-1/op/0/heap.kv", vec![1, 2, 3]).unwrap();
    s.put("job/chk-10/_metadata", b"{}".to_vec()).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![7u8; 300_000]).unwrap();
    assert_eq!(
        s.put_file("job/shared/op/0/1-a.sst", file.path()).unwrap(),
        300_000
    );
    assert_eq!(s.get("job/chk-1/op/0/heap.kv").unwrap(), vec![1, 2, 3]);
    let back = tempfile::NamedTempFile::new().unwrap();
    s.get_to_file("job/shared/op/0/1-a.sst", back.path())
        .unwrap();
    assert_eq!(std::fs::read(back.path()).unwrap(), vec![7u8; 300_000]);
    let mut l = s.list("job/chk-1").unwrap();
    l.sort();
    assert_eq!(l, ["job/chk-1/_metadata", "job/chk-1/op/0/heap.kv"]);
    assert_eq!(s.list("job/chk-2").unwrap(), Vec::<String>::new());
    s.delete("job/chk-1/_metadata").unwrap();
    s.delete("job/chk-1/_metadata").unwrap();
    assert!(matches!(
        s.get("job/chk-1/_metadata"),
        Err(StorageError::NotFound(_))
    ));
}

/// S3 against a real S3-compatible server: moto (`pip install 'moto[server]'`), started
/// here on a free port. `cargo test -p sluice-storage --features s3 -- --ignored`.
#[cfg(all(test, feature = "s3"))]
mod s3_tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    #[ignore = "needs moto_server on PATH (pip install 'moto[server]')"]
    fn s3_stores_lists_and_deletes_objects() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        /// Stops the server however the test ends.
        struct Server(std::process::Child);
        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _server = Server(
            std::process::Command::new("moto_server")
                .args(["-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("moto_server on PATH"),
        );
        let addr = format!("127.0.0.1:{port}");
        let t = std::time::Instant::now();
        let create_bucket = || -> std::io::Result<String> {
            let mut c = std::net::TcpStream::connect(&addr)?;
            write!(
                c,
                "PUT /sluice-test HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            let mut reply = String::new();
            c.read_to_string(&mut reply)?;
            Ok(reply)
        };
        let reply = loop {
            match create_bucket() {
                Ok(r) => break r,
                Err(_) if t.elapsed() < std::time::Duration::from_secs(30) => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) => panic!("moto_server did not start: {e}"),
            }
        };
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // The configuration a user gives in the environment.
        unsafe {
            std::env::set_var("AWS_ENDPOINT", format!("http://{addr}"));
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        let s = ObjectStorage::open("s3://sluice-test/checkpoints", Path::new("/")).unwrap();
        assert_eq!(s.describe(), "s3://sluice-test/checkpoints");
        contract(&s);
        let missing = ObjectStorage::open("s3://no-such-bucket/x", Path::new("/")).unwrap();
        let e = missing.put("a", vec![1]).unwrap_err();
        assert!(e.to_string().contains("s3://no-such-bucket/x/a"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_stores_lists_and_deletes_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStorage::open("ckpt", dir.path()).unwrap();
        contract(&s);
        assert!(dir.path().join("ckpt/job/chk-1/op/0/heap.kv").is_file());
        let e = ObjectStorage::open("gs://bucket", dir.path())
            .err()
            .unwrap();
        assert!(e.contains("unknown scheme"), "{e}");
        let e = ObjectStorage::open("s3://bucket/p", dir.path()).err();
        if cfg!(not(feature = "s3")) {
            assert!(e.unwrap().contains("no S3 support"));
        }
    }
}
