//! A microphone that talks, for browser tests: Chromium's own fake microphone only beeps briefly,
//! which the bridge rightly does not take for speech. Pass the file to Chromium with
//! `--use-file-for-fake-audio-capture=PATH`; it loops it.

use std::path::Path;

/// Writes ten seconds of a 440 Hz tone at a third of full scale (about -13 dBov), 48 kHz mono
/// 16-bit PCM WAV: what a talking person is to the audio level extension.
pub fn write_tone(path: &Path) {
    const RATE: u32 = 48_000;
    let samples: Vec<i16> = (0..RATE * 10)
        .map(|n| {
            let t = f64::from(n) / f64::from(RATE);
            ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * f64::from(i16::MAX) / 3.0) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, wav).unwrap();
}
