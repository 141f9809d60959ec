//! Plots a person can read: a title, axes with values and names, and a legend, drawn with
//! `plotters` into an RGB buffer and written as PNG through [`crate::io::write_atomic`]. The
//! font (DejaVu Sans, from the `dejavu` crate) is compiled in, so a plot never depends on the
//! fonts a machine has installed.

use crate::error::{FlowError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 540;
const FONT: &str = "sans-serif";
/// matplotlib's "tab10" colours, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named line of (x, y) points; `markers` draws a dot at every point.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub markers: bool,
}

/// Title, axis names and axis ranges of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
}

impl Chart {
    /// A chart whose ranges cover every finite point of `lines`, with a little room around them.
    pub fn fitted(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> Self {
        let finite = || {
            lines
                .iter()
                .flat_map(|line| &line.points)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let bounds = |values: Vec<f64>| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if low.is_finite() {
                let pad = ((high - low) * 0.05).max(1e-3);
                (low - pad, high + pad)
            } else {
                (0.0, 1.0)
            }
        };
        Self {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            x_range: bounds(finite().map(|p| p.0).collect()),
            y_range: bounds(finite().map(|p| p.1).collect()),
        }
    }
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if registered {
        Ok(())
    } else {
        Err(FlowError::Unsupported(
            "the plot font compiled into this binary could not be read".into(),
        ))
    }
}

/// Draws `lines` on `chart` and writes the PNG to `path` (atomically).
pub fn plot_lines(path: &Path, chart: &Chart, lines: &[Line]) -> Result<()> {
    register_font()?;
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart, lines)
            .map_err(|e| FlowError::Unsupported(format!("drawing {}: {e}", path.display())))?;
    }
    crate::io::write_atomic(path, &encode_png(&pixels)?)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    lines: &[Line],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut context = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 22))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            chart.x_range.0..chart.x_range.1,
            chart.y_range.0..chart.y_range.1,
        )?;
    let x_format = tick_format(chart.x_range);
    let y_format = tick_format(chart.y_range);
    context
        .configure_mesh()
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (index, line) in lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let points = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        context
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        if line.markers {
            context.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?;
        }
    }
    context
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(legend_corner(chart, lines))
        .draw()?;
    root.present()
}

/// The first corner (upper right, lower right, upper left, lower left) whose quarter-width,
/// third-height box holds no point of any line, so that the legend hides no data; upper right
/// when every corner holds some.
fn legend_corner(chart: &Chart, lines: &[Line]) -> SeriesLabelPosition {
    let (x0, x1) = chart.x_range;
    let (y0, y1) = chart.y_range;
    let (dx, dy) = ((x1 - x0) / 4.0, (y1 - y0) / 3.0);
    let corners = [
        (SeriesLabelPosition::UpperRight, x1 - dx..=x1, y1 - dy..=y1),
        (SeriesLabelPosition::LowerRight, x1 - dx..=x1, y0..=y0 + dy),
        (SeriesLabelPosition::UpperLeft, x0..=x0 + dx, y1 - dy..=y1),
        (SeriesLabelPosition::LowerLeft, x0..=x0 + dx, y0..=y0 + dy),
    ];
    let points = || lines.iter().flat_map(|line| line.points.iter());
    corners
        .into_iter()
        .find(|(_, xs, ys)| !points().any(|(x, y)| xs.contains(x) && ys.contains(y)))
        .map_or(SeriesLabelPosition::UpperRight, |(corner, _, _)| corner)
}

/// Tick labels with as many decimals as the axis span needs ("2000", not "2000.0").
fn tick_format(range: (f64, f64)) -> impl Fn(&f64) -> String {
    let span = (range.1 - range.0).abs();
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    move |value: &f64| format!("{value:.decimals$}")
}

fn encode_png(pixels: &[u8]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let failed = |e: png::EncodingError| FlowError::Unsupported(format!("encoding a PNG: {e}"));
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(pixels).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(bytes)
}

/// A run's loss curves: training loss and validation loss (NELBO per token) against steps.
pub fn plot_losses(
    path: &Path,
    title: &str,
    train: &[(usize, f64)],
    validation: &[(usize, f64)],
) -> Result<()> {
    let as_points = |series: &[(usize, f64)]| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|&(step, loss)| (step as f64, loss))
            .collect()
    };
    let lines = [
        Line {
            label: "training loss".into(),
            points: as_points(train),
            markers: false,
        },
        Line {
            label: "validation loss".into(),
            points: as_points(validation),
            markers: true,
        },
    ];
    let chart = Chart::fitted(title, "training step", "loss (nats per token)", &lines);
    plot_lines(path, &chart, &lines)
}

/// The loss curves of a run directory, read from its `metrics.jsonl` (`loss` and
/// `validation_loss` records by `step`), as `flowlm plot` draws them, also while a run trains.
pub fn plot_run(run: &Path, out: &Path) -> Result<()> {
    let metrics = run.join(crate::trainer::METRICS_FILE);
    let text = crate::io::read_to_string(&metrics)?;
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: serde_json::Value =
            serde_json::from_str(line).map_err(|e| FlowError::Parse {
                path: metrics.clone(),
                message: format!("line {}: {e}", index + 1),
            })?;
        let Some(step) = record["step"].as_u64() else {
            continue;
        };
        if let Some(loss) = record["loss"].as_f64() {
            train.push((step as usize, loss));
        }
        if let Some(loss) = record["validation_loss"].as_f64() {
            validation.push((step as usize, loss));
        }
    }
    if train.is_empty() && validation.is_empty() {
        return Err(FlowError::Parse {
            path: metrics,
            message: "no loss records yet".into(),
        });
    }
    let name = run
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run.display().to_string());
    plot_losses(
        out,
        &format!("{name}: training and validation loss"),
        &train,
        &validation,
    )
}

#[cfg(test)]
mod legend_tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_range: (0.0, 16.0),
            y_range: (0.0, 100.0),
        }
    }

    fn line(points: &[(f64, f64)]) -> Line {
        Line {
            label: "a".into(),
            points: points.to_vec(),
            markers: true,
        }
    }

    /// The legend goes to the first corner no point falls in.
    #[test]
    fn the_legend_avoids_the_data() {
        let rising = [line(&[(2.0, 50.0), (16.0, 98.0)])];
        assert!(matches!(
            legend_corner(&chart(), &rising),
            SeriesLabelPosition::LowerRight
        ));
        let falling = [line(&[(0.0, 90.0), (16.0, 5.0)])];
        assert!(matches!(
            legend_corner(&chart(), &falling),
            SeriesLabelPosition::UpperRight
        ));
        let everywhere = [line(&[(16.0, 95.0), (16.0, 5.0), (0.0, 95.0), (0.0, 5.0)])];
        assert!(matches!(
            legend_corner(&chart(), &everywhere),
            SeriesLabelPosition::UpperRight
        ));
    }
}
