//! A tier's location on object storage and the Hive layout inside it:
//!
//! ```text
//! <prefix>/tenant_id=<tenant>/date=<YYYY-MM>/part-<first_seq>-<last_seq>.parquet
//! <prefix>/tenant_id=<tenant>/date=<YYYY-MM>/_part-<first_seq>-<last_seq>.manifest.json
//! ```
//!
//! Granularity is a month: a day would give most tenants files of a few hundred events, far
//! too small to scan well, while a month keeps files large (up to
//! `ARCHIVE_FILE_EVENTS_MAX` events; a busy tenant-month is split into several) and still lets
//! a query engine prune by month from the path alone. `seq` numbers are zero-padded to 20
//! digits so names sort in chain order. Manifests start with `_`, which Hive-style readers
//! (Spark, Trino, Athena, DuckDB's hive partitioning) treat as hidden.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::{Error, Manifest, Result};

/// Where a tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (created when missing).
    Local(PathBuf),
    S3(S3Location),
}

/// An S3-compatible bucket. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), never from flags, so they stay out
/// of process listings and shell history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
    /// Endpoint URL of a non-AWS service (MinIO, moto, …); `http://` endpoints are allowed.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// An opened tier.
#[derive(Debug, Clone)]
pub struct Tier {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Human-readable location, for messages.
    description: String,
}

impl Tier {
    pub fn open(location: &Location) -> Result<Tier> {
        match location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                Ok(Tier {
                    store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
                    prefix: Path::default(),
                    description: dir.display().to_string(),
                })
            }
            Location::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                Ok(Tier {
                    store: Arc::new(builder.build()?),
                    prefix: Path::from(s3.prefix.trim_matches('/')),
                    description: format!("s3://{}/{}", s3.bucket, s3.prefix.trim_matches('/')),
                })
            }
        }
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    fn tenant_dir(&self, tenant_id: &str) -> Path {
        self.prefix.child(format!("tenant_id={tenant_id}"))
    }

    /// The object store behind this tier and the prefix of the tier inside it, for query
    /// engines that read the files in place.
    pub fn object_store(&self) -> (Arc<dyn ObjectStore>, &Path) {
        (Arc::clone(&self.store), &self.prefix)
    }

    /// The directory of a tenant-month (`month` as `YYYY-MM`).
    pub fn month_dir(&self, tenant_id: &str, month: &str) -> Path {
        self.tenant_dir(tenant_id).child(format!("date={month}"))
    }

    /// File names of the Parquet file and manifest of a `seq` range.
    pub fn file_names(first_seq: u64, last_seq: u64) -> (String, String) {
        (
            format!("part-{first_seq:020}-{last_seq:020}.parquet"),
            format!("_part-{first_seq:020}-{last_seq:020}.manifest.json"),
        )
    }

    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, path: &Path) -> Result<bytes::Bytes> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every object of a tenant.
    async fn list_tenant(&self, tenant_id: &str) -> Result<Vec<Path>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.tenant_dir(tenant_id)))
            .try_collect()
            .await?;
        Ok(listed.into_iter().map(|meta| meta.location).collect())
    }

    /// A tenant's manifests with their paths, ascending by `first_seq`. A manifest that does
    /// not parse is an error: it is evidence of tampering, not something to skip.
    pub async fn manifests(&self, tenant_id: &str) -> Result<Vec<(Path, Manifest)>> {
        let mut manifests = Vec::new();
        for path in self.list_tenant(tenant_id).await? {
            if !path.as_ref().ends_with(".manifest.json") {
                continue;
            }
            let bytes = self.get(&path).await?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|error| Error::Mismatch {
                    tenant_id: tenant_id.to_owned(),
                    seq: 0,
                    path: path.to_string(),
                    reason: format!("manifest does not parse: {error}"),
                })?;
            manifests.push((path, manifest));
        }
        manifests.sort_by_key(|(_, manifest)| manifest.first_seq);
        Ok(manifests)
    }

    /// Parquet files of a tenant that have no manifest: leftovers of an interrupted write.
    pub async fn orphan_files(&self, tenant_id: &str) -> Result<Vec<Path>> {
        let paths = self.list_tenant(tenant_id).await?;
        let names: std::collections::HashSet<String> =
            paths.iter().map(|path| path.to_string()).collect();
        Ok(paths
            .into_iter()
            .filter(|path| {
                let name = path.to_string();
                let Some(stem) = name.strip_suffix(".parquet") else {
                    return false;
                };
                let Some((dir, file)) = stem.rsplit_once('/') else {
                    return false;
                };
                !names.contains(&format!("{dir}/_{file}.manifest.json"))
            })
            .collect())
    }

    /// The Parquet file a manifest describes (in the manifest's directory).
    pub fn file_of(manifest_path: &Path, manifest: &Manifest) -> Path {
        let text = manifest_path.to_string();
        match text.rsplit_once('/') {
            Some((dir, _)) => Path::from(dir).child(manifest.file.as_str()),
            None => Path::from(manifest.file.as_str()),
        }
    }
}

