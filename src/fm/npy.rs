//! The NumPy `.npy` format, version 1.0, for little-endian f32 arrays in C order: written by hand
//! (it is a 10-byte preamble, a Python dict literal and the raw data).
//!
//! Layout: magic `\x93NUMPY` · version 1, 0 · header length (u16, little-endian) · header
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (n, d), }`, padded with spaces and ended by
//! `\n` so that the data starts at a multiple of 64 bytes · the values, row after row.

use std::io::{self, Write};

/// The first bytes of every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Preamble bytes before the header: magic, version (2 bytes), header length (2 bytes).
const PREAMBLE: usize = 10;
/// Data starts at a multiple of this (what NumPy writes and memory-maps best).
const ALIGN: usize = 64;

/// The preamble and header of a little-endian f32 array of this shape (C order), data excluded.
/// A shape of one axis is written `(n,)`, as Python writes a 1-tuple.
///
/// **Panics** if the header exceeds 65,535 bytes, which takes a shape of thousands of axes.
pub fn f32_header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("{n},"),
        _ => shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Spaces, then '\n', so that preamble + header is a whole number of alignment blocks.
    let unpadded = PREAMBLE + dict.len() + 1;
    dict.extend(std::iter::repeat_n(' ', (ALIGN - unpadded % ALIGN) % ALIGN));
    dict.push('\n');
    let len = u16::try_from(dict.len()).expect("an .npy v1.0 header fits in 65,535 bytes");
    let mut out = Vec::with_capacity(PREAMBLE + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Appends values as little-endian f32 (the data part of an `.npy` file).
pub fn write_f32s(out: &mut (impl Write + ?Sized), values: &[f32]) -> io::Result<()> {
    // Through a small buffer: one write per value would be one call into the writer per value.
    let mut buf = [0u8; 4096];
    for chunk in values.chunks(buf.len() / 4) {
        for (b, x) in buf.chunks_exact_mut(4).zip(chunk) {
            b.copy_from_slice(&x.to_le_bytes());
        }
        out.write_all(&buf[..chunk.len() * 4])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_starts_at_a_multiple_of_64_bytes() {
        for shape in [
            &[0usize][..],
            &[3],
            &[2, 3],
            &[162_541, 65],
            &[usize::MAX, 1],
        ] {
            let h = f32_header(shape);
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(*h.last().unwrap(), b'\n');
            assert_eq!(usize::from(u16::from_le_bytes([h[8], h[9]])), h.len() - 10);
        }
    }

    #[test]
    fn the_header_is_the_python_dict_numpy_reads() {
        let h = f32_header(&[2, 3]);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert_eq!(
            dict.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        let one_axis = f32_header(&[5]);
        let dict = std::str::from_utf8(&one_axis[10..]).unwrap();
        assert!(dict.contains("'shape': (5,), }"), "{dict}");
    }

    #[test]
    fn values_are_written_little_endian() {
        let mut out = Vec::new();
        let values: Vec<f32> = (0..2000).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32s(&mut out, &values).unwrap();
        assert_eq!(out.len(), 8000);
        assert_eq!(&out[..4], &(-3.0f32).to_le_bytes());
        assert_eq!(&out[7996..], &values[1999].to_le_bytes());
    }
}
