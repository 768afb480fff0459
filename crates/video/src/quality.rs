//! Fidelity measures between frames: PSNR (RGB and BT.601 luma) and SSIM of luma.

/// BT.601 luma of one RGB pixel.
fn luma(p: &[u8]) -> f64 {
    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
}

/// Peak signal-to-noise ratio between two equally sized byte buffers, in dB (infinite when identical).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr of buffers of different sizes");
    let mse = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
    psnr_from_mse(mse)
}

/// PSNR of the BT.601 luma of two RGB buffers, in dB. Luma is coded at full resolution, so this measures the
/// codec; RGB PSNR also counts yuv420p's halved chroma resolution, which costs sharp saturated edges several dB
/// whatever the quantiser.
pub fn luma_psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr of buffers of different sizes");
    let n = a.len() / 3;
    let mse =
        a.chunks_exact(3).zip(b.chunks_exact(3)).map(|(x, y)| (luma(x) - luma(y)).powi(2)).sum::<f64>() / n as f64;
    psnr_from_mse(mse)
}

/// PSNR in dB of a mean squared error over 8-bit samples (infinite for 0).
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// Mean SSIM (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255) of the BT.601 luma
/// of two `w × h` RGB frames; windows are clipped at the borders. 1 when identical.
pub fn luma_ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "ssim of buffers of different sizes");
    assert_eq!(a.len(), w * h * 3, "ssim: buffer is not w x h RGB");
    let x: Vec<f64> = a.chunks_exact(3).map(luma).collect();
    let y: Vec<f64> = b.chunks_exact(3).map(luma).collect();
    let g: Vec<f64> = (-5i32..=5).map(|d| (-f64::from(d * d) / (2.0 * 1.5 * 1.5)).exp()).collect();
    // Separable Gaussian blur with renormalised weights at the borders: one pass along x, one along y.
    let pass = |v: &[f64], along_x: bool| -> Vec<f64> {
        let (len, step) = if along_x { (w, 1) } else { (h, w) };
        let mut out = vec![0.0; w * h];
        for (idx, o) in out.iter_mut().enumerate() {
            let pos = if along_x { idx % w } else { idx / w };
            let (mut s, mut n) = (0.0, 0.0);
            for (k, gk) in g.iter().enumerate() {
                let q = pos as isize + k as isize - 5;
                if q >= 0 && (q as usize) < len {
                    s += gk * v[(idx as isize + (q - pos as isize) * step as isize) as usize];
                    n += gk;
                }
            }
            *o = s / n;
        }
        out
    };
    let blur = |v: &[f64]| pass(&pass(v, true), false);
    let prod = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(u, v)| u * v).collect::<Vec<f64>>();
    let (mx, my) = (blur(&x), blur(&y));
    let (sxx, syy, sxy) = (blur(&prod(&x, &x)), blur(&prod(&y, &y)), blur(&prod(&x, &y)));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let total: f64 = (0..w * h)
        .map(|k| {
            let (vx, vy, cxy) = (sxx[k] - mx[k] * mx[k], syy[k] - my[k] * my[k], sxy[k] - mx[k] * my[k]);
            ((2.0 * mx[k] * my[k] + c1) * (2.0 * cxy + c2)) / ((mx[k] * mx[k] + my[k] * my[k] + c1) * (vx + vy + c2))
        })
        .sum();
    total / (w * h) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_is_one_for_identical_frames_and_drops_with_noise() {
        let (w, h) = (32, 24);
        let a: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
        assert!((luma_ssim(&a, &a, w, h) - 1.0).abs() < 1e-12);
        let b: Vec<u8> = a.iter().enumerate().map(|(i, &v)| v.saturating_add((i % 7) as u8 * 12)).collect();
        let s = luma_ssim(&a, &b, w, h);
        assert!(s < 0.99 && s > 0.0, "ssim {s}");
    }
}