impl Tier {
    /// Every tenant with objects in this tier, sorted.
    pub async fn tenants(&self) -> Result<Vec<String>> {
        let listed = self.store.list_with_delimiter(Some(&self.prefix)).await?;
        let mut tenants: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|dir| {
                dir.filename()?
                    .strip_prefix("tenant_id=")
                    .map(str::to_owned)
            })
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    /// Where the signed deletion record of a deleted `seq` range is kept. `_deletions` starts
    /// with `_`, so Hive-style readers skip it like the manifests.
    pub fn deletion_record_path(&self, tenant_id: &str, first_seq: u64, last_seq: u64) -> Path {
        self.tenant_dir(tenant_id)
            .child(DELETIONS_DIR)
            .child(format!("deletion-{first_seq:020}-{last_seq:020}.note"))
    }

    /// A tenant's deletion records as stored (unverified note text), ascending by `first_seq`,
    /// each with the `seq` range its name claims.
    pub async fn deletion_records(&self, tenant_id: &str) -> Result<Vec<StoredDeletionRecord>> {
        let mut records = Vec::new();
        for path in self.list_tenant(tenant_id).await? {
            let Some((first_seq, last_seq)) = deletion_range_of(&path) else {
                continue;
            };
            let bytes = self.get(&path).await?;
            let note = String::from_utf8(bytes.to_vec()).map_err(|_| Error::Mismatch {
                tenant_id: tenant_id.to_owned(),
                seq: first_seq,
                path: path.to_string(),
                reason: "deletion record is not UTF-8 text".into(),
            })?;
            records.push(StoredDeletionRecord {
                path,
                first_seq,
                last_seq,
                note,
            });
        }
        records.sort_by_key(|record| record.first_seq);
        Ok(records)
    }

    /// The last `seq` covered by deletion records, judged by their names alone (no signature
    /// check): what readers such as the query engine skip. `verify` checks the records
    /// themselves.
    pub async fn deleted_through(&self, tenant_id: &str) -> Result<u64> {
        Ok(self
            .list_tenant(tenant_id)
            .await?
            .iter()
            .filter_map(deletion_range_of)
            .map(|(_, last_seq)| last_seq)
            .max()
            .unwrap_or(0))
    }
}

/// The folder of a tenant's deletion records.
const DELETIONS_DIR: &str = "_deletions";

/// `(first_seq, last_seq)` of a `_deletions/deletion-<first>-<last>.note` path.
fn deletion_range_of(path: &Path) -> Option<(u64, u64)> {
    let mut parts: Vec<_> = path.parts().collect();
    let name = parts.pop()?;
    if parts.pop()?.as_ref() != DELETIONS_DIR {
        return None;
    }
    let range = name
        .as_ref()
        .strip_prefix("deletion-")?
        .strip_suffix(".note")?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// A signed deletion record as found in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeletionRecord {
    pub path: Path,
    /// The range the file name claims; the signed body is what counts.
    pub first_seq: u64,
    pub last_seq: u64,
    pub note: String,
}

/// Which archive tier a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveTier {
    Warm,
    Cold,
}

impl ArchiveTier {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveTier::Warm => "warm",
            ArchiveTier::Cold => "cold",
        }
    }
}

/// One archived Parquet file, as readers should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    pub tier: ArchiveTier,
    /// The Parquet file and its manifest, inside their tier.
    pub path: Path,
    pub manifest_path: Path,
    pub first_seq: u64,
    pub last_seq: u64,
    /// `YYYY-MM` of the file's `date=` partition.
    pub month: String,
    pub manifest: Manifest,
}

