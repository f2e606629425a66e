//! Object storage through `object_store` (any S3 API; SeaweedFS in the tests).
//!
//! Keys: `p{partition}/e{epoch}/bundle/{first}-{last}-{n}-{nonce}.segs` for the
//! segment files of one commit (a bundle: one object a partition a commit, however
//! many communities and days it touched, split past `MAX_BUNDLE_BYTES`), `p{partition}/e{epoch}/seg/{span}/{community}-{id}.seg`
//! for a segment committed alone before bundles, and
//! `p{partition}/e{epoch}/dict/{start}-{len}-{nonce}` for a dictionary-log chunk
//! (`{start}-{len}` before nonces), and `p{partition}/e{epoch}/index/{through}-{nonce}.idx`
//! for the partition's index uploaded with a commit (`leases.index_key`). Each upload attempt has a nonce of its own
//! ([`upload_nonce`]). The epoch is
//! in every key, so an indexer whose lease was taken over never writes a key its
//! successor writes; puts are create-only (`If-None-Match: *`) all the same.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::config::S3Config;
use crate::error::{ClusterError, Result};

/// The bucket.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
}

/// One object as listed.
#[derive(Clone, Debug)]
pub struct Listed {
    pub key: String,
    pub last_modified_ms: i64,
    pub size: u64,
}

fn err(context: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> ClusterError {
    let key = key.to_string();
    move |source| ClusterError::Objects {
        context,
        key,
        source,
    }
}

/// A value no other upload of this process or another has (random per process, a
/// counter within it): in every key an indexer writes, so each upload attempt is an
/// object of its own. A retry after a failed commit never meets an object of an
/// earlier attempt (whose bytes may differ: compaction may have merged its segments
/// meanwhile), and every object's age, which the janitor goes by, is its own
/// upload's.
pub fn upload_nonce() -> u64 {
    use std::hash::BuildHasher;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // SipHash under keys random to the process (std's `RandomState`).
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n)
}

/// The key of a commit's bundle under `epoch`: new segment files of one commit, one
/// after another (each row of the catalog says where its file lies), named by the
/// lowest and highest segment ids it holds, how many, and an [`upload_nonce`].
pub fn bundle_key(partition: u32, epoch: i64, ids: (u64, u64), n: usize, nonce: u64) -> String {
    let (first, last) = ids;
    format!("p{partition}/e{epoch}/bundle/{first}-{last}-{n}-{nonce:016x}.segs")
}

/// The key of a dictionary-log chunk uploaded under `epoch` (with an
/// [`upload_nonce`]).
pub fn dict_key(partition: u32, epoch: i64, start: u64, len: u64, nonce: u64) -> String {
    format!("p{partition}/e{epoch}/dict/{start}-{len}-{nonce:016x}")
}

/// The key of a partition's index uploaded under `epoch` with a commit, covering
/// every event up to local sequence `through` (the index checkpoint format of
/// `storage/FORMAT.md`), with an [`upload_nonce`].
pub fn index_key(partition: u32, epoch: i64, through: u64, nonce: u64) -> String {
    format!("p{partition}/e{epoch}/index/{through}-{nonce:016x}.idx")
}

impl Objects {
    /// The bucket of `config`, path-style, plain HTTP allowed (a local endpoint); an
    /// `https://` endpoint is checked against the system's roots and, with `[tls]`
    /// installed (`crate::tls::install`), the cluster's CA.
    pub fn new(config: &S3Config) -> Result<Objects> {
        let mut options = object_store::ClientOptions::new().with_allow_http(true);
        // With `[tls]` installed: the cluster's CA as read at start.
        if let Some(tls) = crate::tls::installed() {
            for cert in crate::tls::ca_certificates() {
                let cert = object_store::Certificate::from_der(cert.as_ref())
                    .map_err(|e| crate::tls::tls_error(&tls.ca, e))?;
                options = options.with_root_certificate(cert);
            }
        }
        let store = AmazonS3Builder::new()
            .with_client_options(options)
            .with_endpoint(&config.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .build()
            .map_err(err("configure", &config.bucket))?;
        Ok(Objects {
            store: Arc::new(store),
        })
    }

    /// Writes `key` only if no object has that key. An object already there is fine
    /// when it has these very bytes (a retried upload of the same epoch); anything
    /// else is an error.
    pub async fn put_create(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = Path::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self.get(key).await?;
                if there == bytes {
                    Ok(())
                } else {
                    Err(ClusterError::Catalog {
                        partition: u32::MAX,
                        reason: format!("object {key} exists with other bytes"),
                    })
                }
            }
            Err(e) => Err(err("put", key)(e)),
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = Path::from(key);
        self.store
            .get(&path)
            .await
            .map_err(err("get", key))?
            .bytes()
            .await
            .map_err(err("read", key))
    }

