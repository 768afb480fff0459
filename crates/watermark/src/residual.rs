//! The detector's content prediction: each frame's luma minus a range-gated local mean (the mean of the
//! neighbours within an 11×11 window whose luma is within a gate of the pixel's), which reproduces flat areas,
//! stripes and edges but not the low-amplitude pattern.
//!
//! Invariants: luma is in thousandths of a level (integers, exact in `f32`), so "within ±8 levels" is exact; the
//! window is clipped to the frame; the result is the definition's up to `f32` rounding of the window sums (unit
//! test against a per-pixel reference at every size, edges and partial blocks included).

/// The detection's range gate in levels of luma (see [`residual`]).
const GATE: f64 = 8.0;
/// The range gate of the residual the payload is decoded from, in videos large enough to carry one.
const PAYLOAD_GATE: f64 = 12.0;

/// The residual's window: `2 · RADIUS + 1` pixels square.
const RADIUS: usize = 5;
/// Pixels computed together: their window sums stay in registers over the whole window (8 lanes = two SSE
/// vectors per sum), so each tap is a handful of packed operations and no memory traffic.
const LANES: usize = 8;
/// The value of the padding around a frame's rows: outside every gate, so it never enters a window (and
/// `0 · FAR` adds nothing), which keeps the window clipped to the frame as if it were cut at the edges.
const FAR: f32 = 1.0e9;

/// The row stride of [`padded`] luma for a frame `w` wide.
fn stride(w: usize) -> usize {
    w.div_ceil(LANES) * LANES + 2 * RADIUS
}

/// Luma rows padded with [`FAR`]: `RADIUS` on the left, and on the right `RADIUS` plus enough to make the width a
/// multiple of [`LANES`] (row stride [`stride`]).
fn padded(y: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut p = vec![FAR; stride(w) * h];
    for (dst, src) in p.chunks_exact_mut(stride(w)).zip(y.chunks_exact(w)) {
        dst[RADIUS..RADIUS + w].copy_from_slice(src);
    }
    p
}

/// Rows `j0..` of [`residual`] into `out` (and, with `WIDE`, the payload gate's into `wide`), from the padded
/// luma `p` of a `w × h` frame (see [`padded`]); a const parameter so that the plain variant carries no second
/// mask.
fn gated_rows<const WIDE: bool>(p: &[f32], w: usize, h: usize, j0: usize, out: &mut [f64], wide: &mut [f64]) {
    let stride = stride(w);
    // Luma comes in thousandths of a level (integers, exact in f32), so the gates are exact: ±8 means ±8.000.
    let (gate, wide_gate) = ((GATE * 1000.0) as f32, (PAYLOAD_GATE * 1000.0) as f32);
    // The window includes the centre (always within the gate); the prediction leaves it out.
    let predict = |c: f32, s: f32, n: f32| {
        if n > 1.0 { (f64::from(c) - f64::from(s - c) / f64::from(n - 1.0)) / 1000.0 } else { 0.0 }
    };
    for (dj, out_row) in out.chunks_exact_mut(w).enumerate() {
        let j = j0 + dj;
        for x in (0..w).step_by(LANES) {
            // Output pixels x..x + LANES (padded columns x + RADIUS..): their centres and window sums.
            let mut c = [0.0f32; LANES];
            c.copy_from_slice(&p[j * stride + x + RADIUS..][..LANES]);
            let (mut s, mut n, mut s2, mut n2) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            for r in j.saturating_sub(RADIUS)..=(j + RADIUS).min(h - 1) {
                let row = &p[r * stride + x..][..LANES + 2 * RADIUS];
                for dx in 0..=2 * RADIUS {
                    let v = &row[dx..dx + LANES];
                    for l in 0..LANES {
                        let d = (v[l] - c[l]).abs();
                        let m = f32::from(u8::from(d <= gate));
                        s[l] += m * v[l];
                        n[l] += m;
                        if WIDE {
                            let m2 = f32::from(u8::from(d <= wide_gate));
                            s2[l] += m2 * v[l];
                            n2[l] += m2;
                        }
                    }
                }
            }
            let lanes = LANES.min(w - x);
            for l in 0..lanes {
                out_row[x + l] = predict(c[l], s[l], n[l]);
            }
            if WIDE {
                for l in 0..lanes {
                    wide[dj * w + x + l] = predict(c[l], s2[l], n2[l]);
                }
            }
        }
    }
}

