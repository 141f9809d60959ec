//! A loss-curve PNG with no font dependency: the train loss (blue) and validation loss (orange)
//! against steps, on light grid lines at every integer loss value.

use crate::error::{FlowError, Result};
use std::path::Path;

const WIDTH: usize = 800;
const HEIGHT: usize = 480;
const MARGIN: usize = 40;

pub fn plot_losses(path: &Path, train: &[(usize, f64)], validation: &[(usize, f64)]) -> Result<()> {
    let mut pixels = vec![255u8; WIDTH * HEIGHT * 3];
    let all = train.iter().chain(validation).filter(|p| p.1.is_finite());
    let (mut max_step, mut low, mut high) = (1usize, f64::INFINITY, f64::NEG_INFINITY);
    for &(s, l) in all {
        max_step = max_step.max(s);
        low = low.min(l);
        high = high.max(l);
    }
    if !low.is_finite() {
        return Ok(());
    }
    let (low, high) = (low.floor(), high.ceil().max(low.floor() + 1.0));
    let x_of = |s: usize| MARGIN + s * (WIDTH - 2 * MARGIN) / max_step;
    let y_of = |l: f64| {
        HEIGHT - MARGIN - (((l - low) / (high - low)) * (HEIGHT - 2 * MARGIN) as f64) as usize
    };
    let mut put = |x: usize, y: usize, color: [u8; 3]| {
        if x < WIDTH && y < HEIGHT {
            pixels[(y * WIDTH + x) * 3..(y * WIDTH + x) * 3 + 3].copy_from_slice(&color);
        }
    };
    for level in (low as i64)..=(high as i64) {
        let y = y_of(level as f64);
        for x in MARGIN..WIDTH - MARGIN {
            put(x, y, [220, 220, 220]);
        }
    }
    for y in MARGIN..=HEIGHT - MARGIN {
        put(MARGIN, y, [0, 0, 0]);
    }
    for x in MARGIN..WIDTH - MARGIN {
        put(x, HEIGHT - MARGIN, [0, 0, 0]);
    }
    for (series, color) in [(train, [31, 119, 180]), (validation, [255, 127, 14])] {
        for pair in series.windows(2) {
            let (x0, y0) = (x_of(pair[0].0) as f64, y_of(pair[0].1) as f64);
            let (x1, y1) = (x_of(pair[1].0) as f64, y_of(pair[1].1) as f64);
            let n = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for i in 0..=n {
                let f = i as f64 / n as f64;
                let (x, y) = ((x0 + f * (x1 - x0)) as usize, (y0 + f * (y1 - y0)) as usize);
                put(x, y, color);
                put(x, y + 1, color);
            }
        }
    }
    write_png(path, &pixels)
}

/// A line of (x, y) points and its RGB colour.
pub type Series = (Vec<(f64, f64)>, [u8; 3]);

/// Lines of (x, y) points in their colours, x and y scaled to the given ranges, with grid lines
/// at every quarter of the y range (accuracy plots).
pub fn plot_lines(
    path: &Path,
    series: &[Series],
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<()> {
    let mut pixels = vec![255u8; WIDTH * HEIGHT * 3];
    let mut put = |x: usize, y: usize, color: [u8; 3]| {
        if x < WIDTH && y < HEIGHT {
            let i = (y * WIDTH + x) * 3;
            pixels[i..i + 3].copy_from_slice(&color);
        }
    };
    let span = |r: (f64, f64)| (r.1 - r.0).max(1e-12);
    let x_of =
        |x: f64| MARGIN as f64 + (x - x_range.0) / span(x_range) * (WIDTH - 2 * MARGIN) as f64;
    let y_of = |y: f64| {
        (HEIGHT - MARGIN) as f64 - (y - y_range.0) / span(y_range) * (HEIGHT - 2 * MARGIN) as f64
    };
    for quarter in 0..=4 {
        let y = y_of(y_range.0 + span(y_range) * quarter as f64 / 4.0) as usize;
        for x in MARGIN..WIDTH - MARGIN {
            put(x, y, [225, 225, 225]);
        }
    }
    for y in MARGIN..=HEIGHT - MARGIN {
        put(MARGIN, y, [0, 0, 0]);
    }
    for (points, color) in series {
        for &(x, y) in points {
            let (cx, cy) = (x_of(x) as usize, y_of(y) as usize);
            for dx in 0..7 {
                for dy in 0..7 {
                    put(
                        (cx + dx).saturating_sub(3),
                        (cy + dy).saturating_sub(3),
                        *color,
                    );
                }
            }
        }
        for pair in points.windows(2) {
            let (x0, y0) = (x_of(pair[0].0), y_of(pair[0].1));
            let (x1, y1) = (x_of(pair[1].0), y_of(pair[1].1));
            let n = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for i in 0..=n {
                let f = i as f64 / n as f64;
                let (x, y) = ((x0 + f * (x1 - x0)) as usize, (y0 + f * (y1 - y0)) as usize);
                put(x, y, *color);
                put(x, y + 1, *color);
            }
        }
    }
    write_png(path, &pixels)
}

fn write_png(path: &Path, pixels: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| FlowError::io(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH as u32, HEIGHT as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e}", path.display())))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e}", path.display())))
}
