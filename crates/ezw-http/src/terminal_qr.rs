//! A QR code printed in a terminal: Unicode half blocks, two modules per character cell (one
//! above the other), with the 4-module quiet zone a scanner needs.

use qrcode::render::unicode::Dense1x2;
use qrcode::types::QrError;
use qrcode::{EcLevel, QrCode};

/// The terminal's background, which decides which modules are drawn as glyphs: a scanner needs
/// dark modules on a light field, and the glyphs take the terminal's text colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Background {
    /// Light text on a dark background (most terminals): the light modules and the quiet zone
    /// are drawn, the dark modules are left blank.
    Dark,
    /// Dark text on a light background: the dark modules are drawn.
    Light,
}

/// Renders `data` as a QR code (error correction M, like the PNG the API serves), one string of
/// lines joined by `\n`, for a terminal with `background`.
///
/// # Errors
/// When `data` is too long for a QR code.
pub(crate) fn render(data: &str, background: Background) -> Result<String, QrError> {
    let code = QrCode::with_error_correction_level(data, EcLevel::M)?;
    let mut renderer = code.render::<Dense1x2>();
    renderer.quiet_zone(true).module_dimensions(1, 1);
    if background == Background::Dark {
        renderer.dark_color(Dense1x2::Light).light_color(Dense1x2::Dark);
    }
    Ok(renderer.build())
}

#[cfg(test)]
mod tests {
    use qrcode::{Color, EcLevel, QrCode};

    use super::{render, Background};

    /// Reads rendered half blocks back into a matrix of modules (true = dark), quiet zone included.
    fn parse(rendered: &str, background: Background) -> Vec<Vec<bool>> {
        let mut rows: Vec<Vec<bool>> = Vec::new();
        for line in rendered.lines() {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for ch in line.chars() {
                let (t, b) = match ch {
                    ' ' => (false, false),
                    '\u{2580}' => (true, false),
                    '\u{2584}' => (false, true),
                    '\u{2588}' => (true, true),
                    other => panic!("unexpected character {other:?} in the rendering"),
                };
                top.push(t);
                bottom.push(b);
            }
            rows.push(top);
            rows.push(bottom);
        }
        let width = rows.first().map_or(0, Vec::len);
        // The image is square; an odd height leaves the last line's lower half unused.
        assert!(rows.len() == width || rows.len() == width + 1, "{} rows for width {width}", rows.len());
        rows.truncate(width);
        let drawn_is_dark = background == Background::Light;
        rows.into_iter().map(|row| row.into_iter().map(|drawn| drawn == drawn_is_dark).collect()).collect()
    }

    fn assert_round_trips(data: &str, background: Background) {
        let code = QrCode::with_error_correction_level(data, EcLevel::M).unwrap();
        let n = code.width();
        let expected: Vec<bool> = code.to_colors().into_iter().map(|c| c == Color::Dark).collect();
        let matrix = parse(&render(data, background).unwrap(), background);
        assert_eq!(matrix.len(), n + 8, "a 4-module quiet zone on each side");
        for (y, row) in matrix.iter().enumerate() {
            assert_eq!(row.len(), n + 8);
            for (x, &dark) in row.iter().enumerate() {
                let inside = (4..n + 4).contains(&x) && (4..n + 4).contains(&y);
                let want = inside && expected[(y - 4) * n + (x - 4)];
                assert_eq!(dark, want, "module ({x}, {y}) on a {background:?} background");
            }
        }
    }

    #[test]
    fn the_rendering_reads_back_as_the_code_on_both_backgrounds() {
        // A WhatsApp-like pairing string (odd module count: the last line is half used).
        let pairing = "2@Q1xU0mT5bq3u2GzB5dX8kq9nY2b0WQm4o2E3Pz7cKq1rT6sH8fJ0aL5uV9wN3eR,\
            vR1h5KxE3mY0qWZ1b7N2u6c9sJ4fT8aD0gL3kP5oV2iH=,\
            Zq8X1c3VbN7mL0kJ4hG6fD2sA9pO5iU1yT3rE7wQ0e=,\
            Mw4nB8vC2xZ6lK0jH5gF3dS7aP1oI9uY2tR4eW6qQ0=";
        for background in [Background::Dark, Background::Light] {
            assert_round_trips(pairing, background);
            assert_round_trips("ABCD-EFGH", background);
        }
    }

    #[test]
    fn a_scanner_reads_the_printed_code() {
        // What a phone sees: each module as a 4x4 pixel square, dark on light.
        let pairing =
            "2@Q1xU0mT5bq3u2GzB5dX8kq9nY2b0WQm4o2E3Pz7cKq1rT6sH8fJ0aL5uV9wN3eR,vR1h5KxE3mY0qWZ1b7N2u6c9sJ4fT8a=";
        for background in [Background::Dark, Background::Light] {
            let matrix = parse(&render(pairing, background).unwrap(), background);
            let scale = 4;
            let size = matrix.len() * scale;
            let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
                if matrix[y / scale][x / scale] {
                    0
                } else {
                    255
                }
            });
            let grids = image.detect_grids();
            assert_eq!(grids.len(), 1, "one QR code on a {background:?} background");
            let (_, content) = grids[0].decode().unwrap();
            assert_eq!(content, pairing);
        }
    }

    #[test]
    fn dark_background_draws_the_quiet_zone() {
        let rendered = render("hello", Background::Dark).unwrap();
        let first = rendered.lines().next().unwrap();
        assert!(first.chars().all(|c| c == '\u{2588}'), "the top quiet zone is drawn: {first:?}");
        let rendered = render("hello", Background::Light).unwrap();
        let first = rendered.lines().next().unwrap();
        assert!(first.chars().all(|c| c == ' '), "the top quiet zone is blank: {first:?}");
    }

    #[test]
    fn data_too_long_for_a_qr_code_is_an_error() {
        assert!(render(&"x".repeat(5000), Background::Dark).is_err());
    }
}
