//! `[[camera.region]]`: a region of interest as written ([`RawRegion`]) and checked
//! ([`RegionConfig`]).

use std::collections::HashSet;

use serde::Deserialize;

use super::region::{Fit, Place, Rect};
use crate::problems::Problems;

/// One `[[camera.region]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    /// Used in topics: `[A-Za-z0-9_-]+`, unique within its camera.
    pub name: String,
    /// `[x, y, width, height]` in source pixels ...
    pub rect: Option<Vec<i64>>,
    /// ... or in fractions of the frame, each 0..1 (one of the two).
    pub rect_fraction: Option<Vec<f64>>,
    /// How the region is fit to the model's square input.
    #[serde(default)]
    pub fit: Fit,
    /// RGB 0..255 for `fit = "pad"`; default: the preset's mean.
    pub pad_color: Option<Vec<i64>>,
    /// At most the camera's `fps`; default: the camera's.
    pub fps: Option<f64>,
}

/// One region, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionConfig {
    pub name: String,
    pub rect: Place,
    pub fit: Fit,
    /// `pad` only; `None` = the preset's mean.
    pub pad_rgb: Option<[u8; 3]>,
    /// Frames per second to classify the region at; `None` = the camera's.
    pub fps: Option<f64>,
}

/// The largest coordinate or size a rectangle may have (well above any video frame).
const MAX_PIXELS: i64 = 1 << 16;

impl RawRegion {
    /// Checks the region written at `at` (e.g. `camera[0].region[1]`) of a camera
    /// classified at `camera_fps` (0 = every frame).
    pub fn check(self, at: &str, camera_fps: f64, p: &mut Problems) -> Option<RegionConfig> {
        let field = |name: &str| format!("{at}.{name}");
        let mut ok = p.name(&field("name"), &self.name);
        let rect = place(
            self.rect.as_deref(),
            self.rect_fraction.as_deref(),
            &field,
            p,
        );
        let pad_rgb = match (&self.pad_color, self.fit) {
            (None, _) => None,
            (Some(_), fit) if fit != Fit::Pad => {
                p.add(
                    field("pad_color"),
                    format!(
                        "only for fit = \"pad\" (this region's fit is {:?})",
                        fit.as_str()
                    ),
                );
                ok = false;
                None
            }
            (Some(c), _) => match c[..] {
                [r, g, b] if [r, g, b].iter().all(|v| (0..=255).contains(v)) => {
                    Some([r as u8, g as u8, b as u8])
                }
                _ => {
                    p.add(
                        field("pad_color"),
                        format!("{c:?} must be [r, g, b], each 0 to 255"),
                    );
                    ok = false;
                    None
                }
            },
        };
        if let Some(fps) = self.fps {
            let most = if camera_fps > 0.0 { camera_fps } else { 1000.0 };
            if !fps.is_finite() || fps <= 0.0 || fps > most {
                p.add(
                    field("fps"),
                    format!("{fps} must be above 0 and at most the camera's fps ({most})"),
                );
                ok = false;
            }
        }
        let rect = rect?;
        ok.then_some(RegionConfig {
            name: self.name,
            rect,
            fit: self.fit,
            pad_rgb,
            fps: self.fps,
        })
    }
}

