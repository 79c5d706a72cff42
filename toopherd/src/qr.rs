//! QR codes of `otpauth://` URIs: drawn in a terminal, and as a PNG for scripts and web pages.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

/// The quiet zone the standard asks for, in modules.
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
    /// Light modules around the code.
    quiet: usize,
}

impl Grid {
    fn new(data: &str) -> Result<Grid, QrError> {
        Grid::with(data, EcLevel::M, QUIET)
    }

    fn with(data: &str, ec: EcLevel, quiet: usize) -> Result<Grid, QrError> {
        let code = QrCode::with_error_correction_level(data.as_bytes(), ec)
            .map_err(|e| QrError(e.to_string()))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Grid { width, dark, quiet })
    }

    /// Dark at (x, y) in the grid with its quiet zone around it.
    fn at(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(self.quiet), y.checked_sub(self.quiet)) else {
            return false;
        };
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    fn size(&self) -> usize {
        self.width + 2 * self.quiet
    }

    /// Character cells: one column per module, two modules per line (half blocks).
    fn cells(&self) -> (usize, usize) {
        (self.size(), self.size().div_ceil(2))
    }
}

/// How a drawing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// For a terminal: explicit black on white (colours of the 256-colour cube, which
    /// themes do not remap), so it scans on dark and light themes alike.
    Colour,
    /// Text only, no escape sequences (a pipe, a file, a PAM conversation): light
    /// modules are filled blocks, which scans where the background is dark (a terminal).
    Plain,
}

/// The character cells a drawing may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub columns: usize,
    pub lines: usize,
}

impl Room {
    /// A classic 80x24 terminal, less one line for the prompt below the code.
    pub const CLASSIC: Room = Room {
        columns: 80,
        lines: 23,
    };
}

/// A QR code drawn in text.
#[derive(Debug, Clone)]
pub struct Drawing {
    pub text: String,
    pub columns: usize,
    pub lines: usize,
    /// The light modules around the code (4 is the standard's).
    pub quiet_zone: usize,
    /// Whether it fits the room it was drawn for.
    pub fits: bool,
}

