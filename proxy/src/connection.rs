//! One proxied connection: the toxics that act when it is accepted (down,
//! reset), then both ways copied at once, each through a bounded queue of
//! chunks stamped with the time they may leave, so latency delays bytes
//! without piling them up and a bandwidth cap pushes back on the sender.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::control::{Control, Tally};
use crate::toxics::{Flow, Toxics};

/// Largest chunk read at once; with [`QUEUE_CHUNKS`] it bounds what one
/// way of one connection holds (512 KiB).
const CHUNK: usize = 32 * 1024;
/// Chunks waiting for their time in one way. Under latency this is also the
/// most that is in flight, as a TCP window would be.
const QUEUE_CHUNKS: usize = 16;
/// An upstream that neither answers nor refuses (a dropped SYN) must not
/// hold the client for the kernel's two minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A bandwidth cap is paced in slices of this fraction of a second, so a
/// low cap does not send a whole chunk in one burst.
const SLICES_PER_SECOND: u64 = 20;
/// `reset_at` when no reset is armed.
const NO_RESET: u64 = u64::MAX;

/// How a connection ended, when it was not both sides closing.
#[derive(Debug)]
enum Stop {
    /// The reset toxic fired: close the client with an RST.
    Reset,
    /// The down toxic was switched on: close both sides.
    Down,
    /// A socket failed: the other side is closed.
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Stop {
        Stop::Io(err)
    }
}

/// The state both ways of one connection share.
struct Link {
    /// Bytes written either way so far.
    bytes: AtomicU64,
    /// The byte count at which the connection is reset, or [`NO_RESET`].
    reset_at: AtomicU64,
}

/// Keeps `connections_open` right however the connection ends, including
/// its task being aborted at shutdown.
struct Open<'a>(&'a Tally);

impl<'a> Open<'a> {
    fn new(tally: &'a Tally) -> Open<'a> {
        Tally::add(&tally.connections_total, 1);
        Tally::add(&tally.connections_open, 1);
        Open(tally)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted client until either side ends it.
pub(crate) async fn serve(mut client: TcpStream, upstream: Arc<str>, control: Arc<Control>) {
    let tally = &control.tally;
    let _open = Open::new(tally);
    // Subscribed before reading the toxics, so no change slips between the
    // toxics applied at accept and those followed afterwards.
    let changes = control.subscribe();
    let toxics = changes.borrow().clone();
    if toxics.down {
        Tally::add(&tally.refused_total, 1);
        return;
    }
    let reset_at = if control.draw_reset(toxics.reset) {
        if toxics.reset_after_bytes == 0 {
            reset(client, tally);
            return;
        }
        toxics.reset_after_bytes
    } else {
        NO_RESET
    };
    let mut server = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&*upstream)).await {
        Ok(Ok(server)) => server,
        Ok(Err(err)) => {
            tracing::warn!(%upstream, error = %err, "upstream unreachable; closing the client");
            Tally::add(&tally.upstream_errors_total, 1);
            return;
        }
        Err(_) => {
            tracing::warn!(%upstream, "upstream did not answer within {CONNECT_TIMEOUT:?}; closing the client");
            Tally::add(&tally.upstream_errors_total, 1);
            return;
        }
    };
    // Chunks are forwarded as they come; Nagle would add up to 40 ms to
    // small request/response traffic that the lab did not ask for.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let link = Link {
        bytes: AtomicU64::new(0),
        reset_at: AtomicU64::new(reset_at),
    };
    match relay(&mut client, &mut server, &control, &link, changes).await {
        Some(Stop::Reset) => reset(client, tally),
        Some(Stop::Io(err)) => tracing::debug!(error = %err, "connection ended by a socket error"),
        Some(Stop::Down) | None => {}
    }
}

/// Copies both ways until both have closed (`None`) or something stops the
/// connection; dropping the sockets afterwards closes both sides.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    control: &Control,
    link: &Link,
    changes: watch::Receiver<Toxics>,
) -> Option<Stop> {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let copying = async {
        tokio::try_join!(
            carry(client_read, server_write, Flow::Up, control, link),
            carry(server_read, client_write, Flow::Down, control, link),
        )
    };
    tokio::select! {
        copied = copying => copied.err(),
        stop = follow_changes(control, link, changes) => Some(stop),
    }
}

