//! The tasks of one peer connection: reading and writing its control stream, serving its
//! piece requests. Results go back to the torrent task as events.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use shoal_core::{MetaInfo, PeerId};
use shoal_engine::seeding::{DEFAULT_UPLOAD_QUEUE, admit_upload};
use shoal_transport::{ControlReceiver, RequestReceiver, SessionSender};
use shoal_wire::{ErrorCode, Message};
use tokio::sync::{Semaphore, TryAcquireError, mpsc};
use tokio::time::Instant;

use crate::source::Source;
use crate::swarm::Inner;
use crate::torrent::{Event, Ledger};

pub(crate) async fn control_reader(
    peer: PeerId,
    conn: u64,
    mut control: ControlReceiver,
    events: mpsc::Sender<Event>,
) {
    loop {
        match control.recv().await {
            Ok(Some(msg)) => {
                if events
                    .send(Event::Control { peer, conn, msg })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, "control stream failed: {e}");
                break;
            }
        }
    }
    let _ = events.send(Event::Closed { peer, conn }).await;
}

pub(crate) async fn control_writer(
    peer: PeerId,
    conn: u64,
    sender: SessionSender,
    mut out: mpsc::Receiver<Message>,
    events: mpsc::Sender<Event>,
) {
    while let Some(msg) = out.recv().await {
        if let Err(e) = sender.send(msg).await {
            tracing::debug!(%peer, "sending control frame failed: {e}");
            let _ = events.send(Event::Closed { peer, conn }).await;
            return;
        }
    }
}

/// Answers the peer's piece requests, a few at a time.
pub(crate) async fn serve(
    peer: PeerId,
    mut requests: RequestReceiver,
    meta: Arc<MetaInfo>,
    source: Source,
    events: mpsc::Sender<Event>,
    swarm: Arc<Inner>,
    ledger: Ledger,
) {
    let slots = Arc::new(Semaphore::new(shoal_engine::seeding::SERVE_PER_PEER));
    while let Some(req) = requests.next().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Host-wide bound on pieces held in memory while they are sent, and on requests
        // waiting for the uplink: beyond that the request is refused at once, so the
        // requester asks another holder instead of queueing here (`admit_upload`).
        let host_permit = match Arc::clone(&swarm.serving).try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => {
                let waiting = swarm.serving_waiting.load(Ordering::Relaxed);
                if !admit_upload(waiting, DEFAULT_UPLOAD_QUEUE) {
                    drop(permit);
                    swarm.stats.busy_refusals.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _ = req.reject(ErrorCode::PieceUnavailable, "busy").await;
                    });
                    continue;
                }
                swarm.serving_waiting.fetch_add(1, Ordering::Relaxed);
                let p = Arc::clone(&swarm.serving).acquire_owned().await;
                swarm.serving_waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(p) = p else {
                    return;
                };
                p
            }
        };
        let (meta, source, events) = (Arc::clone(&meta), source.clone(), events.clone());
        let (swarm, ledger) = (Arc::clone(&swarm), ledger.clone());
        tokio::spawn(async move {
            let _permits = (permit, host_permit);
            let Some(piece) = meta.layout().piece(req.piece()) else {
                let _ = req
                    .reject(ErrorCode::PieceUnavailable, "no such piece")
                    .await;
                return;
            };
            if let Some(ledger) = &ledger
                && !ledger.lock().allow(piece.get(), Instant::now().into_std())
            {
                let _ = req
                    .reject(ErrorCode::PieceUnavailable, "sent to another peer just now")
                    .await;
                return;
            }
            let read = {
                let (meta, source) = (Arc::clone(&meta), source.clone());
                let buffers = swarm.piece_buffers.clone();
                tokio::task::spawn_blocking(move || source.read_piece(&meta, piece, &buffers)).await
            };
            match read {
                Ok(Ok(Some(data))) => {
                    let len = data.len() as u64;
                    if req.respond(data).await.is_ok() {
                        swarm.stats.uploaded.fetch_add(len, Ordering::Relaxed);
                        let _ = events.send(Event::Served { peer }).await;
                    }
                }
                _ => {
                    let _ = req
                        .reject(ErrorCode::PieceUnavailable, "piece not available")
                        .await;
                }
            }
        });
    }
}
