//! NNG's blocking calls, for the hot request path. The server answers requests on its own
//! threads, each blocked in a context receive, and the blocking client sends from the caller's
//! thread: one wake-up per side from NNG to the thread that does the work, where going through
//! anng and tokio added a task wake-up, and `block_in_place` a hand-off of the runtime to
//! another thread, on every request. The async parts (PUB/SUB, the async `Client`) stay on
//! anng.

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, SqlState};

/// An NNG error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NngError(pub c_int);

impl NngError {
    pub fn is_timeout(self) -> bool {
        self.0 == nng_sys::NNG_ETIMEDOUT as c_int
    }

    pub fn is_closed(self) -> bool {
        self.0 == nng_sys::NNG_ECLOSED as c_int
    }

    pub fn is_canceled(self) -> bool {
        self.0 == nng_sys::NNG_ECANCELED as c_int
    }
}

impl std::fmt::Display for NngError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: nng_strerror returns a pointer to a static NUL-terminated string for any code.
        let text = unsafe { CStr::from_ptr(nng_sys::nng_strerror(self.0)) };
        write!(f, "{}", text.to_string_lossy())
    }
}

fn rv(code: c_int) -> std::result::Result<(), NngError> {
    if code == 0 {
        Ok(())
    } else {
        Err(NngError(code))
    }
}

fn ms(d: Duration) -> nng_sys::nng_duration {
    d.as_millis().min(i32::MAX as u128) as nng_sys::nng_duration
}

/// An owned NNG message.
pub struct Msg(*mut nng_sys::nng_msg);

// SAFETY: an nng_msg is plain memory owned by whoever holds the pointer; NNG never touches a
// message it has handed back to us.
unsafe impl Send for Msg {}
unsafe impl Sync for Msg {}

impl Msg {
    pub fn with_capacity(cap: usize) -> std::result::Result<Msg, NngError> {
        let mut m = std::ptr::null_mut();
        // SAFETY: allocates a message of length 0 and reserves room for `cap` bytes.
        unsafe {
            rv(nng_sys::nng_msg_alloc(&mut m, 0))?;
            let msg = Msg(m);
            rv(nng_sys::nng_msg_reserve(msg.0, cap))?;
            Ok(msg)
        }
    }

    pub fn from_slice(bytes: &[u8]) -> std::result::Result<Msg, NngError> {
        let mut m = Msg::with_capacity(bytes.len())?;
        m.append(bytes)?;
        Ok(m)
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::result::Result<(), NngError> {
        // SAFETY: copies `bytes` to the end of a message we own.
        rv(unsafe { nng_sys::nng_msg_append(self.0, bytes.as_ptr().cast(), bytes.len()) })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the body is `len` initialized bytes owned by this message; nng_msg_body of an
        // empty message may be dangling, so an empty slice is made without it.
        unsafe {
            let len = nng_sys::nng_msg_len(self.0);
            if len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(nng_sys::nng_msg_body(self.0).cast::<u8>(), len)
        }
    }

    fn into_raw(self) -> *mut nng_sys::nng_msg {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        // SAFETY: we own the message.
        unsafe { nng_sys::nng_msg_free(self.0) }
    }
}

/// Which request/reply side a socket is.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Req,
    Rep,
    /// The change publisher: a send never waits; NNG drops the message for a subscriber whose
    /// queue is full.
    Pub,
    /// A change stream's receiving end.
    Sub,
}

/// An open NNG socket; closed when dropped (which fails every call blocked on it with ECLOSED).
pub struct Socket(nng_sys::nng_socket);

// SAFETY: NNG sockets are thread-safe handles.
unsafe impl Send for Socket {}
unsafe impl Sync for Socket {}

impl Socket {
    pub fn open(p: Protocol) -> std::result::Result<Socket, NngError> {
        let mut s = nng_sys::nng_socket {
            _bindgen_opaque_blob: 0,
        };
        // SAFETY: opens a socket into `s`.
        rv(unsafe {
            match p {
                Protocol::Req => nng_sys::nng_req0_open(&mut s),
                Protocol::Rep => nng_sys::nng_rep0_open(&mut s),
                Protocol::Pub => nng_sys::nng_pub0_open(&mut s),
                Protocol::Sub => nng_sys::nng_sub0_open(&mut s),
            }
        })?;
        Ok(Socket(s))
    }

    pub fn listen(&self, url: &CStr) -> std::result::Result<(), NngError> {
        // SAFETY: `url` is NUL-terminated; no listener handle is asked for.
        rv(unsafe { nng_sys::nng_listen(self.0, url.as_ptr(), std::ptr::null_mut(), 0) })
    }