/// Ends the connection with an RST: SO_LINGER 0 makes close abortive.
fn reset(client: TcpStream, tally: &Tally) {
    if let Err(err) = client.set_zero_linger() {
        tracing::warn!(error = %err, "could not set SO_LINGER 0; the client sees a plain close");
    }
    Tally::add(&tally.resets_total, 1);
}

/// Applies a change of toxics to this open connection: `down` closes it,
/// `reset` with `existing` draws it for reset, `reset` 0 disarms one.
async fn follow_changes(
    control: &Control,
    link: &Link,
    mut changes: watch::Receiver<Toxics>,
) -> Stop {
    loop {
        if changes.changed().await.is_err() {
            // The proxy is going away; the accept loop aborts this task.
            std::future::pending::<()>().await;
        }
        let toxics = changes.borrow_and_update().clone();
        if toxics.down {
            return Stop::Down;
        }
        if toxics.reset <= 0.0 {
            link.reset_at.store(NO_RESET, Ordering::Relaxed);
        } else if toxics.existing && control.draw_reset(toxics.reset) {
            if toxics.reset_after_bytes == 0 {
                return Stop::Reset;
            }
            let now = link.bytes.load(Ordering::Relaxed);
            link.reset_at.store(
                now.saturating_add(toxics.reset_after_bytes),
                Ordering::Relaxed,
            );
        }
    }
}

/// A chunk read from one side, and when it may be written to the other.
struct Chunk {
    data: Bytes,
    due: Instant,
}

/// One way of a connection: a reader that stamps chunks with their delay
/// and a writer that waits for each stamp, both in this task, joined by a
/// bounded queue. The reader's end of stream becomes a half-close on the
/// other side once everything queued has been written.
async fn carry(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    flow: Flow,
    control: &Control,
    link: &Link,
) -> Result<(), Stop> {
    let (queue, mut queued) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let toxics = control.subscribe();
    let reading = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), Stop>(());
            }
            // Cloned out first: holding the watch's read lock while waiting
            // for the draws would deadlock with a PUT, which takes them in
            // the other order.
            let now = toxics.borrow().clone();
            let delay = control.delay(&now, flow);
            let chunk = Chunk {
                data: Bytes::copy_from_slice(&buf[..n]),
                due: Instant::now() + delay,
            };
            if queue.send(chunk).await.is_err() {
                // The writer failed; its error ends the connection.
                return Ok(());
            }
        }
    };
    let writing = async {
        let mut pace = Pace::default();
        while let Some(chunk) = queued.recv().await {
            if chunk.due > Instant::now() {
                sleep_until(chunk.due).await;
            }
            write(&mut to, &chunk.data, flow, control, link, &mut pace).await?;
        }
        to.shutdown().await?;
        Ok::<(), Stop>(())
    };
    tokio::try_join!(reading, writing)?;
    Ok(())
}

/// When the next slice under a bandwidth cap may leave.
#[derive(Default)]
struct Pace {
    next: Option<Instant>,
}

/// Writes one chunk, in paced slices under a bandwidth cap, stopping at the
/// byte where an armed reset fires.
async fn write(
    to: &mut WriteHalf<'_>,
    data: &[u8],
    flow: Flow,
    control: &Control,
    link: &Link,
    pace: &mut Pace,
) -> Result<(), Stop> {
    let delivered = match flow {
        Flow::Up => &control.tally.bytes_up,
        Flow::Down => &control.tally.bytes_down,
    };
    let mut rest = data;
    while !rest.is_empty() {
        let cap = control.toxics().bytes_per_second(flow);
        let mut n = match cap {
            Some(rate) => rest.len().min((rate / SLICES_PER_SECOND).max(1) as usize),
            None => rest.len(),
        };
        if let Some(rate) = cap {
            // The slice's time is spent before it is sent, so a transfer
            // never finishes sooner than its size over the cap.
            let now = Instant::now();
            let start = pace.next.map_or(now, |next| next.max(now));
            let next = start + Duration::from_secs_f64(n as f64 / rate as f64);
            pace.next = Some(next);
            sleep_until(next).await;
        }
        let before = link.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let reset_at = link.reset_at.load(Ordering::Relaxed);
        let fires = before.saturating_add(n as u64) >= reset_at;
        if fires {
            n = reset_at.saturating_sub(before).min(n as u64) as usize;
        }
        to.write_all(&rest[..n]).await?;
        Tally::add(delivered, n as u64);
        if fires {
            return Err(Stop::Reset);
        }
        rest = &rest[n..];
    }
    Ok(())
}