/// The frame minus its content prediction: the mean of the neighbours within a window whose luma is within a
/// range of the pixel's (a range-gated box filter, like a bilateral filter without the centre). Flat regions
/// and stripes are predicted exactly, so only the low-amplitude pattern remains; across edges the gate keeps the
/// other side out, so edges leave almost nothing behind.
///
/// The detection's gate is ±8 levels ([`GATE`]): wide enough for the pattern (±2–3 levels of luma) and the codec's
/// noise, narrow enough that a brightness ×0.5 still keeps the two sides of a ~28-level stripe or checker edge
/// apart (at ±12, halved stripes leaked into the residual: the evaluation's striped and checkered videos fell to
/// z 3–4). With `payload`, the same pass also returns the residual at ±12 ([`PAYLOAD_GATE`]), which the payload's
/// 4–8 px band decodes better from (docs/research/2026-12-04-detection-before-realistic-sizes.md).
pub(crate) fn residual(y: &[f32], w: usize, h: usize, payload: bool) -> (Vec<f64>, Option<Vec<f64>>) {
    let p = padded(y, w, h);
    let p = p.as_slice();
    let rows = |j0: usize, out: &mut [f64], wide: &mut [f64]| {
        if payload { gated_rows::<true>(p, w, h, j0, out, wide) } else { gated_rows::<false>(p, w, h, j0, out, wide) }
    };
    let mut out = vec![0.0; w * h];
    let mut wide = vec![0.0; if payload { w * h } else { 0 }];
    // Rows in parallel over the machine's cores (a frame of 640x360 is ~28M window taps).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8).min(h.div_ceil(16)).max(1);
    let per = h.div_ceil(threads);
    if threads == 1 {
        rows(0, &mut out, &mut wide);
    } else {
        std::thread::scope(|scope| {
            // Without a payload `wide` is empty and every thread gets an empty slice.
            let mut wide_chunks = wide.chunks_mut(per * w);
            for (t, chunk) in out.chunks_mut(per * w).enumerate() {
                let wide_chunk = wide_chunks.next().unwrap_or_default();
                scope.spawn(move || rows(t * per, chunk, wide_chunk));
            }
        });
    }
    (out, payload.then_some(wide))
}

/// Luma of RGB8 pixels (BT.601 weights) in thousandths of a level: `299 R + 587 G + 114 B`, at most 255,000.
pub(crate) fn luma_milli(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The residual as defined, one pixel at a time: the mean of the other pixels of the window (clipped to the
    /// frame) whose luma is within the gate of the centre's, subtracted from the centre.
    fn reference(y: &[f32], w: usize, h: usize, gate: f64) -> Vec<f64> {
        let mut out = vec![0.0; w * h];
        for j in 0..h {
            for i in 0..w {
                let c = f64::from(y[j * w + i]);
                let (mut s, mut n) = (0.0, 0.0);
                for r in j.saturating_sub(RADIUS)..=(j + RADIUS).min(h - 1) {
                    for q in i.saturating_sub(RADIUS)..=(i + RADIUS).min(w - 1) {
                        let v = f64::from(y[r * w + q]);
                        if (r, q) != (j, i) && (v - c).abs() <= gate * 1000.0 {
                            s += v;
                            n += 1.0;
                        }
                    }
                }
                out[j * w + i] = if n > 0.0 { (c - s / n) / 1000.0 } else { 0.0 };
            }
        }
        out
    }

    #[test]
    fn the_blocked_residual_matches_its_definition_at_every_size() {
        // Luma in thousandths of a level, as `Accumulator::push_at` makes it: stripes, a ramp and noise, so that
        // some neighbours fall inside each gate and some outside (and some exactly on it).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for (w, h) in [(1, 1), (1, 9), (7, 3), (8, 8), (9, 17), (13, 40), (70, 33)] {
            let y: Vec<f32> = (0..w * h)
                .map(|k| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let (i, j) = (k % w, k / w);
                    let stripe = if (j / 3) % 2 == 0 { 200_000 } else { 212_000 };
                    (stripe + i as u64 * 500 + state % 9_000) as f32
                })
                .collect();
            for payload in [false, true] {
                let (out, wide) = residual(&y, w, h, payload);
                let expect = reference(&y, w, h, GATE);
                for (k, (a, b)) in out.iter().zip(&expect).enumerate() {
                    assert!((a - b).abs() < 1e-3, "{w}x{h} pixel {k}: {a} vs {b}");
                }
                match wide {
                    Some(wide) => {
                        let expect = reference(&y, w, h, PAYLOAD_GATE);
                        for (k, (a, b)) in wide.iter().zip(&expect).enumerate() {
                            assert!((a - b).abs() < 1e-3, "{w}x{h} pixel {k} at the payload gate: {a} vs {b}");
                        }
                    }
                    None => assert!(!payload),
                }
            }
        }
    }
}
