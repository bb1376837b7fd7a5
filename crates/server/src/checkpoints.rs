//! Signed checkpoints and Merkle proofs, served from the hot store's tiles (and, for events
//! that moved to the warm or cold tier, their leaves read from the archive).
//!
//! A checkpoint is cut for every tenant whose log grew, every `checkpoint_interval`, on demand
//! through the API, and once more at shutdown after the pipeline drained. Each is signed with
//! the server's Ed25519 note key, stored append-only, and optionally copied to a witness
//! directory where existing files are never overwritten.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use sealtrail_hot::{HotStore, StoredCheckpoint};
use sealtrail_ledger::{
    blocks_needed, root_at, sign_checkpoint, tenant_origin, Checkpoint, ConsistencyProof, Hash,
    InclusionProof, NodeRecorder, NodeSource, NoteSigner, TileSource,
};
use sealtrail_query::QueryEngine;
use tokio::sync::Mutex;

use crate::problem::ApiError;
use crate::{now_ns, Error, Result};

/// The checkpoint signer and the set of tenants already checkpointed at their current size.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    store: Arc<dyn HotStore>,
    /// Reads tree nodes across tiers.
    tiers: Arc<QueryEngine>,
    signer: NoteSigner,
    witness_dir: Option<PathBuf>,
    /// Tree size of each tenant's latest checkpoint, to skip tenants that did not grow.
    cut_sizes: Mutex<HashMap<String, u64>>,
    /// When each tenant's latest checkpoint was cut (nanoseconds since the epoch), for the
    /// checkpoint age `/metrics` reports. Every tenant is in it after the first timed pass.
    cut_times: std::sync::Mutex<HashMap<String, i64>>,
}

impl Checkpointer {
    pub(crate) fn new(
        store: Arc<dyn HotStore>,
        tiers: Arc<QueryEngine>,
        signer: NoteSigner,
        witness_dir: Option<PathBuf>,
    ) -> Self {
        Checkpointer {
            store,
            tiers,
            signer,
            witness_dir,
            cut_sizes: Mutex::new(HashMap::new()),
            cut_times: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Signs a statement of the server's (an export's claims) with the checkpoint key, as a
    /// signed note.
    pub(crate) fn sign_text(&self, text: &str) -> Result<String> {
        sealtrail_ledger::sign_note(text, &self.signer)
            .map_err(|error| Error::Task(format!("signing a statement: {error}")))
    }

    /// The key auditors verify checkpoints (and statements) with.
    pub(crate) fn verifier(&self) -> sealtrail_ledger::NoteVerifier {
        self.signer.verifier()
    }

    pub(crate) fn verifier_key(&self) -> String {
        self.signer.verifier().verifier_key()
    }

    /// Each known tenant and when its latest checkpoint was cut, in `tenant_id` order.
    pub(crate) fn latest_checkpoint_times(&self) -> Vec<(String, i64)> {
        let mut times: Vec<(String, i64)> = self
            .cut_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(tenant_id, at_ns)| (tenant_id.clone(), *at_ns))
            .collect();
        times.sort();
        times
    }

    fn record_cut_time(&self, tenant_id: &str, created_at_ns: i64) {
        self.cut_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(tenant_id.to_owned(), created_at_ns);
    }

    /// Cuts a checkpoint for every tenant that grew since its last one.
    pub(crate) async fn cut_all(&self) -> Result<usize> {
        let mut cut = 0;
        for (tenant_id, head) in self.store.chain_heads().await? {
            if self.cut(&tenant_id, head.seq).await?.is_some() {
                cut += 1;
            }
        }
        Ok(cut)
    }

    /// Cuts a checkpoint of `tenant_id` at `tree_size` unless the latest one already has that
    /// size; returns the new checkpoint.
    pub(crate) async fn cut(
        &self,
        tenant_id: &str,
        tree_size: u64,
    ) -> Result<Option<StoredCheckpoint>> {
        let mut cut_sizes = self.cut_sizes.lock().await;
        let last = match cut_sizes.get(tenant_id) {
            Some(size) => *size,
            None => {
                let latest = self.store.checkpoint(tenant_id, None).await?;
                if let Some(latest) = &latest {
                    self.record_cut_time(tenant_id, latest.created_at_ns);
                }
                latest.map_or(0, |latest| latest.tree_size)
            }
        };
        if tree_size == 0 || tree_size <= last {
            cut_sizes.insert(tenant_id.to_owned(), last);
            return Ok(None);
        }
        let root_hash = tree_root_at(&self.tiers, tenant_id, tree_size).await?;
        let body = Checkpoint::new(tenant_origin(tenant_id), tree_size, root_hash);
        let note = sign_checkpoint(&body, &self.signer)
            .map_err(|error| Error::Task(format!("signing a checkpoint: {error}")))?;
        let checkpoint = StoredCheckpoint {
            tree_size,
            root_hash,
            note,
            created_at_ns: now_ns(),
        };
        self.store
            .insert_checkpoint(tenant_id, checkpoint.clone())
            .await?;
        if let Some(witness_dir) = &self.witness_dir {
            write_witness(witness_dir, tenant_id, &checkpoint)?;
        }
        cut_sizes.insert(tenant_id.to_owned(), tree_size);
        self.record_cut_time(tenant_id, checkpoint.created_at_ns);
        Ok(Some(checkpoint))
    }
}