    /// Listens on `url`, dropping a connection whose peer announces a message larger than
    /// `max_bytes` (NNG's `recv-size-max` on this listener): the transport reads the length
    /// header and closes the pipe before allocating or reading the body, so an oversized
    /// request costs the server no buffer.
    pub fn listen_limited(
        &self,
        url: &CStr,
        max_bytes: usize,
    ) -> std::result::Result<(), NngError> {
        let mut l = nng_sys::nng_listener {
            _bindgen_opaque_blob: 0,
        };
        // SAFETY: `url` and the option name are NUL-terminated; the listener belongs to our
        // socket and is closed with it (or here when it cannot start).
        unsafe {
            rv(nng_sys::nng_listener_create(&mut l, self.0, url.as_ptr()))?;
            let started = rv(nng_sys::nng_listener_set_size(
                l,
                nng_sys::NNG_OPT_RECVMAXSZ.as_ptr().cast(),
                max_bytes,
            ))
            .and_then(|_| rv(nng_sys::nng_listener_start(l, 0)));
            if started.is_err() {
                nng_sys::nng_listener_close(l);
            }
            started
        }
    }

    /// Dials synchronously: an error when the server is not there now. After the first
    /// connection NNG redials by itself when the connection drops.
    pub fn dial(&self, url: &CStr) -> std::result::Result<(), NngError> {
        // SAFETY: as for listen.
        rv(unsafe { nng_sys::nng_dial(self.0, url.as_ptr(), std::ptr::null_mut(), 0) })
    }

    /// Messages queued per peer (for PUB: per subscriber, beyond which that subscriber's
    /// messages are dropped).
    pub fn set_send_buffer(&self, messages: usize) -> std::result::Result<(), NngError> {
        let n = c_int::try_from(messages).unwrap_or(c_int::MAX);
        // SAFETY: the option name is one of nng_sys's NUL-terminated constants.
        rv(unsafe {
            nng_sys::nng_socket_set_int(self.0, nng_sys::NNG_OPT_SENDBUF.as_ptr().cast(), n)
        })
    }

    /// Messages queued on the socket's receiving side (for SUB: beyond this, NNG drops the
    /// oldest). NNG accepts 1 to 8192.
    pub fn set_recv_buffer(&self, messages: usize) -> std::result::Result<(), NngError> {
        let n = c_int::try_from(messages.clamp(1, 8192)).unwrap_or(8192);
        // SAFETY: as for set_send_buffer.
        rv(unsafe {
            nng_sys::nng_socket_set_int(self.0, nng_sys::NNG_OPT_RECVBUF.as_ptr().cast(), n)
        })
    }

    pub fn set_recv_timeout(&self, d: Duration) -> std::result::Result<(), NngError> {
        // SAFETY: as for set_send_buffer.
        rv(unsafe {
            nng_sys::nng_socket_set_ms(self.0, nng_sys::NNG_OPT_RECVTIMEO.as_ptr().cast(), ms(d))
        })
    }

    /// SUB: receive messages whose body starts with `topic`.
    pub fn subscribe(&self, topic: &[u8]) -> std::result::Result<(), NngError> {
        // SAFETY: NNG copies the topic bytes.
        rv(unsafe {
            nng_sys::nng_sub0_socket_subscribe(self.0, topic.as_ptr().cast(), topic.len())
        })
    }

    /// Receives on the socket itself (no context), blocking up to the receive timeout.
    pub fn recv(&self) -> std::result::Result<Msg, NngError> {
        let mut m = std::ptr::null_mut();
        // SAFETY: on success NNG hands us ownership of a message.
        rv(unsafe { nng_sys::nng_recvmsg(self.0, &mut m, 0) })?;
        Ok(Msg(m))
    }

    /// Sends on the socket itself (no context): for PUB this queues the message to every
    /// subscriber and returns at once.
    pub fn send(&self, m: Msg) -> std::result::Result<(), NngError> {
        let p = m.into_raw();
        // SAFETY: on success NNG takes ownership of the message; on failure it stays ours.
        let code = unsafe { nng_sys::nng_sendmsg(self.0, p, 0) };
        if code != 0 {
            drop(Msg(p));
        }
        rv(code)
    }

    pub fn context(&self) -> std::result::Result<Ctx, NngError> {
        let mut c = nng_sys::nng_ctx {
            _bindgen_opaque_blob: 0,
        };
        // SAFETY: opens a context on our socket.
        rv(unsafe { nng_sys::nng_ctx_open(&mut c, self.0) })?;
        Ok(Ctx(c))
    }

