//! Camera snapshots: a small grayscale baseline JPEG drawn from the printer's state, encoded
//! by hand (every 8x8 block is one flat shade, so only DC coefficients are needed).

/// What a snapshot shows.
pub(crate) struct Scene<'a> {
    pub camera_id: i64,
    pub printer_number: u64,
    pub state: &'a str,
    /// 0..100
    pub progress: f64,
}

const WIDTH_BLOCKS: usize = 20;
const HEIGHT_BLOCKS: usize = 15;

/// The JPEG bytes; they change whenever the state or the progress does.
pub(crate) fn snapshot(scene: &Scene) -> Vec<u8> {
    let levels = draw(scene);
    let comment = format!(
        "prusa-connect-mqtt simulator: camera {} state {} progress {:.1}",
        scene.camera_id, scene.state, scene.progress
    );
    encode(&levels, WIDTH_BLOCKS, HEIGHT_BLOCKS, &comment)
}

/// One gray level (0..=255) per 8x8 block, row by row: a bed, the part growing on it, a
/// progress bar, and as many marks in the corner as the printer's number (to tell cameras
/// apart).
fn draw(scene: &Scene) -> Vec<u8> {
    let background = match scene.state {
        "PRINTING" => 70,
        "PAUSED" => 100,
        "ATTENTION" | "ERROR" => 150,
        _ => 40,
    };
    let progress = if scene.progress.is_finite() {
        scene.progress.clamp(0.0, 100.0) / 100.0
    } else {
        0.0
    };
    let part_rows = (progress * 6.0).round() as usize;
    let bar_blocks = (progress * 18.0).round() as usize;
    let marks = (scene.printer_number % 10) as usize + 1;
    let mut levels = vec![background; WIDTH_BLOCKS * HEIGHT_BLOCKS];
    for (i, level) in levels.iter_mut().enumerate() {
        let (row, col) = (i / WIDTH_BLOCKS, i % WIDTH_BLOCKS);
        *level = match row {
            0 if col < marks => 180,
            4..=10 if (8..12).contains(&col) && row + part_rows > 10 => 205,
            11 | 12 if (2..18).contains(&col) => 120,
            13 if (1..19).contains(&col) => {
                if col - 1 < bar_blocks {
                    235
                } else {
                    85
                }
            }
            _ => background,
        };
    }
    levels
}

const PREVIEW_WIDTH_BLOCKS: usize = 40;
const PREVIEW_HEIGHT_BLOCKS: usize = 30;

/// A file's 320x240 thumbnail: a part standing on a print sheet, its size, outline and shade
/// taken from the file's hash, so each file has its own and keeps it.
pub(crate) fn preview(hash: &str, file_name: &str) -> Vec<u8> {
    let seed: Vec<u32> = hash.chars().filter_map(|c| c.to_digit(16)).collect();
    let digit = |i: usize| seed.get(i).copied().unwrap_or(7) as usize;
    let (w, h) = (PREVIEW_WIDTH_BLOCKS, PREVIEW_HEIGHT_BLOCKS);
    let half_width = 4 + digit(0);
    let height = 6 + digit(1);
    let tapers = digit(2) % 2 == 1;
    let shade = 150 + 6 * digit(3) as u8;
    let sheet_top = h - 5;
    let mut levels = vec![30u8; w * h];
    for (i, level) in levels.iter_mut().enumerate() {
        let (row, col) = (i / w, i % w);
        let centre_distance = col.abs_diff(w / 2);
        let above_sheet = sheet_top.saturating_sub(row);
        // A tapering part narrows by one block every two rows up.
        let reach = if tapers {
            half_width.saturating_sub(above_sheet / 2)
        } else {
            half_width
        };
        *level = if row >= sheet_top {
            if row == sheet_top { 110 } else { 80 }
        } else if above_sheet <= height && centre_distance < reach {
            shade
        } else {
            30
        };
    }
    let comment = format!("prusa-connect-mqtt simulator: preview of {file_name}");
    encode(&levels, w, h, &comment)
}

struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, len: u32) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.bits += 1;
            if self.bits == 8 {
                let byte = (self.acc & 0xff) as u8;
                self.out.push(byte);
                if byte == 0xff {
                    // Byte stuffing: 0xFF in entropy-coded data is followed by 0x00.
                    self.out.push(0x00);
                }
                self.acc = 0;
                self.bits = 0;
            }
        }
    }

    /// Pads the last byte with 1 bits.
    fn finish(mut self) -> Vec<u8> {
        while self.bits != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

/// `jpeg` made at least `min_bytes` long with comment segments right after its start marker.
pub(crate) fn padded(jpeg: Vec<u8>, min_bytes: usize) -> Vec<u8> {
    if jpeg.len() >= min_bytes || jpeg.len() < 2 {
        return jpeg;
    }
    let mut out = Vec::with_capacity(min_bytes + 4);
    out.extend_from_slice(&jpeg[..2]);
    let mut missing = min_bytes - jpeg.len();
    while missing > 0 {
        // A segment is 4 bytes of header and at most 65533 of payload.
        let payload = missing.saturating_sub(4).clamp(1, 65_533);
        segment(&mut out, 0xfe, &vec![b' '; payload]);
        missing = missing.saturating_sub(payload + 4);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xff, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Encodes flat 8x8 blocks as a baseline grayscale JPEG.
///
/// Quantisation is 8 everywhere, so a block of level L has DC coefficient L - 128. The DC
/// Huffman table gives each size category 0..=8 a 4-bit code equal to the category; the AC
/// table has two 2-bit codes, of which only end-of-block (00) is used.
fn encode(levels: &[u8], width_blocks: usize, height_blocks: usize, comment: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xd8];
    segment(
        &mut out,
        0xe0,
        b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    );
    let comment: Vec<u8> = comment.bytes().take(60_000).collect();
    segment(&mut out, 0xfe, &comment);
    let mut dqt = vec![0x00];
    dqt.extend_from_slice(&[8; 64]);
    segment(&mut out, 0xdb, &dqt);
    let [h_hi, h_lo] = u16::try_from(height_blocks * 8).unwrap_or(8).to_be_bytes();
    let [w_hi, w_lo] = u16::try_from(width_blocks * 8).unwrap_or(8).to_be_bytes();
    segment(&mut out, 0xc0, &[8, h_hi, h_lo, w_hi, w_lo, 1, 1, 0x11, 0]);
    let mut dc = vec![0x00, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dc.extend(0..=8u8);
    segment(&mut out, 0xc4, &dc);
    let ac = [
        0x10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01,
    ];
    segment(&mut out, 0xc4, &ac);
    segment(&mut out, 0xda, &[1, 1, 0x00, 0, 63, 0]);

    let mut bits = BitWriter {
        out: Vec::new(),
        acc: 0,
        bits: 0,
    };
    let mut previous = 0i32;
    for &level in levels.iter().take(width_blocks * height_blocks) {
        let dc = i32::from(level) - 128;
        let diff = dc - previous;
        previous = dc;
        let category = 32 - diff.unsigned_abs().leading_zeros();
        bits.put(category, 4);
        if category > 0 {
            let raw = if diff >= 0 {
                diff
            } else {
                diff + (1 << category) - 1
            };
            bits.put(raw as u32, category);
        }
        bits.put(0b00, 2); // end of block: every AC coefficient is zero
    }
    out.extend(bits.finish());
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}