/// Copies a checkpoint to the witness directory as `<tenant>/<tree_size>.checkpoint`. The file
/// is created new; an existing file is never replaced, so the witness is append-only.
fn write_witness(witness_dir: &Path, tenant_id: &str, checkpoint: &StoredCheckpoint) -> Result<()> {
    let dir = witness_dir.join(tenant_id);
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join(format!("{:020}.checkpoint", checkpoint.tree_size));
    match File::options().write(true).create_new(true).open(&path) {
        Ok(mut file) => {
            file.write_all(checkpoint.note.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(io(error)),
    }
}

/// Runs `prove` twice: once to learn which nodes it reads, then over those nodes loaded from
/// the store (a few block reads).
async fn with_tiles<T, E>(
    tiers: &QueryEngine,
    tenant_id: &str,
    prove: impl Fn(&dyn NodeSourceDyn) -> std::result::Result<T, E>,
) -> Result<std::result::Result<T, E>> {
    let recorder = NodeRecorder::new();
    let _ = prove(&Recording(&recorder));
    let mut source = TileSource::new();
    for (level, block) in blocks_needed(&recorder.requests()) {
        source.insert_block(
            level,
            block,
            tiers.merkle_block(tenant_id, level, block).await?,
        );
    }
    Ok(prove(&Loaded(&source)))
}

/// Object-safe view of a node source, so one closure can run over both phases.
pub(crate) trait NodeSourceDyn {
    fn node_dyn(&self, level: u8, index: u64) -> std::result::Result<Hash, String>;
}

struct Recording<'a>(&'a NodeRecorder);
struct Loaded<'a>(&'a TileSource);

impl NodeSourceDyn for Recording<'_> {
    fn node_dyn(&self, level: u8, index: u64) -> std::result::Result<Hash, String> {
        self.0.node(level, index).map_err(|error| error.to_string())
    }
}

impl NodeSourceDyn for Loaded<'_> {
    fn node_dyn(&self, level: u8, index: u64) -> std::result::Result<Hash, String> {
        self.0.node(level, index).map_err(|error| error.to_string())
    }
}

/// Adapts a [`NodeSourceDyn`] back to the ledger's [`NodeSource`].
struct Adapter<'a>(&'a dyn NodeSourceDyn);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NodeError(String);

impl NodeSource for Adapter<'_> {
    type Error = NodeError;

    fn node(&self, level: u8, index: u64) -> std::result::Result<Hash, NodeError> {
        self.0.node_dyn(level, index).map_err(NodeError)
    }
}

/// The root of a tenant's tree at `tree_size`.
pub(crate) async fn tree_root_at(
    tiers: &QueryEngine,
    tenant_id: &str,
    tree_size: u64,
) -> Result<Hash> {
    with_tiles(tiers, tenant_id, |source| {
        root_at(&Adapter(source), tree_size)
    })
    .await?
    .map_err(|error| Error::Task(format!("tenant {tenant_id}: tree incomplete: {error}")))
}

/// The inclusion proof of leaf `leaf_index` in the tree of `tree_size`.
pub(crate) async fn inclusion(
    tiers: &QueryEngine,
    tenant_id: &str,
    leaf_index: u64,
    tree_size: u64,
) -> std::result::Result<InclusionProof, ApiError> {
    with_tiles(tiers, tenant_id, |source| {
        InclusionProof::generate(&Adapter(source), leaf_index, tree_size)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// The consistency proof from `first` to `second`.
pub(crate) async fn consistency(
    tiers: &QueryEngine,
    tenant_id: &str,
    first: u64,
    second: u64,
) -> std::result::Result<ConsistencyProof, ApiError> {
    with_tiles(tiers, tenant_id, |source| {
        ConsistencyProof::generate(&Adapter(source), first, second)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Cuts checkpoints every `interval` until the task is aborted.
pub(crate) async fn run_checkpointer(checkpointer: Arc<Checkpointer>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(error) = checkpointer.cut_all().await {
            tracing::error!(%error, "cutting checkpoints failed; retrying at the next interval");
        }
    }
}

/// File name of the signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "checkpoint-signing.key";

/// Name of a newly created signing key, shown in every signature line.
pub const DEFAULT_KEY_NAME: &str = "sealtrail";

/// Loads the note signing key from `path`, or creates it there (mode 0600) on first start.
pub fn load_or_create_signer(path: &Path, key_name: &str) -> Result<NoteSigner> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => NoteSigner::parse(text.trim())
            .map_err(|error| Error::Task(format!("signing key {}: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let signer = NoteSigner::from_seed(key_name, &seed)
                .map_err(|error| Error::Task(format!("key name {key_name:?}: {error}")))?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io)?;
            }
            let mut options = File::options();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            file.write_all(format!("{}\n", signer.signer_key()).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(signer)
        }
        Err(error) => Err(io(error)),
    }
}

/// Loads the signing key without creating one (for `sealtrail keys show-verifier`).
pub fn load_signer(path: &Path) -> Result<NoteSigner> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    NoteSigner::parse(text.trim())
        .map_err(|error| Error::Task(format!("signing key {}: {error}", path.display())))
}
