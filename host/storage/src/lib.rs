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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_stores_lists_and_deletes_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStorage::open("ckpt", dir.path()).unwrap();
        s.put("job/chk-1/_metadata", b"{}".to_vec()).unwrap();
        s.put("job/chk-1/op/0/heap.kv", vec![1, 2, 3]).unwrap();
        s.put("job/chk-10/_metadata", b"{}".to_vec()).unwrap();
        assert!(dir.path().join("ckpt/job/chk-1/op/0/heap.kv").is_file());
        assert_eq!(s.get("job/chk-1/op/0/heap.kv").unwrap(), vec![1, 2, 3]);
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
