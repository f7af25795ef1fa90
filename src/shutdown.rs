//! The daemon's shutdown signal, as every background loop waits for it: a
//! `watch` flag that turns `true` once, when the daemon stops.

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