    /// Closes the socket now (blocked receives fail with ECLOSED); dropping it later is harmless.
    pub fn close(&self) {
        // SAFETY: closing twice returns ECLOSED, which is ignored.
        unsafe {
            nng_sys::nng_close(self.0);
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.close();
    }
}

/// One context of a socket: one request (REQ) or one request being answered (REP) at a time.
pub struct Ctx(nng_sys::nng_ctx);

// SAFETY: contexts are thread-safe handles; each is used by one thread at a time here.
unsafe impl Send for Ctx {}

impl Ctx {
    fn set_ms(&self, opt: &[u8], d: Duration) -> std::result::Result<(), NngError> {
        // SAFETY: `opt` is one of nng_sys's NUL-terminated option names.
        rv(unsafe { nng_sys::nng_ctx_set_ms(self.0, opt.as_ptr().cast(), ms(d)) })
    }

    pub fn set_recv_timeout(&self, d: Duration) -> std::result::Result<(), NngError> {
        self.set_ms(nng_sys::NNG_OPT_RECVTIMEO, d)
    }

    pub fn set_send_timeout(&self, d: Duration) -> std::result::Result<(), NngError> {
        self.set_ms(nng_sys::NNG_OPT_SENDTIMEO, d)
    }

    pub fn recv(&mut self) -> std::result::Result<Msg, NngError> {
        let mut m = std::ptr::null_mut();
        // SAFETY: on success NNG hands us ownership of a message.
        rv(unsafe { nng_sys::nng_ctx_recvmsg(self.0, &mut m, 0) })?;
        Ok(Msg(m))
    }

    pub fn send(&mut self, m: Msg) -> std::result::Result<(), NngError> {
        let p = m.into_raw();
        // SAFETY: on success NNG takes ownership of the message; on failure it stays ours.
        let code = unsafe { nng_sys::nng_ctx_sendmsg(self.0, p, 0) };
        if code != 0 {
            drop(Msg(p));
        }
        rv(code)
    }
}

impl Ctx {
    /// Starts a receive on this context that completes `aio` (its callback, if any, runs on an
    /// NNG thread; see [`Aio`]).
    pub fn recv_aio(&self, aio: &Aio) {
        // SAFETY: both handles are live; the outcome is reported through the aio.
        unsafe { nng_sys::nng_ctx_recv(self.0, aio.0) }
    }

    /// Starts sending the message held by `aio` (see [`Aio::set_msg`]).
    pub fn send_aio(&self, aio: &Aio) {
        // SAFETY: as for recv_aio.
        unsafe { nng_sys::nng_ctx_send(self.0, aio.0) }
    }
}

/// An NNG asynchronous I/O handle: one operation at a time. With a callback, NNG calls it on one
/// of its own threads when the operation completes (for a REP context's receive, right on the
/// thread that matched the request to the context, with no further hand-off); without one,
/// [`Aio::wait`] blocks until it completes.
pub struct Aio(*mut nng_sys::nng_aio);

// SAFETY: an nng_aio is a thread-safe NNG object; callers keep to one operation at a time.
unsafe impl Send for Aio {}
unsafe impl Sync for Aio {}

/// What NNG calls when an [`Aio`] completes.
pub type AioCallback = unsafe extern "C" fn(*mut std::ffi::c_void);

impl Aio {
    /// `cb` is called with `arg` on every completion.
    ///
    /// # Safety
    /// `arg` must stay valid for `cb` until the aio is stopped or dropped.
    pub unsafe fn new(
        cb: Option<AioCallback>,
        arg: *mut std::ffi::c_void,
    ) -> std::result::Result<Aio, NngError> {
        let mut a = std::ptr::null_mut();
        // SAFETY: allocates an aio into `a`.
        rv(unsafe { nng_sys::nng_aio_alloc(&mut a, cb, arg) })?;
        Ok(Aio(a))
    }

    /// The outcome of the last completed operation.
    pub fn result(&self) -> std::result::Result<(), NngError> {
        // SAFETY: reads the aio's result.
        rv(unsafe { nng_sys::nng_aio_result(self.0) })
    }

    /// Takes the message a receive completed with (or a failed send left behind).
    pub fn take_msg(&self) -> Option<Msg> {
        // SAFETY: the message, if any, becomes ours; the aio is left without one.
        unsafe {
            let m = nng_sys::nng_aio_get_msg(self.0);
            if m.is_null() {
                return None;
            }
            nng_sys::nng_aio_set_msg(self.0, std::ptr::null_mut());
            Some(Msg(m))
        }
    }

