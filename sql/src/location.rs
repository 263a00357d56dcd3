//! Where an archive is: a local directory, or a prefix in an object store named by
//! a URL (`s3://bucket/prefix`, `gs://…`, `az://…`, the schemes the `object_store`
//! crate parses). Owns telling the two apart, building the store with credentials
//! from the environment (as each cloud's SDKs read them), and finding which tables
//! of an archive hold Parquet files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use url::Url;

use crate::{Result, SqlError};

/// Environment variables a store's builder reads: the prefixes each cloud's SDK
/// uses (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`,
/// `AZURE_STORAGE_ACCOUNT_NAME`, ...). Nothing else of the environment reaches it.
const CREDENTIAL_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

/// An archive's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveLocation {
    /// A directory on this machine.
    Local(PathBuf),
    /// A prefix in an object store.
    Store(Url),
}

impl ArchiveLocation {
    /// A URL with a scheme (other than `file`) names a store; anything else is a
    /// path (`file:///dir` included).
    pub fn parse(text: &str) -> Result<ArchiveLocation> {
        if !text.contains("://") {
            return Ok(ArchiveLocation::Local(PathBuf::from(text)));
        }
        let url = Url::parse(text).map_err(|e| {
            SqlError::Store(format!(
                "archive {text:?} is not a valid URL ({e}); give a directory or a URL such as s3://bucket/prefix"
            ))
        })?;
        if url.scheme() == "file" {
            return url
                .to_file_path()
                .map(ArchiveLocation::Local)
                .map_err(|()| {
                    SqlError::Store(format!(
                        "archive {text:?}: a file URL must be an absolute path"
                    ))
                });
        }
        Ok(ArchiveLocation::Store(url))
    }

    /// The local directory, for a local archive.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            ArchiveLocation::Local(path) => Some(path),
            ArchiveLocation::Store(_) => None,
        }
    }
}

impl std::fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveLocation::Local(path) => write!(f, "{}", path.display()),
            ArchiveLocation::Store(url) => write!(f, "{url}"),
        }
    }
}

/// Where an opened archive's table files are listed from.
pub(crate) enum ArchiveFiles {
    /// A directory on this machine.
    Directory(PathBuf),
    /// A prefix in an object store.
    Store(StoreArchive),
}

impl ArchiveFiles {
    /// The archive at `location`; a store is built (not yet listed) here.
    pub fn open(location: &ArchiveLocation) -> Result<ArchiveFiles> {
        Ok(match location {
            ArchiveLocation::Local(root) => ArchiveFiles::Directory(root.clone()),
            ArchiveLocation::Store(url) => ArchiveFiles::Store(StoreArchive::open(url)?),
        })
    }

    /// The URL a listing table reads `table` from (ending in `/`), when it holds a
    /// Parquet file.
    pub async fn listing_url(&self, table: &str) -> Result<Option<String>> {
        Ok(match self {
            ArchiveFiles::Directory(root) => {
                let dir = root.join(table);
                directory_has_parquet(&dir).then(|| format!("{}/", dir.display()))
            }
            ArchiveFiles::Store(archive) => archive
                .has_parquet(table)
                .await?
                .then(|| archive.table_url(table)),
        })
    }
}

/// Whether a Parquet file lies under `dir` (its date and hour directories).
fn directory_has_parquet(dir: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                depth < 3 && walk(&path, depth + 1)
            } else {
                path.extension().is_some_and(|x| x == "parquet")
            }
        })
    }
    walk(dir, 0)
}

/// An archive in an object store: the store, the URL of its bucket (what DataFusion
/// registers the store under) and the archive's prefix in it.
pub(crate) struct StoreArchive {
    pub store: Arc<dyn ObjectStore>,
    pub bucket_url: Url,
    pub prefix: StorePath,
}

impl StoreArchive {
    /// The store `url` names, configured from the environment.
    pub fn open(url: &Url) -> Result<StoreArchive> {
        let options = std::env::vars().filter(|(key, _)| {
            CREDENTIAL_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        });
        let (store, prefix) = object_store::parse_url_opts(url, options).map_err(|e| {
            SqlError::Store(format!(
                "cannot use the object store at {url}: {e}; credentials, region and endpoint come from the environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)"
            ))
        })?;
        let mut bucket_url = url.clone();
        bucket_url.set_path("/");
        bucket_url.set_query(None);
        bucket_url.set_fragment(None);
        Ok(StoreArchive {
            store: Arc::from(store),
            bucket_url,
            prefix,
        })
    }

    /// The URL of `table`'s directory, as a listing table reads it.
    pub fn table_url(&self, table: &str) -> String {
        let base = self.bucket_url.as_str().trim_end_matches('/');
        if self.prefix.as_ref().is_empty() {
            format!("{base}/{table}/")
        } else {
            format!("{base}/{}/{table}/", self.prefix)
        }
    }

    /// Whether `table` holds a Parquet file; an error when the store cannot be
    /// listed (no such bucket, refused credentials).
    pub async fn has_parquet(&self, table: &str) -> Result<bool> {
        let prefix = self.prefix.clone().join(table);
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| {
                SqlError::Store(format!(
                    "cannot list {}: {e}; check that the bucket exists and the credentials in the environment may read it",
                    self.table_url(table)
                ))
            })?;
            if meta.location.extension() == Some("parquet") {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls_are_local_other_urls_are_stores() {
        let cases: [(&str, ArchiveLocation); 5] = [
            (
                "cara-archive",
                ArchiveLocation::Local("cara-archive".into()),
            ),
            (
                "/var/lib/cara",
                ArchiveLocation::Local("/var/lib/cara".into()),
            ),
            (
                "file:///var/lib/cara",
                ArchiveLocation::Local("/var/lib/cara".into()),
            ),
            (
                "s3://bucket/prefix",
                ArchiveLocation::Store(Url::parse("s3://bucket/prefix").unwrap()),
            ),
            (
                "gs://bucket",
                ArchiveLocation::Store(Url::parse("gs://bucket").unwrap()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ArchiveLocation::parse(text).unwrap(), expected, "{text}");
        }
        let error = ArchiveLocation::parse("s3://[bad").unwrap_err().to_string();
        assert!(error.contains("not a valid URL"), "{error}");
    }

    #[test]
    fn table_urls_sit_under_the_prefix() {
        let archive = StoreArchive::open(&Url::parse("s3://bucket/team/cara").unwrap()).unwrap();
        assert_eq!(
            archive.table_url("metrics"),
            "s3://bucket/team/cara/metrics/"
        );
        assert_eq!(archive.bucket_url.as_str(), "s3://bucket/");
        let at_root = StoreArchive::open(&Url::parse("s3://bucket").unwrap()).unwrap();
        assert_eq!(at_root.table_url("logs"), "s3://bucket/logs/");
    }

    #[test]
    fn a_scheme_no_store_supports_is_a_clear_error() {
        let error = StoreArchive::open(&Url::parse("ftp://host/dir").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("ftp://host/dir"), "{error}");
        assert!(error.contains("environment"), "{error}");
    }
}
