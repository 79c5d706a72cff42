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
    Ok(draw(&Grid::new(data)?))
}

fn draw(g: &Grid) -> String {
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
    out
}

/// Draws a QR code given as a PNG (the Toopher API's pairing QR image) in the terminal:
/// finds the code's modules by its top-left finder pattern and samples their centres.
pub fn draw_png(bytes: &[u8]) -> Result<String, QrError> {
    Ok(draw(&Grid::from_png(bytes)?))
}

impl Grid {
    fn from_png(bytes: &[u8]) -> Result<Grid, QrError> {
        let err = |e: &dyn std::fmt::Display| QrError(e.to_string());
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| err(&e))?;
        let mut buf = vec![
            0u8;
            reader
                .output_buffer_size()
                .ok_or_else(|| QrError("image too large".into()))?
        ];
        let info = reader.next_frame(&mut buf).map_err(|e| err(&e))?;
        let (w, h) = (info.width as usize, info.height as usize);
        let channels = info.color_type.samples();
        let dark = |x: usize, y: usize| -> bool {
            let i = (y * w + x) * channels;
            let luma = if channels >= 3 {
                (u32::from(buf[i]) + u32::from(buf[i + 1]) + u32::from(buf[i + 2])) / 3
            } else {
                u32::from(buf[i])
            };
            // Transparent pixels count as light.
            let opaque = match channels {
                2 => buf[i + 1] > 127,
                4 => buf[i + 3] > 127,
                _ => true,
            };
            opaque && luma < 128
        };
        let (x0, y0) = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .find(|&(x, y)| dark(x, y))
            .ok_or_else(|| QrError("no QR code in the image".into()))?;
        let run = (x0..w).take_while(|&x| dark(x, y0)).count();
        let module = (run as f64 / 7.0).max(1.0);
        let x1 = (0..w)
            .rev()
            .find(|&x| (0..h).any(|y| dark(x, y)))
            .unwrap_or(x0);
        let n = ((x1 + 1 - x0) as f64 / module).round() as usize;
        if !(21..=177).contains(&n) {
            return Err(QrError(format!("unexpected QR size {n}")));
        }
        let mut cells = Vec::with_capacity(n * n);
        for j in 0..n {
            for i in 0..n {
                let x = x0 + ((i as f64 + 0.5) * module) as usize;
                let y = y0 + ((j as f64 + 0.5) * module) as usize;
                cells.push(x < w && y < h && dark(x, y));
            }
        }
        Ok(Grid {
            width: n,
            dark: cells,
        })
    }
}

/// Drawn with block characters only, no escape sequences, so it survives a PAM
/// conversation (the module strips control characters). Light modules are filled,
/// which scans on the usual dark-background terminal.
pub fn blocks(data: &str) -> Result<String, QrError> {
    let g = Grid::new(data)?;
    let n = g.size();
    let mut out = String::with_capacity(n * n * 2);
    for y in (0..n).step_by(2) {
        for x in 0..n {
            out.push(match (!g.at(x, y), !g.at(x, y + 1)) {
                (true, true) => '\u{2588}',
                (true, false) => '\u{2580}',
                (false, true) => '\u{2584}',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// A grayscale PNG, 8 pixels per module, base64-encoded.
pub fn png_base64(data: &str) -> Result<String, QrError> {
    grid_png_base64(&Grid::new(data)?)
}

/// The same QR code as a compact PNG (base64): the API's images are far larger than a
/// socket frame may be.
pub fn recompress_png(bytes: &[u8]) -> Result<String, QrError> {
    grid_png_base64(&Grid::from_png(bytes)?)
}

fn grid_png_base64(g: &Grid) -> Result<String, QrError> {
    const SCALE: usize = 8;
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
    fn a_png_qr_code_is_redrawn_module_for_module() {
        let data = "https://toopher.test/pair/abc";
        let b64 = png_base64(data).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(draw_png(&raw).unwrap(), terminal(data).unwrap());
        assert!(draw_png(b"not a png").is_err());
        let again = base64::engine::general_purpose::STANDARD
            .decode(recompress_png(&raw).unwrap())
            .unwrap();
        assert_eq!(draw_png(&again).unwrap(), terminal(data).unwrap());
    }

    #[test]
    fn png_is_a_png() {
        let b64 = png_base64("otpauth://totp/x:y?secret=GEZDGNBV").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&raw[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn block_drawing_has_no_control_characters_but_newlines() {
        let t = blocks("otpauth://totp/x:y?secret=GEZDGNBV").unwrap();
        assert!(t.chars().all(|c| c == '\n' || !c.is_control()));
        assert!(
            t.lines()
                .all(|l| l.chars().count() == t.lines().next().unwrap().chars().count())
        );
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
