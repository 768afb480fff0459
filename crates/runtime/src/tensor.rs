//! Tensors on the wire (`vidmesh.tensor.v1`): conversion between the proto and an owned float32 tensor, checked
//! before any compute: dtype, shape (no zero or absurd dimensions), byte length, and finiteness. Large tensors
//! travel as ordered [`TensorChunk`]s of at most `max_chunk` bytes; [`Assembler`] rebuilds them with the same checks.

use vidmesh_proto::tensor::v1::{DataType, Tensor, TensorChunk};

/// Default chunk size for streamed tensors: well under gRPC's 4 MiB default message limit.
pub const DEFAULT_CHUNK_BYTES: usize = 2 << 20;

/// The most elements a tensor received from a client may have (1 Gi elements = 4 GiB of float32).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Why a tensor from the wire was refused. Messages name the field so a client can fix the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// The tensor is absent.
    #[error("{0} is missing")]
    Missing(String),
    /// Not float32.
    #[error("{0} must be float32, got {1}")]
    DataType(String, String),
    /// A zero dimension, no dimensions, or too many elements.
    #[error("{0} has an invalid shape {1:?}: {2}")]
    Shape(String, Vec<u64>, String),
    /// The byte length does not match the shape.
    #[error("{0} has {1} bytes but shape {2:?} of float32 needs {3}")]
    Length(String, usize, Vec<u64>, usize),
    /// NaN or infinity.
    #[error("{0} contains a non-finite value (NaN or Inf) at element {1}")]
    NonFinite(String, usize),
    /// Chunks out of order, overlapping or beyond the announced size.
    #[error("{0}: malformed chunk stream: {1}")]
    Chunks(String, String),
}

/// An owned, row-major float32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements, row-major; `data.len()` equals the product of `shape`.
    pub data: Vec<f32>,
}

fn checked_len(name: &str, shape: &[u64]) -> Result<usize, TensorError> {
    if shape.is_empty() {
        return Err(TensorError::Shape(name.into(), shape.to_vec(), "no dimensions".into()));
    }
    let mut n: usize = 1;
    for &d in shape {
        if d == 0 {
            return Err(TensorError::Shape(name.into(), shape.to_vec(), "zero-sized dimension".into()));
        }
        n = usize::try_from(d).ok().and_then(|d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
            TensorError::Shape(name.into(), shape.to_vec(), format!("more than {MAX_ELEMENTS} elements"))
        })?;
    }
    Ok(n)
}

fn decode_f32(name: &str, bytes: &[u8]) -> Result<Vec<f32>, TensorError> {
    let data: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(TensorError::NonFinite(name.into(), i));
    }
    Ok(data)
}

fn dtype_name(d: i32) -> String {
    DataType::try_from(d).map(|d| d.as_str_name().to_string()).unwrap_or_else(|_| format!("unknown dtype {d}"))
}

impl TensorF32 {
    /// Frames `t0..t1` of a [C, T, h, w] latent video (axis 1).
    pub fn frames(&self, t0: usize, t1: usize) -> Self {
        let (c, t, plane) = (self.shape[0], self.shape[1], self.shape[2] * self.shape[3]);
        let data =
            (0..c).flat_map(|ch| self.data[(ch * t + t0) * plane..(ch * t + t1) * plane].iter().copied()).collect();
        Self::new(vec![c, t1 - t0, self.shape[2], self.shape[3]], data)
    }

    /// This [C, T, h, w] latent video followed by `next`'s frames (same C, h, w).
    pub fn concat_frames(&self, next: &Self) -> Self {
        let (c, plane) = (self.shape[0], self.shape[2] * self.shape[3]);
        let (ta, tb) = (self.shape[1], next.shape[1]);
        let mut data = Vec::with_capacity(self.data.len() + next.data.len());
        for ch in 0..c {
            data.extend_from_slice(&self.data[ch * ta * plane..(ch + 1) * ta * plane]);
            data.extend_from_slice(&next.data[ch * tb * plane..(ch + 1) * tb * plane]);
        }
        Self::new(vec![c, ta + tb, self.shape[2], self.shape[3]], data)
    }

    /// A tensor; panics in debug builds if `data` does not fit `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Checks and converts a proto tensor called `name` (used in error messages).
    pub fn from_proto(name: &str, t: Option<&Tensor>) -> Result<Self, TensorError> {
        let t = t.ok_or_else(|| TensorError::Missing(name.into()))?;
        if t.dtype != DataType::Float32 as i32 {
            return Err(TensorError::DataType(name.into(), dtype_name(t.dtype)));
        }
        let n = checked_len(name, &t.shape)?;
        if t.data.len() != n * 4 {
            return Err(TensorError::Length(name.into(), t.data.len(), t.shape.clone(), n * 4));
        }
        let data = decode_f32(name, &t.data)?;
        Ok(Self { shape: t.shape.iter().map(|&d| d as usize).collect(), data })
    }

