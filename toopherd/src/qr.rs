//! QR codes of `otpauth://` URIs: drawn in a terminal, and as a PNG for scripts and web pages.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

const QUIET: usize = 4;

#[derive(Debug)]
pub struct QrError(String);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw the QR code: {}", self.0)
    }
}

impl std::error::Error for QrError {}

struct Grid {
    width: usize,
    dark: Vec<bool>,
}

impl Grid {
    fn new(data: &str) -> Result<Grid, QrError> {
        let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
            .map_err(|e| QrError(e.to_string()))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Grid { width, dark })
    }

    /// Dark at (x, y) in the grid with its quiet zone around it.
    fn at(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET), y.checked_sub(QUIET)) else {
            return false;
        };
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    fn size(&self) -> usize {
        self.width + 2 * QUIET
    }
}

/// Two modules per character cell (upper half block), with explicit black and white so
/// the code scans on dark and light terminal themes alike.
pub fn terminal(data: &str) -> Result<String, QrError> {
    let g = Grid::new(data)?;
    let n = g.size();
    let mut out = String::with_capacity(n * n * 6);
    for y in (0..n).step_by(2) {
        for x in 0..n {
            let fg = if g.at(x, y) { 30 } else { 97 };
            let bg = if g.at(x, y + 1) { 40 } else { 107 };
            out.push_str(&format!("\x1b[{fg};{bg}m\u{2580}"));
        }
        out.push_str("\x1b[0m\n");
    }
    Ok(out)
}

/// A grayscale PNG, 8 pixels per module, base64-encoded.
pub fn png_base64(data: &str) -> Result<String, QrError> {
    const SCALE: usize = 8;
    let g = Grid::new(data)?;
    let px = g.size() * SCALE;
    let mut pixels = vec![255u8; px * px];
    for y in 0..px {
        for x in 0..px {
            if g.at(x / SCALE, y / SCALE) {
                pixels[y * px + x] = 0;
            }
        }
    }
    let side = u32::try_from(px).map_err(|e| QrError(e.to_string()))?;
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| QrError(e.to_string()))?;
        w.write_image_data(&pixels)
            .map_err(|e| QrError(e.to_string()))?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_a_png() {
        let b64 = png_base64("otpauth://totp/x:y?secret=GEZDGNBV").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&raw[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn terminal_drawing_is_square_with_quiet_zone() {
        let t = terminal("hello").unwrap();
        let lines: Vec<&str> = t.lines().collect();
        // version 1: 21 modules + 8 quiet = 29 columns, 15 lines of two rows
        assert_eq!(lines.len(), 15);
        assert_eq!(lines[0].matches('\u{2580}').count(), 29);
    }
}