    /// The whole object, or `None` when there is none under `key`.
    pub async fn get_if_exists(&self, key: &str) -> Result<Option<Bytes>> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(ClusterError::Objects {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes `[start, end)` of an object (a segment's footer or block).
    pub async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes> {
        self.store
            .get_range(&Path::from(key), start..end)
            .await
            .map_err(err("get range", key))
    }

    /// Byte ranges of one object, in the order asked: object_store's `get_ranges`,
    /// which reads ranges lying close together in one request and the rest
    /// concurrently (a bundle's segments an append needs at once).
    pub async fn get_ranges(
        &self,
        key: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.store
            .get_ranges(&Path::from(key), ranges)
            .await
            .map_err(err("get ranges", key))
    }

    /// Every object under `prefix` (all with `None`).
    pub async fn list(&self, prefix: Option<&str>) -> Result<Vec<Listed>> {
        let prefix = prefix.map(Path::from);
        let listed: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(err("list", prefix.as_ref().map_or("", |p| p.as_ref())))?;
        Ok(listed
            .into_iter()
            .map(|m| Listed {
                key: m.location.to_string(),
                last_modified_ms: m.last_modified.timestamp_millis(),
                size: m.size,
            })
            .collect())
    }

    /// The "directories" right under `prefix` (ending in `/`): `list_with_delimiter`'s
    /// common prefixes.
    pub async fn dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from(prefix)))
            .await
            .map_err(err("list directories", prefix))?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect())
    }

    /// At most `max` objects under `prefix`, as the store lists them first.
    pub async fn list_at_most(&self, prefix: &str, max: usize) -> Result<Vec<Listed>> {
        use futures::StreamExt;
        let listed: Vec<_> = self
            .store
            .list(Some(&Path::from(prefix)))
            .take(max)
            .try_collect()
            .await
            .map_err(err("list", prefix))?;
        Ok(listed
            .into_iter()
            .map(|m| Listed {
                key: m.location.to_string(),
                last_modified_ms: m.last_modified.timestamp_millis(),
                size: m.size,
            })
            .collect())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store
            .delete(&Path::from(key))
            .await
            .map_err(err("delete", key))
    }

    /// Deletes `keys` in batches (`delete_stream`: S3 `DeleteObjects`, up to 1,000 keys
    /// a request); the keys deleted, in order, until the first failure (an error then:
    /// what was deleted before it stays deleted). A key already gone counts as deleted.
    pub async fn delete_all(&self, keys: Vec<String>) -> Result<Vec<String>> {
        match self.delete_batched(keys).await {
            (deleted, None) => Ok(deleted),
            (_, Some(e)) => Err(e),
        }
    }

    /// [`Objects::delete_all`], keeping what was deleted before a failure: the keys
    /// deleted (a key already gone counts), and the failure that ended the deletes.
    pub async fn delete_batched(&self, keys: Vec<String>) -> (Vec<String>, Option<ClusterError>) {
        use futures::StreamExt;
        let paths = futures::stream::iter(keys.into_iter().map(|k| Ok(Path::from(k)))).boxed();
        let mut deleted = Vec::new();
        let mut done = self.store.delete_stream(paths);
        while let Some(d) = done.next().await {
            match d {
                Ok(p) => deleted.push(p.to_string()),
                Err(object_store::Error::NotFound { path, .. }) => deleted.push(path),
                Err(e) => return (deleted, Some(err("delete", "a batch")(e))),
            }
        }
        (deleted, None)
    }
}