    fn bytes(&self) -> Vec<u8> {
        self.data.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn shape_u64(&self) -> Vec<u64> {
        self.shape.iter().map(|&d| d as u64).collect()
    }

    /// The proto form (one message).
    pub fn to_proto(&self) -> Tensor {
        Tensor { dtype: DataType::Float32 as i32, shape: self.shape_u64(), data: self.bytes() }
    }

    /// The proto form in ordered chunks of at most `max_chunk` bytes (at least one chunk).
    pub fn to_chunks(&self, max_chunk: usize) -> Vec<TensorChunk> {
        let bytes = self.bytes();
        let max_chunk = max_chunk.max(4);
        let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![&[]] } else { bytes.chunks(max_chunk).collect() };
        let last = pieces.len() - 1;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, data)| TensorChunk {
                dtype: if i == 0 { DataType::Float32 as i32 } else { 0 },
                shape: if i == 0 { self.shape_u64() } else { vec![] },
                offset: (i * max_chunk) as u64,
                data: data.to_vec(),
                last: i == last,
            })
            .collect()
    }
}

/// Rebuilds a tensor from its chunks, refusing anything malformed.
#[derive(Debug)]
pub struct Assembler {
    name: String,
    shape: Vec<u64>,
    expected: usize,
    bytes: Vec<u8>,
    done: bool,
}

impl Assembler {
    /// An assembler for the tensor called `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into(), shape: vec![], expected: 0, bytes: vec![], done: false }
    }

    fn err(&self, msg: impl Into<String>) -> TensorError {
        TensorError::Chunks(self.name.clone(), msg.into())
    }

    /// Adds the next chunk; returns the tensor when `chunk.last` completes it.
    pub fn push(&mut self, chunk: TensorChunk) -> Result<Option<TensorF32>, TensorError> {
        if self.done {
            return Err(self.err("chunk after the last one"));
        }
        if chunk.offset == 0 && self.bytes.is_empty() {
            if chunk.dtype != DataType::Float32 as i32 {
                return Err(TensorError::DataType(self.name.clone(), dtype_name(chunk.dtype)));
            }
            self.expected = checked_len(&self.name, &chunk.shape)? * 4;
            self.shape = chunk.shape;
        } else if self.shape.is_empty() {
            return Err(self.err("the first chunk must have offset 0 and carry dtype and shape"));
        }
        if chunk.offset as usize != self.bytes.len() {
            return Err(self.err(format!("chunk at offset {} but {} bytes received", chunk.offset, self.bytes.len())));
        }
        if self.bytes.len() + chunk.data.len() > self.expected {
            return Err(self.err(format!("more than the {} bytes the shape announces", self.expected)));
        }
        self.bytes.extend_from_slice(&chunk.data);
        if !chunk.last {
            return Ok(None);
        }
        self.done = true;
        if self.bytes.len() != self.expected {
            return Err(TensorError::Length(self.name.clone(), self.bytes.len(), self.shape.clone(), self.expected));
        }
        let data = decode_f32(&self.name, &self.bytes)?;
        Ok(Some(TensorF32 { shape: self.shape.iter().map(|&d| d as usize).collect(), data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>) -> TensorF32 {
        let n = shape.iter().product();
        TensorF32::new(shape, (0..n).map(|i| i as f32 * 0.5 - 3.0).collect())
    }

    #[test]
    fn round_trips_whole_and_chunked() {
        let x = t(vec![8, 4, 16, 24]);
        assert_eq!(TensorF32::from_proto("x", Some(&x.to_proto())).unwrap(), x);
        let chunks = x.to_chunks(1000);
        assert_eq!(chunks.len(), (x.data.len() * 4).div_ceil(1000));
        let mut a = Assembler::new("x");
        let mut out = None;
        for c in chunks {
            out = a.push(c).unwrap();
        }
        assert_eq!(out.unwrap(), x);
    }

    #[test]
    fn refuses_malformed_tensors_with_named_errors() {
        let good = t(vec![2, 3]).to_proto();
        assert_eq!(TensorF32::from_proto("s", None).unwrap_err(), TensorError::Missing("s".into()));
        let mut bad = good.clone();
        bad.dtype = DataType::Int64 as i32;
        assert!(matches!(TensorF32::from_proto("s", Some(&bad)), Err(TensorError::DataType(..))));
        let mut bad = good.clone();
        bad.shape = vec![2, 0];
        assert!(matches!(TensorF32::from_proto("s", Some(&bad)), Err(TensorError::Shape(..))));
        let mut bad = good.clone();
        bad.shape = vec![u64::MAX, 2];
        assert!(matches!(TensorF32::from_proto("s", Some(&bad)), Err(TensorError::Shape(..))));
        let mut bad = good.clone();
        bad.data.pop();
        assert!(matches!(TensorF32::from_proto("s", Some(&bad)), Err(TensorError::Length(..))));
        let mut bad = good;
        bad.data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        let e = TensorF32::from_proto("s", Some(&bad)).unwrap_err();
        assert_eq!(e, TensorError::NonFinite("s".into(), 1));
        assert!(e.to_string().contains("NaN"));
    }

    #[test]
    fn refuses_malformed_chunk_streams() {
        let x = t(vec![4, 100]);
        let chunks = x.to_chunks(400);
        let mut a = Assembler::new("x");
        assert!(a.push(chunks[1].clone()).is_err(), "first chunk must start at 0");
        let mut a = Assembler::new("x");
        a.push(chunks[0].clone()).unwrap();
        assert!(a.push(chunks[2].clone()).is_err(), "gap");
        let mut a = Assembler::new("x");
        let mut early = chunks[0].clone();
        early.last = true;
        assert!(matches!(a.push(early), Err(TensorError::Length(..))), "short");
    }
}