/// Draws `data` as large as its content needs and no larger: the first of these that
/// fits `room`: error correction M with the full quiet zone, then L (a code on a screen
/// is not damaged, so L scans as well there), then L with a narrower quiet zone (phone
/// apps read codes with 2 modules of it). When none fits, the smallest of them, with
/// `fits` false: the caller says where the PNG is.
pub fn fitted(data: &str, style: Style, room: Room) -> Result<Drawing, QrError> {
    const TRIES: [(EcLevel, usize); 4] = [
        (EcLevel::M, QUIET),
        (EcLevel::L, QUIET),
        (EcLevel::L, 3),
        (EcLevel::L, 2),
    ];
    let mut first_error = None;
    for (ec, quiet) in TRIES {
        match Grid::with(data, ec, quiet) {
            Ok(g) => {
                let (columns, lines) = g.cells();
                if columns <= room.columns && lines <= room.lines {
                    return Ok(render(&g, style, true));
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // The smallest, so that "it needs N columns" is the least the person must make room for.
    let (ec, quiet) = TRIES[TRIES.len() - 1];
    match Grid::with(data, ec, quiet) {
        Ok(g) => Ok(render(&g, style, false)),
        Err(e) => Err(first_error.unwrap_or(e)),
    }
}

fn render(g: &Grid, style: Style, fits: bool) -> Drawing {
    let (columns, lines) = g.cells();
    let text = match style {
        Style::Colour => draw(g),
        Style::Plain => draw_plain(g),
    };
    Drawing {
        text,
        columns,
        lines,
        quiet_zone: g.quiet,
        fits,
    }
}

/// Two modules per character cell (upper half block), with explicit black and white so
/// the code scans on dark and light terminal themes alike.
pub fn terminal(data: &str) -> Result<String, QrError> {
    Ok(draw(&Grid::new(data)?))
}

/// Pure black and pure white of the 256-colour cube: unlike the 16 basic colours, no
/// theme remaps them (Solarized's "black" is dark teal).
const BLACK: u8 = 16;
const WHITE: u8 = 231;

fn draw(g: &Grid) -> String {
    let n = g.size();
    let mut out = String::with_capacity(n * n * 4);
    for y in (0..n).step_by(2) {
        let mut last = None;
        for x in 0..n {
            let colours = (g.at(x, y), g.at(x, y + 1));
            if last != Some(colours) {
                let fg = if colours.0 { BLACK } else { WHITE };
                let bg = if colours.1 { BLACK } else { WHITE };
                out.push_str(&format!("\x1b[38;5;{fg};48;5;{bg}m"));
                last = Some(colours);
            }
            out.push('\u{2580}');
        }
        out.push_str("\x1b[0m\n");
    }
    out
}

/// Block characters only. Light modules are filled, so the code scans where the
/// background is dark, as in most terminals.
fn draw_plain(g: &Grid) -> String {
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
            quiet: QUIET,
        })
    }
}

/// Drawn with block characters only, no escape sequences, so it survives a PAM
/// conversation (the module strips control characters); made to fit an 80x24 terminal
/// where the data allows (see [`fitted`]).
pub fn blocks(data: &str) -> Result<String, QrError> {
    Ok(fitted(data, Style::Plain, Room::CLASSIC)?.text)
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

    fn uri(issuer: &str, user: &str) -> String {
        uri_with(issuer, user, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    }

    fn uri_with(issuer: &str, user: &str, secret: &str) -> String {
        format!(
            "otpauth://totp/{issuer}:{user}?secret={secret}\
             &issuer={issuer}&algorithm=SHA1&digits=6&period=30"
        )
    }

    /// Base32 secrets as toopherd makes them (160 bits), from a fixed sequence: how the
    /// code is split into segments depends on the secret's digits.
    fn secrets(n: usize) -> Vec<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                (0..32)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        ALPHABET[(x >> 59) as usize] as char
                    })
                    .collect()
            })
            .collect()
    }

    fn lines_fit(d: &Drawing) {
        let lines: Vec<&str> = d.text.lines().collect();
        assert_eq!(lines.len(), d.lines);
        assert!(lines.iter().all(|l| l.chars().count() == d.columns));
    }

    #[test]
    fn a_usual_enrolment_fits_80x24_with_its_quiet_zone() {
        // A short host name: the full quiet zone.
        let d = fitted(&uri("host", "alice"), Style::Plain, Room::CLASSIC).unwrap();
        assert!(d.fits && d.lines <= 23 && d.columns <= 80, "{d:?}");
        assert_eq!(d.quiet_zone, 4, "{d:?}");
        lines_fit(&d);
        // The demo's issuer and longer host and user names fit, whatever the secret,
        // some with a narrower quiet zone.
        for (issuer, user) in [
            ("toopher-demo", "alice"),
            ("toopher-demo", "first.last"),
            ("db-01.lan", "first.last"),
        ] {
            for secret in secrets(40) {
                let d = fitted(
                    &uri_with(issuer, user, &secret),
                    Style::Plain,
                    Room::CLASSIC,
                )
                .unwrap();
                assert!(d.fits && d.lines <= 23 && d.quiet_zone >= 2, "{d:?}");
                lines_fit(&d);
            }
        }
    }

    #[test]
    fn a_code_too_large_for_the_room_says_so_at_its_smallest() {
        let long = uri(
            "a-rather-long-host-name.eu-west-1.compute.internal",
            "first.last%40example.com",
        );
        let d = fitted(&long, Style::Plain, Room::CLASSIC).unwrap();
        assert!(!d.fits && d.lines > 23 && d.quiet_zone == 2, "{d:?}");
        lines_fit(&d);
        // A larger terminal takes it.
        let big = Room {
            columns: 200,
            lines: 60,
        };
        assert!(fitted(&long, Style::Plain, big).unwrap().fits);
    }

    #[test]
    fn only_the_colour_drawing_has_escape_sequences() {
        let data = uri("host", "alice");
        let plain = fitted(&data, Style::Plain, Room::CLASSIC).unwrap();
        assert!(
            plain.text.chars().all(|c| c == '\n' || !c.is_control()),
            "{}",
            plain.text
        );
        let colour = fitted(&data, Style::Colour, Room::CLASSIC).unwrap();
        assert!(colour.text.contains("\x1b[38;5;16;48;5;231m"));
        assert_eq!(colour.lines, plain.lines);
        let visible: String = colour
            .text
            .split('\x1b')
            .map(|s| s.split_once('m').map_or(s, |(_, rest)| rest))
            .collect();
        assert_eq!(visible.lines().count(), colour.lines);
        assert!(visible.lines().all(|l| l.chars().count() == colour.columns));
    }

    #[test]
    fn the_plain_drawing_is_the_same_code() {
        // Plain (light filled) and colour (dark as black) draw the same modules.
        let data = uri("host", "alice");
        let plain = fitted(&data, Style::Plain, Room::CLASSIC).unwrap().text;
        let colour = fitted(&data, Style::Colour, Room::CLASSIC).unwrap().text;
        let light_top = plain
            .lines()
            .next()
            .unwrap()
            .chars()
            .all(|c| c == '\u{2588}');
        assert!(light_top, "the quiet zone is light");
        let d = fitted(&data, Style::Plain, Room::CLASSIC).unwrap();
        assert_eq!(colour.matches('\u{2580}').count(), d.columns * d.lines);
        // Where the plain drawing has a full block (both light), the colour one is white
        // on white, and so on: compare cell by cell.
        let cells: Vec<(bool, bool)> = colour
            .split('\n')
            .flat_map(|line| {
                let mut cur = (false, false);
                let mut out = Vec::new();
                for part in line.split('\x1b').filter(|p| !p.is_empty()) {
                    let (sgr, rest) = part.split_once('m').unwrap();
                    if sgr != "[0" {
                        cur = (sgr.contains(";16;"), sgr.ends_with(";16"));
                    }
                    out.extend(rest.chars().map(|_| cur));
                }
                out
            })
            .collect();
        let from_plain: Vec<(bool, bool)> = plain
            .chars()
            .filter(|&c| c != '\n')
            .map(|c| match c {
                '\u{2588}' => (false, false),
                '\u{2580}' => (false, true),
                '\u{2584}' => (true, false),
                _ => (true, true),
            })
            .collect();
        assert_eq!(cells, from_plain);
    }
}
