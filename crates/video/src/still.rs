//! Stills from a video: a PNG or JPEG thumbnail of one frame, and a spritesheet (a grid of evenly spaced frames,
//! for scrubbing previews).

use image::{ImageFormat, RgbImage};

use crate::{Video, VideoError};

fn image_of(video: &Video, index: usize) -> Result<RgbImage, VideoError> {
    let frame = video
        .frames
        .get(index)
        .ok_or_else(|| VideoError::Invalid(format!("frame {index} does not exist ({} frames)", video.frames.len())))?;
    RgbImage::from_raw(video.width as u32, video.height as u32, frame.clone())
        .ok_or_else(|| VideoError::Invalid(format!("frame {index} does not fit {}x{}", video.width, video.height)))
}

fn encode(img: &RgbImage, format: ImageFormat) -> Result<Vec<u8>, VideoError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).map_err(|e| VideoError::Image(e.to_string()))?;
    Ok(out.into_inner())
}

/// PNG of the middle frame.
pub fn thumbnail_png(video: &Video) -> Result<Vec<u8>, VideoError> {
    video.validate()?;
    encode(&image_of(video, video.frames.len() / 2)?, ImageFormat::Png)
}

/// JPEG of the middle frame.
pub fn thumbnail_jpeg(video: &Video) -> Result<Vec<u8>, VideoError> {
    video.validate()?;
    encode(&image_of(video, video.frames.len() / 2)?, ImageFormat::Jpeg)
}

/// PNG grid of `columns × rows` evenly spaced frames (fewer cells when the video is shorter), left to right, top
/// to bottom.
pub fn spritesheet(video: &Video, columns: usize, rows: usize) -> Result<Vec<u8>, VideoError> {
    video.validate()?;
    if columns == 0 || rows == 0 || columns * rows > 256 {
        return Err(VideoError::Invalid(format!("a {columns}x{rows} grid must have 1..=256 cells")));
    }
    let cells = (columns * rows).min(video.frames.len());
    let (w, h) = (video.width as u32, video.height as u32);
    let used_rows = cells.div_ceil(columns) as u32;
    let mut sheet = RgbImage::new(w * columns.min(cells) as u32, h * used_rows);
    for c in 0..cells {
        let index = c * video.frames.len() / cells;
        let img = image_of(video, index)?;
        image::imageops::replace(
            &mut sheet,
            &img,
            i64::from((c % columns) as u32 * w),
            i64::from((c / columns) as u32 * h),
        );
    }
    encode(&sheet, ImageFormat::Png)
}

/// PNG of one RGB frame of `width × height`.
pub fn png_frame(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>, VideoError> {
    let img = RgbImage::from_raw(width as u32, height as u32, rgb.to_vec())
        .ok_or_else(|| VideoError::Invalid(format!("{} bytes do not make a {width}x{height} RGB frame", rgb.len())))?;
    encode(&img, ImageFormat::Png)
}