/// A tenant's archived files across the warm and cold tiers, each event in exactly one of them,
/// ascending by `seq`.
///
/// Between writing a cold file's manifest and deleting the warm files it replaces, a `seq`
/// range exists in both tiers; the cold manifest is authoritative, so warm files inside a cold
/// range are left out (they are leftovers the next lifecycle run deletes). Likewise files
/// inside the range of a deletion record are left out: their events are deleted, the files are
/// leftovers of an interrupted deletion. A warm file that only partly overlaps a cold one, or two
/// files of one tier that overlap, cannot come from the lifecycle and is reported as a
/// [`Error::Mismatch`], never silently merged.
pub async fn archived_files(
    warm: &Tier,
    cold: Option<&Tier>,
    tenant_id: &str,
) -> Result<Vec<ArchivedFile>> {
    let mut files = Vec::new();
    let mut deleted_through = warm.deleted_through(tenant_id).await?;
    if let Some(cold) = cold {
        deleted_through = deleted_through.max(cold.deleted_through(tenant_id).await?);
        files.extend(
            cold.manifests(tenant_id)
                .await?
                .into_iter()
                .map(|(path, manifest)| archived_file(ArchiveTier::Cold, path, manifest)),
        );
    }
    let cold_ranges: Vec<(u64, u64)> = files.iter().map(|f| (f.first_seq, f.last_seq)).collect();
    for (path, manifest) in warm.manifests(tenant_id).await? {
        let file = archived_file(ArchiveTier::Warm, path, manifest);
        let covered = cold_ranges
            .iter()
            .any(|(first, last)| *first <= file.first_seq && file.last_seq <= *last);
        if covered {
            continue;
        }
        if let Some((first, last)) = cold_ranges
            .iter()
            .find(|(first, last)| *first <= file.last_seq && file.first_seq <= *last)
        {
            return Err(Error::Mismatch {
                tenant_id: tenant_id.to_owned(),
                seq: file.first_seq.max(*first),
                path: file.path.to_string(),
                reason: format!(
                    "warm file overlaps the cold file of seq {first}-{last} without being inside it"
                ),
            });
        }
        files.push(file);
    }
    files.retain(|file| file.last_seq > deleted_through);
    files.sort_by_key(|file| (file.first_seq, file.last_seq));
    for pair in files.windows(2) {
        if pair[1].first_seq <= pair[0].last_seq {
            return Err(Error::Mismatch {
                tenant_id: tenant_id.to_owned(),
                seq: pair[1].first_seq,
                path: pair[1].path.to_string(),
                reason: format!(
                    "overlaps the archived file of seq {}-{}",
                    pair[0].first_seq, pair[0].last_seq
                ),
            });
        }
    }
    Ok(files)
}

fn archived_file(tier: ArchiveTier, manifest_path: Path, manifest: Manifest) -> ArchivedFile {
    let path = Tier::file_of(&manifest_path, &manifest);
    let month = manifest_path
        .parts()
        .filter_map(|part| part.as_ref().strip_prefix("date=").map(str::to_owned))
        .last()
        .unwrap_or_default();
    ArchivedFile {
        tier,
        first_seq: manifest.first_seq,
        last_seq: manifest.last_seq,
        path,
        manifest_path,
        month,
        manifest,
    }
}

/// `YYYY-MM` of an instant, UTC (proleptic Gregorian; days-to-civil after H. Hinnant).
pub fn month_of(timestamp_ns: i64) -> String {
    let days = timestamp_ns.div_euclid(86_400 * 1_000_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_boundaries_are_utc() {
        let ns = |text: &str| sealtrail_model::parse_timestamp(text).unwrap();
        assert_eq!(month_of(ns("2026-01-31T23:59:59.999Z")), "2026-01");
        assert_eq!(month_of(ns("2026-02-01T00:00:00Z")), "2026-02");
        assert_eq!(month_of(ns("2024-02-29T12:00:00Z")), "2024-02");
        assert_eq!(month_of(ns("1969-12-31T23:00:00Z")), "1969-12");
    }
}
