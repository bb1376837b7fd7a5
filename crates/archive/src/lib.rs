//! The warm and cold tiers: a tenant's older events as Parquet files on object storage (a
//! local directory by default, any S3-compatible service by configuration), each with a
//! manifest that pins its content to the tenant's hash chain and Merkle tree.
//!
//! * [`parquet_file`] encodes and decodes events as Parquet (one column per stored field).
//! * [`manifest`] describes one file: count, `seq` range, boundary hashes, Merkle root of its
//!   leaves, SHA-256 of the bytes. *A file whose manifest is present is complete and checked.*
//! * [`tier`] is a location on object storage and the Hive layout inside it.
//! * [`lifecycle`] moves events hot → warm without losing or duplicating one across crashes.
//! * [`cold`] compacts old warm files into one file per tenant-month in the cold tier, just as
//!   crash-safe; [`tier::archived_files`] lists a tenant's files across both, deduplicated.
//! * [`reseal`] is the hook that re-encrypts protected fields under a tenant's current data key
//!   as the lifecycle writes them again (after a key rotation).
//! * [`retention`] deletes expired cold files as a `seq` prefix, each under a signed deletion
//!   record, unless a legal hold applies.
//! * [`verify`] feeds archived events to the hot tier's verifier, so one chain is checked
//!   across tiers.
//!
//! Architecture invariant: hashing and chain rules come from `sealtrail-ledger`; this crate only
//! moves bytes and checks them with those functions.

pub mod cold;
mod error;
pub mod lifecycle;
pub mod manifest;
pub mod parquet_file;
pub mod reseal;
pub mod retention;
pub mod tier;
pub mod verify;

pub use cold::{migrate_warm_to_cold, CompactionPolicy, CompactionStep, TenantCompaction};
pub use error::{Error, Result};
pub use lifecycle::{
    migrate_hot_to_warm, migrate_hot_to_warm_expiring, HeldBack, MigrationPolicy, MigrationStep,
    TenantMigration,
};
pub use manifest::{Manifest, MANIFEST_FORMAT};
pub use reseal::{same_but_ciphertext, Reseal};
pub use retention::{apply_retention, deleted_prefix, RetentionStep, TenantRetention};
pub use tier::{
    archived_files, ArchiveTier, ArchivedFile, Location, S3Location, StoredDeletionRecord, Tier,
};
pub use verify::{verify_tiers, verify_tiers_blocking, ArchiveFault, TierReader, TiersReport};