    /// Hands `m` to the aio for the next send (NNG owns it once the send succeeds).
    pub fn set_msg(&self, m: Msg) {
        // SAFETY: the aio holds the message until a send takes it or take_msg returns it.
        unsafe { nng_sys::nng_aio_set_msg(self.0, m.into_raw()) }
    }

    /// Whether an operation is in progress (a send still waiting for its connection, say).
    pub fn busy(&self) -> bool {
        // SAFETY: reads a live aio's state.
        unsafe { nng_sys::nng_aio_busy(self.0) }
    }

    /// Operations started from now on fail with a timeout if not done within `d`.
    pub fn set_timeout(&self, d: Duration) {
        let ms = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: sets a live aio's timeout.
        unsafe { nng_sys::nng_aio_set_timeout(self.0, ms) }
    }

    /// Cancels the operation in progress, if any (it completes with an error, its callback
    /// runs); later operations proceed as usual.
    pub fn cancel(&self) {
        // SAFETY: cancels on a live aio.
        unsafe { nng_sys::nng_aio_cancel(self.0) }
    }

    /// Blocks until the operation in progress, if any, has completed (callback included).
    pub fn wait(&self) {
        // SAFETY: waits on a live aio.
        unsafe { nng_sys::nng_aio_wait(self.0) }
    }

    /// Cancels the operation in progress, waits for it (and its callback) to finish, and makes
    /// every later operation on this aio a no-op.
    pub fn stop(&self) {
        // SAFETY: as for wait.
        unsafe { nng_sys::nng_aio_stop(self.0) }
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: stops any operation and frees the aio; a message still held is freed with it.
        unsafe {
            nng_sys::nng_aio_stop(self.0);
            if let Some(m) = self.take_msg() {
                drop(m);
            }
            nng_sys::nng_aio_free(self.0);
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: we own the context.
        unsafe {
            nng_sys::nng_ctx_close(self.0);
        }
    }
}

pub fn io(what: &str, e: NngError) -> Error {
    Error::new(SqlState::IoError, format!("{what}: {e}"))
}

/// Messages NNG refused because their header announced more than a listener's receive limit
/// (NNG closes that connection without reading the body, so the request never reaches a worker).
static OVERSIZED_DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many oversized messages NNG has dropped in this process since `install_logger`.
pub fn oversized_dropped() -> u64 {
    OVERSIZED_DROPPED.load(Ordering::Relaxed)
}

/// Routes NNG's own log (warnings and errors) to `tracing`, and counts its "NNG-RCVMAX"
/// records: NNG drops an oversized request in the transport and says so only there.
pub fn install_logger() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `nng_log_sink` has the signature NNG expects and never unwinds.
        unsafe {
            nng_sys::nng_log_set_logger(Some(nng_log_sink));
            nng_sys::nng_log_set_level(nng_sys::nng_log_level::NNG_LOG_WARN);
        }
    });
}

unsafe extern "C" fn nng_log_sink(
    level: nng_sys::nng_log_level,
    _facility: nng_sys::nng_log_facility,
    msgid: *const c_char,
    msg: *const c_char,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            std::borrow::Cow::Borrowed("")
        } else {
            // SAFETY: NNG passes NUL-terminated strings valid for the duration of the call.
            unsafe { CStr::from_ptr(p) }.to_string_lossy()
        }
    };
    let (id, m) = (text(msgid), text(msg));
    if id == "NNG-RCVMAX" {
        OVERSIZED_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    if (level as u32) <= nng_sys::nng_log_level::NNG_LOG_WARN as u32 {
        tracing::warn!(target: "nng", "{id}: {m}");
    } else {
        tracing::debug!(target: "nng", "{id}: {m}");
    }
}

/// Sets NNG's task and I/O poller thread counts; only effective before the process opens its
/// first NNG socket (NNG starts its threads then). NNG's defaults are two task threads per CPU
/// and one poller per CPU.
pub fn set_threads(task: usize, poller: usize) {
    let n = |v: usize| v.clamp(1, 64) as u64;
    // SAFETY: plain setters of NNG's start-up parameters; NNG ignores them once initialized.
    unsafe {
        let set = |p: nng_sys::_bindgen_ty_1, v: u64| {
            nng_sys::nng_init_set_parameter(p as nng_sys::nng_init_parameter, v)
        };
        set(nng_sys::NNG_INIT_NUM_TASK_THREADS, n(task));
        set(nng_sys::NNG_INIT_MAX_TASK_THREADS, n(task));
        set(nng_sys::NNG_INIT_NUM_POLLER_THREADS, n(poller));
        set(nng_sys::NNG_INIT_MAX_POLLER_THREADS, n(poller));
    }
}
