//! libavformat over a byte slice: a custom AVIO context reads and seeks in memory, so uploads and stored objects
//! are demuxed without touching the file system.
//!
//! Invariants: only the demuxers of [`CONTAINERS`] are tried (no playlist or image-sequence demuxer that could
//! open other files or URLs) and no protocol may be opened from inside the file; the AVIO context and its buffer
//! outlive the format context, which is closed first; FFmpeg's own logging is off (what matters is returned as
//! errors and counts).
#![allow(unsafe_code)] // FFI to libavformat; each block says why it is sound.

use std::ffi::{CString, c_int, c_void};
use std::sync::Once;

use ff::ffi;
use ff::format::context::Input;
use ffmpeg_next as ff;

use crate::VideoError;

/// The demuxers tried: ISO BMFF (MP4, MOV, 3GP) and Matroska (MKV, WebM).
pub const CONTAINERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm";

const BUFFER: usize = 64 << 10;
/// libavformat's "report the stream size" seek flag (`AVSEEK_SIZE`).
const AVSEEK_SIZE: c_int = 0x10000;
/// libavformat's "seek even if costly" flag (`AVSEEK_FORCE`), ignored here: every seek is cheap.
const AVSEEK_FORCE: c_int = 0x20000;
/// `AVERROR(EINVAL)`.
const EINVAL: c_int = -22;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Registration is automatic in FFmpeg ≥ 4; init only fails on builds without any format.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn read(opaque: *mut c_void, buf: *mut u8, size: c_int) -> c_int {
    // SAFETY: `opaque` is the boxed Cursor that MemoryInput owns and keeps alive as long as the AVIO context.
    let c = unsafe { &mut *opaque.cast::<Cursor<'_>>() };
    let n = c.data.len().saturating_sub(c.pos).min(usize::try_from(size).unwrap_or(0));
    if n == 0 {
        return ffi::AVERROR_EOF;
    }
    // SAFETY: `buf` has room for `size` ≥ n bytes (libavformat's contract); the source range is in bounds.
    unsafe { std::ptr::copy_nonoverlapping(c.data.as_ptr().add(c.pos), buf, n) };
    c.pos += n;
    n as c_int
}

unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as in `read`.
    let c = unsafe { &mut *opaque.cast::<Cursor<'_>>() };
    let len = c.data.len() as i64;
    if whence & AVSEEK_SIZE != 0 {
        return len;
    }
    let base = match whence & !AVSEEK_FORCE {
        0 => 0,
        1 => c.pos as i64,
        2 => len,
        _ => return i64::from(EINVAL),
    };
    match base.checked_add(offset) {
        Some(p) if (0..=len).contains(&p) => {
            c.pos = p as usize;
            p
        }
        _ => i64::from(EINVAL),
    }
}

/// A stream's coded width and height, as its parameters declare them (0 when unknown).
pub(crate) fn dimensions(params: &ff::codec::Parameters) -> (usize, usize) {
    // SAFETY: `params` wraps a live AVCodecParameters (owned by the stream it came from); two plain reads.
    let (w, h) = unsafe {
        let p = params.as_ptr();
        ((*p).width, (*p).height)
    };
    (usize::try_from(w).unwrap_or(0), usize::try_from(h).unwrap_or(0))
}

/// Whether the decoder reported `frame` as damaged: flagged corrupt, or decoded with errors (concealed slices,
/// missing references, an invalid bitstream).
pub(crate) fn damaged(frame: &ff::frame::Video) -> bool {
    // SAFETY: `frame` wraps a live AVFrame; two plain reads.
    unsafe {
        let f = frame.as_ptr();
        (*f).decode_error_flags != 0 || (*f).flags & ffi::AV_FRAME_FLAG_CORRUPT != 0
    }
}

/// An opened libavformat input reading from a slice (stream info already probed).
pub(crate) struct MemoryInput<'a> {
    input: Option<Input>,
    avio: *mut ffi::AVIOContext,
    _cursor: Box<Cursor<'a>>,
}

fn unreadable(e: impl std::fmt::Display) -> VideoError {
    VideoError::Unreadable(e.to_string())
}

impl<'a> MemoryInput<'a> {
    /// Opens `data` as a video file: the container is probed from its bytes, then the streams are read.
    pub(crate) fn open(data: &'a [u8]) -> Result<Self, VideoError> {
        init();
        if data.is_empty() {
            return Err(unreadable("the file is empty"));
        }
        let mut cursor = Box::new(Cursor { data, pos: 0 });
        let opaque = std::ptr::from_mut::<Cursor<'a>>(&mut cursor).cast::<c_void>();
        // SAFETY: plain libav allocation calls; every pointer is checked before use and owned by `this` (freed
        // in Drop) from the moment it exists.
        unsafe {
            let buffer = ffi::av_malloc(BUFFER).cast::<u8>();
            if buffer.is_null() {
                return Err(VideoError::Codec("out of memory for the input buffer".into()));
            }
            let avio = ffi::avio_alloc_context(buffer, BUFFER as c_int, 0, opaque, Some(read), None, Some(seek));
            if avio.is_null() {
                ffi::av_free(buffer.cast());
                return Err(VideoError::Codec("out of memory for the input context".into()));
            }
            let mut this = Self { input: None, avio, _cursor: cursor };
            let mut ctx = ffi::avformat_alloc_context();
            if ctx.is_null() {
                return Err(VideoError::Codec("out of memory for the format context".into()));
            }
            (*ctx).pb = avio;
            let containers = CString::new(CONTAINERS).expect("no NUL");
            (*ctx).format_whitelist = ffi::av_strdup(containers.as_ptr());
            // No protocol matches "-": a file cannot make the demuxer open anything else.
            (*ctx).protocol_whitelist = ffi::av_strdup(c"-".as_ptr());
            let r = ffi::avformat_open_input(&mut ctx, std::ptr::null(), std::ptr::null(), std::ptr::null_mut());
            if r < 0 {
                // avformat_open_input freed the context.
                return Err(unreadable(format!(
                    "not a video file vidmesh reads (MP4, MOV, MKV or WebM): {}",
                    ff::Error::from(r)
                )));
            }
            this.input = Some(Input::wrap(ctx));
            let r = ffi::avformat_find_stream_info(ctx, std::ptr::null_mut());
            if r < 0 {
                return Err(unreadable(format!("the file's streams are unreadable: {}", ff::Error::from(r))));
            }
            Ok(this)
        }
    }

    pub(crate) fn get(&self) -> &Input {
        self.input.as_ref().expect("set in open")
    }

    pub(crate) fn get_mut(&mut self) -> &mut Input {
        self.input.as_mut().expect("set in open")
    }
}

impl Drop for MemoryInput<'_> {
    fn drop(&mut self) {
        // The format context first (custom IO: it leaves `pb` alone), then the AVIO context and its buffer (which
        // libavformat may have replaced, so it is freed through the context).
        self.input.take();
        // SAFETY: `avio` came from avio_alloc_context and is freed once here.
        unsafe {
            if !self.avio.is_null() {
                ffi::av_freep(std::ptr::addr_of_mut!((*self.avio).buffer).cast());
                ffi::avio_context_free(&mut self.avio);
            }
        }
    }
}

// SAFETY: the raw AVIO pointer is owned exclusively by this value and only used through `&mut self` or in Drop.
unsafe impl Send for MemoryInput<'_> {}
