//! What the proxy saw of each instance's traffic, for scale to zero: when
//! its last request began or ended, and how many requests, realtime (SSE)
//! streams and WebSockets are open now.
//!
//! Each instance has one [`Cell`] for as long as it has a route; every
//! table entry made for it holds the same cell, so a request costs two
//! atomic operations at its start and two at its end, and no lock. The
//! daemon's own health probes go to the instance directly, not through the
//! proxy, so they are not traffic.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::model::idle::Activity;

/// Every instance's cell, by name.
#[derive(Debug)]
pub(super) struct Activities {
    epoch: Instant,
    cells: Mutex<HashMap<String, Arc<Cell>>>,
}

impl Default for Activities {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            cells: Mutex::new(HashMap::new()),
        }
    }
}

/// One instance's traffic.
#[derive(Debug)]
pub(super) struct Cell {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last request's start or end.
    last_ms: AtomicU64,
    /// Requests and streams open now.
    open: AtomicUsize,
    /// Requests waiting for this instance to wake (or its switch to end).
    pub(super) waiting: AtomicUsize,
}

impl Cell {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request begins: it is open until the guard is dropped (its
    /// response body ended, or its upgraded connection closed).
    pub(super) fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.last_ms.store(self.now_ms(), Ordering::Release);
        OpenGuard(Arc::clone(self))
    }

    fn activity(&self) -> Activity {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Activity {
            quiet_for: self.epoch.elapsed().saturating_sub(last),
            open: self.open.load(Ordering::Acquire),
        }
    }
}

/// An open request or stream of one instance.
#[derive(Debug)]
pub(super) struct OpenGuard(Arc<Cell>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An upstream's response body that keeps its request open until it ends
/// (a realtime stream: until the client or the instance closes it).
#[derive(Debug)]
pub(super) struct Tracked {
    inner: Incoming,
    _open: Option<OpenGuard>,
}

impl Tracked {
    pub(super) fn new(inner: Incoming, open: Option<OpenGuard>) -> Self {
        Self { inner, _open: open }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Activities {
    /// A cell that belongs to no instance of this host (a request sent on
    /// to another host's proxy): counted nowhere.
    pub(super) fn loose(&self) -> Arc<Cell> {
        Arc::new(Cell {
            epoch: self.epoch,
            last_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// The cell of `name`, made (as quiet since now) if it has none yet.
    pub(super) fn cell(&self, name: &str) -> Arc<Cell> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = cells.get(name) {
            return Arc::clone(cell);
        }
        let cell = Arc::new(Cell {
            epoch: self.epoch,
            last_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        });
        cells.insert(name.to_string(), Arc::clone(&cell));
        cell
    }

    /// Forget the cells of instances that have no route any more.
    pub(super) fn keep_only<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = names.into_iter().collect();
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| keep.contains(name.as_str()));
    }

    /// What the proxy saw of `name` (`None`: it has no route).
    pub(super) fn of(&self, name: &str) -> Option<Activity> {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|c| c.activity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_requests_and_the_last_one_are_counted() {
        let activities = Activities::default();
        assert_eq!(activities.of("blog"), None);
        let cell = activities.cell("blog");
        assert!(Arc::ptr_eq(&cell, &activities.cell("blog")));
        let guard = cell.open();
        let second = cell.open();
        assert_eq!(activities.of("blog").unwrap().open, 2);
        drop(guard);
        drop(second);
        let seen = activities.of("blog").unwrap();
        assert_eq!(seen.open, 0);
        assert!(seen.quiet_for < Duration::from_secs(5));
        activities.keep_only(["shop"]);
        assert_eq!(activities.of("blog"), None);
    }
}
