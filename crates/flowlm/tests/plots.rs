//! Plots carry what a reader needs: text (title, tick values, axis names, legend) rendered with
//! the compiled-in font, and one colour per line.

mod common;

use flowlm::plot::{Chart, Line, plot_lines, plot_losses};

fn read_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    (info.width, info.height, pixels)
}

fn count(
    pixels: &[u8],
    width: u32,
    rows: std::ops::Range<u32>,
    wanted: impl Fn(&[u8]) -> bool,
) -> usize {
    rows.flat_map(|y| (0..width).map(move |x| ((y * width + x) * 3) as usize))
        .filter(|&i| wanted(&pixels[i..i + 3]))
        .count()
}

#[test]
fn a_loss_plot_has_text_and_both_curves() {
    let dir = common::scratch("plots");
    let path = dir.join("loss.png");
    let train: Vec<(usize, f64)> = (0..100).map(|s| (s * 10, 6.0 - s as f64 * 0.02)).collect();
    let validation = vec![(250, 5.5), (500, 5.0), (750, 4.6), (990, 4.2)];
    plot_losses(&path, "a title", &train, &validation).unwrap();
    let (width, height, pixels) = read_png(&path);
    assert_eq!((width, height), (900, 540));
    // The title band at the top holds dark glyph pixels only if text was rendered.
    let dark = |p: &[u8]| p.iter().all(|&c| c < 90);
    assert!(count(&pixels, width, 0..40, dark) > 50, "no title text");
    // Tick values and axis names sit in the bottom band, under the plot area.
    assert!(
        count(&pixels, width, 480..540, dark) > 100,
        "no x-axis text"
    );
    let blue = |p: &[u8]| p == [31, 119, 180];
    let orange = |p: &[u8]| p == [255, 127, 14];
    assert!(
        count(&pixels, width, 0..height, blue) > 200,
        "no training curve"
    );
    assert!(
        count(&pixels, width, 0..height, orange) > 100,
        "no validation curve"
    );
}

#[test]
fn every_line_gets_its_own_colour_and_the_chart_covers_the_points() {
    let lines: Vec<Line> = (0..3)
        .map(|i| Line {
            label: format!("line {i}"),
            points: vec![(0.0, i as f64), (10.0, 10.0 * i as f64), (f64::NAN, 1.0)],
            markers: i == 0,
        })
        .collect();
    let chart = Chart::fitted("t", "x", "y", &lines);
    assert!(chart.x_range.0 < 0.0 && chart.x_range.1 > 10.0);
    assert!(chart.y_range.0 < 0.0 && chart.y_range.1 > 20.0);
    let dir = common::scratch("plot-lines");
    let path = dir.join("lines.png");
    plot_lines(&path, &chart, &lines).unwrap();
    let (width, height, pixels) = read_png(&path);
    for colour in [[31, 119, 180], [255, 127, 14], [44, 160, 44]] {
        let found = count(&pixels, width, 0..height, |p| p == colour);
        assert!(found > 50, "colour {colour:?}: {found} pixels");
    }
}