/// The region's place from `rect` or `rect_fraction` (exactly one), or why not.
fn place(
    rect: Option<&[i64]>,
    fraction: Option<&[f64]>,
    field: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<Place> {
    match (rect, fraction) {
        (Some(&[x, y, w, h]), None)
            if [x, y].iter().all(|v| (0..MAX_PIXELS).contains(v))
                && [w, h].iter().all(|v| (1..=MAX_PIXELS).contains(v)) =>
        {
            Some(Place::Pixels(Rect {
                x: x as u32,
                y: y as u32,
                width: w as u32,
                height: h as u32,
            }))
        }
        (Some(r), None) => {
            p.add(
                field("rect"),
                format!(
                    "{r:?} must be [x, y, width, height] in pixels: x and y from 0, \
                     width and height from 1, each below {MAX_PIXELS}"
                ),
            );
            None
        }
        (None, Some(&[x, y, w, h]))
            if [x, y, w, h].iter().all(|v| v.is_finite())
                && (0.0..1.0).contains(&x)
                && (0.0..1.0).contains(&y)
                && w > 0.0
                && h > 0.0
                && x + w <= 1.0 + 1e-9
                && y + h <= 1.0 + 1e-9 =>
        {
            Some(Place::Fraction([x, y, w, h]))
        }
        (None, Some(f)) => {
            p.add(
                field("rect_fraction"),
                format!(
                    "{f:?} must be [x, y, width, height] as fractions of the frame: x and y \
                     from 0 (below 1), width and height above 0, x + width and y + height \
                     at most 1"
                ),
            );
            None
        }
        (Some(_), Some(_)) => {
            p.add(
                field("rect_fraction"),
                "give rect or rect_fraction, not both",
            );
            None
        }
        (None, None) => {
            p.add(
                field("rect"),
                "missing: [x, y, width, height] in pixels (or rect_fraction)",
            );
            None
        }
    }
}

/// Checks camera `camera`'s regions (its `fps` is `camera_fps`); names must be unique
/// within the camera. Returns the valid ones.
pub fn check_regions(
    raw: Vec<RawRegion>,
    camera: usize,
    camera_fps: f64,
    p: &mut Problems,
) -> Vec<RegionConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("camera[{camera}].region[{i}]");
        let Some(region) = r.check(&at, camera_fps, p) else {
            continue;
        };
        if !seen.insert(region.name.clone()) {
            p.add(
                format!("{at}.name"),
                format!("duplicate {:?} in this camera", region.name),
            );
            continue;
        }
        out.push(region);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, rect: &[i64]) -> RawRegion {
        RawRegion {
            name: name.into(),
            rect: Some(rect.to_vec()),
            rect_fraction: None,
            fit: Fit::Crop,
            pad_color: None,
            fps: None,
        }
    }

    fn problems(regions: Vec<RawRegion>, fps: f64) -> (Vec<RegionConfig>, Vec<String>) {
        let mut p = Problems::default();
        let ok = check_regions(regions, 2, fps, &mut p);
        (ok, p.into_vec().iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn a_valid_region_is_kept_as_written() {
        let mut r = raw("driveway", &[640, 0, 640, 720]);
        r.fit = Fit::Pad;
        r.pad_color = Some(vec![0, 128, 255]);
        r.fps = Some(1.0);
        let (ok, errs) = problems(vec![r], 2.0);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            ok,
            vec![RegionConfig {
                name: "driveway".into(),
                rect: Place::Pixels(Rect {
                    x: 640,
                    y: 0,
                    width: 640,
                    height: 720
                }),
                fit: Fit::Pad,
                pad_rgb: Some([0, 128, 255]),
                fps: Some(1.0),
            }]
        );
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let mut pad_on_crop = raw("c", &[0, 0, 1, 1]);
        pad_on_crop.pad_color = Some(vec![1, 2, 3]);
        let mut bad_colour = raw("d", &[0, 0, 1, 1]);
        bad_colour.fit = Fit::Pad;
        bad_colour.pad_color = Some(vec![1, 2, 256]);
        let mut too_fast = raw("e", &[0, 0, 1, 1]);
        too_fast.fps = Some(3.0);
        let (ok, errs) = problems(
            vec![
                raw("a b", &[0, 0, 1, 1]),
                raw("zero", &[0, 0, 0, 5]),
                pad_on_crop,
                bad_colour,
                too_fast,
                raw("short", &[1, 2, 3]),
                raw("negative", &[-1, 0, 5, 5]),
                RawRegion {
                    rect: None,
                    rect_fraction: Some(vec![0.5, 0.0, 0.6, 1.0]),
                    ..raw("wide", &[])
                },
                RawRegion {
                    rect_fraction: Some(vec![0.0, 0.0, 1.0, 1.0]),
                    ..raw("both", &[0, 0, 1, 1])
                },
                RawRegion {
                    rect: None,
                    ..raw("neither", &[])
                },
            ],
            2.0,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let expect = [
            "camera[2].region[0].name: \"a b\" must be",
            "camera[2].region[1].rect: [0, 0, 0, 5] must be [x, y, width, height]",
            "camera[2].region[2].pad_color: only for fit = \"pad\"",
            "camera[2].region[3].pad_color: [1, 2, 256] must be [r, g, b]",
            "camera[2].region[4].fps: 3 must be above 0 and at most the camera's fps (2)",
            "camera[2].region[5].rect: [1, 2, 3] must be",
            "camera[2].region[6].rect: [-1, 0, 5, 5] must be",
            "camera[2].region[7].rect_fraction: [0.5, 0.0, 0.6, 1.0] must be",
            "camera[2].region[8].rect_fraction: give rect or rect_fraction, not both",
            "camera[2].region[9].rect: missing",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:?}");
        for (e, want) in errs.iter().zip(expect) {
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn names_are_unique_within_a_camera_and_fps_is_free_at_fps_0() {
        let mut fast = raw("b", &[0, 0, 8, 8]);
        fast.fps = Some(30.0);
        let (ok, errs) = problems(
            vec![raw("a", &[0, 0, 8, 8]), raw("a", &[1, 1, 8, 8]), fast],
            0.0,
        );
        assert_eq!(ok.len(), 2, "{ok:?}");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("camera[2].region[1].name: duplicate \"a\""),
            "{errs:?}"
        );
    }
}
