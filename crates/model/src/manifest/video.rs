//! `[video]`: the frame counts, sizes and frame rates a bundle supports, as lists or ranges.

use serde::{Deserialize, Serialize};

/// `[video]`: what the bundle supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoSpec {
    /// Default frame count.
    pub default_frames: u32,
    /// Default height.
    pub default_height: u32,
    /// Default width.
    pub default_width: u32,
    /// Default fps.
    pub default_fps: u32,
    /// Supported frame counts.
    pub frames: Choices,
    /// Supported [height, width] pairs (or `height` and `width` ranges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<[u32; 2]>,
    /// Supported heights, with `width`, instead of `sizes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Range>,
    /// Supported widths, with `height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<Range>,
    /// Supported fps.
    pub fps: Choices,
}

/// `{ min, max, step }`: every `min + k·step` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// Spacing.
    pub step: u32,
}

impl Range {
    /// Whether `v` is one of the range's values.
    pub fn contains(&self, v: u32) -> bool {
        v >= self.min && v <= self.max && (v - self.min).is_multiple_of(self.step.max(1))
    }

    /// Every value, in order.
    pub fn values(&self) -> Vec<u32> {
        (self.min..=self.max).step_by(self.step.max(1) as usize).collect()
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={} in steps of {}", self.min, self.max, self.step)
    }
}

/// A list of values or a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// These values.
    List(Vec<u32>),
    /// A range.
    Range(Range),
}

impl Choices {
    /// Whether `v` is allowed.
    pub fn contains(&self, v: u32) -> bool {
        match self {
            Self::List(l) => l.contains(&v),
            Self::Range(r) => r.contains(v),
        }
    }

    /// Every allowed value, in order.
    pub fn values(&self) -> Vec<u32> {
        match self {
            Self::List(l) => l.clone(),
            Self::Range(r) => r.values(),
        }
    }

    /// The largest allowed value.
    pub fn max(&self) -> u32 {
        self.values().into_iter().max().unwrap_or(0)
    }
}

impl std::fmt::Display for Choices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::List(l) => write!(f, "{l:?}"),
            Self::Range(r) => write!(f, "{r}"),
        }
    }
}

impl VideoSpec {
    /// Whether `height` × `width` is supported.
    pub fn size_ok(&self, height: u32, width: u32) -> bool {
        match (&self.height, &self.width) {
            (Some(h), Some(w)) => h.contains(height) && w.contains(width),
            _ => self.sizes.contains(&[height, width]),
        }
    }

    /// The supported sizes as people write them (`WxH`, or ranges).
    pub fn sizes_text(&self) -> Vec<String> {
        match (&self.height, &self.width) {
            (Some(h), Some(w)) => vec![format!("width {w} x height {h}")],
            _ => self.sizes.iter().map(|[h, w]| format!("{w}x{h}")).collect(),
        }
    }
}
