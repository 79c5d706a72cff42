//! A fake toopherd for one connection: it reads each request frame the module sends and
//! answers with scripted bytes (garbage, a truncated frame, an impossible length, another
//! protocol version), then closes. It records the requests' types, so a test can tell
//! the module reached it (and what went wrong, as a `!`-prefixed entry, if it stopped).

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait for the module to connect or to send a request.
const WAIT: Duration = Duration::from_secs(60);

pub struct FakeToopherd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl FakeToopherd {
    /// Listens on a fresh socket; on the first connection answers the n-th request with
    /// `replies[n]`, and closes after the last reply.
    pub fn start(replies: Vec<Vec<u8>>) -> FakeToopherd {
        let dir = tempfile::Builder::new()
            .prefix("fake-toopherd-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("toopherd.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake toopherd");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(&listener, &replies, &stop2));
        FakeToopherd {
            dir,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops waiting and returns the types of the requests received, in order, followed
    /// by `!<what failed>` when the exchange stopped before the last reply.
    pub fn requests(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("fake toopherd thread")
    }
}

impl Drop for FakeToopherd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &UnixListener, replies: &[Vec<u8>], stop: &AtomicBool) -> Vec<String> {
    let mut seen = Vec::new();
    if let Err(e) = exchange(listener, replies, stop, &mut seen) {
        seen.push(format!("!{e}"));
    }
    seen
}

fn exchange(
    listener: &UnixListener,
    replies: &[Vec<u8>],
    stop: &AtomicBool,
    seen: &mut Vec<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    let mut conn: UnixStream = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return Err("nobody connected".into());
                }
                if Instant::now() > deadline {
                    return Err("nobody connected".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    for reply in replies {
        let body = toopher_ipc::read_frame(&mut conn).map_err(|e| format!("read: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("request: {e}"))?;
        seen.push(v["msg"]["type"].as_str().unwrap_or("?").to_string());
        conn.write_all(reply).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// A frame with `body` and its true length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(body.len())
        .expect("small body")
        .to_be_bytes()
        .to_vec();
    f.extend_from_slice(body);
    f
}
