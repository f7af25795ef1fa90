//! The closed set of things that happen, and the broadcast bus that carries
//! them to whoever listens: the API's event stream, the CLI's progress bar,
//! later the dashboard. The audit log is the persisted part of this stream.

use tokio::sync::broadcast;

use crate::model::Status;
use crate::release::DownloadProgress;
use crate::store::AuditEntry;

/// Everything the daemon announces. Internal: what leaves the daemon is
/// its wire form, [`crate::api::dto::StreamEvent`].
#[derive(Debug, Clone)]
pub enum Event {
    /// An instance's observed state changed.
    InstanceState {
        name: String,
        status: Status,
        pid: Option<u32>,
        restarts: u32,
    },
    /// An instance was deleted.
    InstanceRemoved { name: String },
    /// A line was appended to the audit log.
    Audit { entry: AuditEntry },
    /// A PocketBase release download made progress.
    Download { progress: DownloadProgress },
}

impl Event {
    /// The instance this event concerns, if any (for filtered streams).
    pub fn instance(&self) -> Option<&str> {
        match self {
            Event::InstanceState { name, .. } | Event::InstanceRemoved { name } => Some(name),
            Event::Audit { entry } => entry.instance.as_deref(),
            Event::Download { .. } => None,
        }
    }
}

/// A cheap-to-clone handle on the broadcast channel. Slow listeners lose the
/// oldest events (they are told how many) rather than slowing the daemon.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    pub fn publish(&self, event: Event) {
        // No listener is not an error: events are also in the store.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}
