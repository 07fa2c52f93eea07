//! What the pusher and the puller share, built once from the engine and the outside doors,
//! so that the mount and the engine tests wire them the same way.
//!
//! The pusher and the puller need the same handles (journal, cloud, ONPREM, the scope of the
//! sync, open writers, shared state, transfer count). [`Parts`] holds them, and each of the two
//! holds one `Parts`; `Pusher::new` and `Puller::new` add what is each one's own. The scope
//! (sync sets, ignore list, unsynced folders) is the engine's own, shared, not a copy.

use std::sync::Arc;

use super::scope::Scope;
use super::{Engine, Shared};
use crate::cloud::Cloud;
use crate::fs::handles::OpenWriters;
use crate::journal::Journal;
use crate::onprem::Onprem;

/// The handles the pusher and the puller both hold.
#[derive(Clone)]
pub struct Parts {
    /// The journal.
    pub journal: Arc<Journal>,
    /// The cloud.
    pub cloud: Arc<dyn Cloud>,
    /// The on-premise folder, reached only through its door.
    pub onprem: Arc<Onprem>,
    /// What is synced and where it goes, shared with the engine.
    pub scope: Arc<Scope>,
    /// Files open for writing through the mount.
    pub writers: Arc<OpenWriters>,
    /// State shared with the engine and status reads.
    pub shared: Arc<Shared>,
    /// Parallel transfers.
    pub transfers: usize,
}

impl Parts {
    /// The parts of `engine` (its journal, scope and shared state) with the cloud, ONPREM and the open writers.
    pub fn of(
        engine: &Engine,
        cloud: Arc<dyn Cloud>,
        onprem: Arc<Onprem>,
        writers: Arc<OpenWriters>,
        transfers: usize,
    ) -> Parts {
        Parts {
            journal: engine.journal.clone(),
            cloud,
            onprem,
            scope: engine.scope.clone(),
            writers,
            shared: engine.shared.clone(),
            transfers,
        }
    }
}
